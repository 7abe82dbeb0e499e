"""The layout's promises: the library never imports the lab, one registry drives apply and load, one name check
guards every method, and the tests the audit found missing (each fails on the bug it names)."""
import ast
import json
import pathlib
import subprocess
import sys

import pytest
import torch
from method_checks import make_batch, outputs, perturb_trainable, snapshot
from safetensors.torch import load_file, save_file

import minipeft as mp
from minipeft.core import configs
from minipeft.lab import models
from minipeft.methods import METHODS
from minipeft.methods.lora import LoRALinear

ROOT = pathlib.Path(__file__).resolve().parents[1]
LIBRARY = [p for p in (ROOT / "minipeft").rglob("*.py") if "lab" not in p.relative_to(ROOT / "minipeft").parts]


# ---------------------------------------------------------------- the two wings
@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_library_module_imports_the_lab(path):
    """Statically: no `import minipeft.lab`, `from minipeft.lab ...`, `from .lab`/`..lab` in the library."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            names = [alias.name for alias in node.names]
            assert "lab" not in module.replace(".", " ").split(), f"{path.name} imports {module}"
            assert not (node.level and not node.module and "lab" in names), f"{path.name} imports .lab"
        if isinstance(node, ast.Import):
            assert not any(a.name.startswith("minipeft.lab") for a in node.names), f"{path.name} imports the lab"


def test_importing_the_library_loads_no_lab_code_and_mp_lab_loads_on_demand():
    code = ("import sys, minipeft as mp; import minipeft.methods, minipeft.train, minipeft.saving\n"
            "assert not [m for m in sys.modules if m.startswith('minipeft.lab')], sorted(sys.modules)\n"
            "assert mp.lab.load_encoder and 'minipeft.lab' in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_every_method_is_in_the_one_registry_and_public():
    assert set(METHODS) == {"probe", "finetune", "bitfit", "prompt_tuning", "p_tuning", "deep_prompt",
                            "prefix_tuning", "bottleneck", "lora", "dora", "ia3"}
    for name, entry in METHODS.items():
        assert getattr(mp, entry.apply.__name__) is entry.apply, f"{name}: mp.{entry.apply.__name__} missing"
        assert entry.apply.__doc__, f"{entry.apply.__name__} has no docstring"
    assert {n for n, e in METHODS.items() if e.trains_base} == {"finetune", "bitfit"}


def test_every_apply_records_the_registry_name_it_is_loaded_by(tiny_bert):
    """What each apply_* records as its method is the registry key whose function rebuilds it."""
    applies = {"probe": {}, "finetune": {"top_k": 1}, "bitfit": {}, "prompt_tuning": {"k": 2}, "p_tuning": {"k": 2},
               "deep_prompt": {"k": 2}, "prefix_tuning": {"k": 2}, "bottleneck": {"r": 2}, "lora": {"r": 2},
               "dora": {"r": 2}, "ia3": {}}
    for name, kwargs in applies.items():
        model = mp.Classifier(models.tiny_bert())
        METHODS[name].apply(model, **kwargs, name="x")
        assert configs(model)["x"]["method"] == name


# ---------------------------------------------------------------- one name check for every method
APPLY_ANY = {
    "bitfit": lambda m, name: mp.apply_bitfit(m, name=name),
    "finetune": lambda m, name: mp.apply_finetune(m, top_k=1, name=name),
    "probe": lambda m, name: mp.apply_probe(m, name=name),
    "lora": lambda m, name: mp.apply_lora(m, r=2, name=name),
    "prompt_tuning": lambda m, name: mp.apply_prompt_tuning(m, k=2, name=name),
    "ia3": lambda m, name: mp.apply_ia3(m, name=name),
}


@pytest.mark.parametrize("first", list(APPLY_ANY))
@pytest.mark.parametrize("second", list(APPLY_ANY))
def test_a_name_in_use_is_refused_whatever_the_two_methods(first, second):
    """The bug: apply_bitfit(name="default") then apply_lora(name="default") passed both old checks, replaced
    BitFit's recorded config and froze the biases again. Now every pair is refused, and nothing changes."""
    model = mp.Classifier(models.tiny_bert())
    APPLY_ANY[first](model, "default")
    before = snapshot(model)
    with pytest.raises(ValueError, match="already exists"):
        APPLY_ANY[second](model, "default")
    after = snapshot(model)
    assert after["configs"] == before["configs"] and after["requires_grad"] == before["requires_grad"]
    assert list(after["state"]) == list(before["state"])


def test_bitfit_then_lora_under_another_name_keeps_both_configs():
    model = mp.Classifier(models.tiny_bert())
    mp.apply_bitfit(model, name="biases")
    mp.apply_lora(model, r=2, name="lora")
    assert {n: c["method"] for n, c in configs(model).items()} == {"biases": "bitfit", "lora": "lora"}


# ---------------------------------------------------------------- LoRA: scale, dropout, merging twice
def test_lora_scale_is_alpha_over_r():
    """h = W x + (α/r)·B A x with α ≠ r: checked against the formula (α alone, or r/α, would fail)."""
    torch.manual_seed(0)
    model = mp.apply_lora(models.tiny_bert(), targets=["query"], r=4, alpha=12)
    layer = model.encoder.layer[0].attention.self.query
    lora = layer.adapters["default"]
    torch.nn.init.normal_(lora.B)
    x = torch.randn(2, 5, 32)
    expected = layer.base(x) + (12 / 4) * x @ lora.A.T @ lora.B.T
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)
    assert lora.scaling == 3.0


def test_lora_dropout_is_applied_to_the_input_of_a():
    """dropout(x) goes into A (not onto the output): with p = 0.5 in train mode and a fixed seed, the update is
    (α/r)·B A dropout(x) with the mask torch draws for that seed."""
    torch.manual_seed(0)
    model = mp.apply_lora(models.tiny_bert(), targets=["query"], r=4, alpha=8, dropout=0.5)
    layer = model.encoder.layer[0].attention.self.query
    lora = layer.adapters["default"]
    torch.nn.init.normal_(lora.B)
    layer.train()
    x = torch.randn(2, 5, 32)
    torch.manual_seed(1)
    got = layer(x) - layer.base(x)
    torch.manual_seed(1)
    dropped = torch.nn.functional.dropout(x, 0.5, training=True)
    torch.testing.assert_close(got, 2.0 * dropped @ lora.A.T @ lora.B.T, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(got, 2.0 * x @ lora.A.T @ lora.B.T, atol=1e-3)  # it did drop something
    layer.eval()
    torch.testing.assert_close(layer(x) - layer.base(x), 2.0 * x @ lora.A.T @ lora.B.T, rtol=1e-5, atol=1e-5)


def test_merging_twice_leaves_the_outputs_of_the_unmerged_model():
    model = mp.apply_lora(mp.Classifier(models.tiny_bert()), r=4, alpha=8)
    perturb_trainable(model)
    batch = make_batch()
    unmerged = outputs(model, batch)
    mp.merge_lora(model)
    mp.merge_lora(model)  # a second merge must not add B A again
    torch.testing.assert_close(outputs(model, batch), unmerged, rtol=0, atol=1e-5)
    mp.unmerge_lora(model)
    torch.testing.assert_close(outputs(model, batch), unmerged, rtol=0, atol=1e-5)
    assert all(layer.merged is None for layer in model.modules() if isinstance(layer, LoRALinear))


# ---------------------------------------------------------------- saving: a file that lacks a tensor
def test_loading_a_file_that_lacks_a_tensor_fails_and_changes_nothing(tmp_path):
    model = mp.apply_lora(mp.Classifier(models.tiny_bert()), r=2)
    perturb_trainable(model)
    path = mp.save_adapter(model, tmp_path / "adapter")
    tensors = load_file(path / "adapter.safetensors")
    dropped = sorted(k for k in tensors if ".adapters." in k)[0]
    save_file({k: v for k, v in tensors.items() if k != dropped}, path / "adapter.safetensors")
    fresh = mp.Classifier(models.tiny_bert())
    before = snapshot(fresh)
    with pytest.raises(ValueError, match="does not fit") as error:
        mp.load_adapter(fresh, path)
    assert dropped in str(error.value)
    after = snapshot(fresh)
    assert after["configs"] == before["configs"] == {} and after["requires_grad"] == before["requires_grad"]
    assert mp.adapter_names(fresh) == []
    torch.testing.assert_close(outputs(fresh, make_batch()), outputs(mp.Classifier(models.tiny_bert()), make_batch()))


def test_loading_into_another_task_head_is_refused(tmp_path):
    model = mp.apply_lora(mp.Classifier(models.tiny_bert(), pooling="mean"), r=2)
    path = mp.save_adapter(model, tmp_path / "adapter")
    assert json.loads((path / "minipeft_adapter.json").read_text())["task_head"]["pooling"] == "mean"
    with pytest.raises(ValueError, match="task head"):
        mp.load_adapter(mp.Classifier(models.tiny_bert(), pooling="cls"), path)


# ---------------------------------------------------------------- pooling="last" with right padding
def test_last_token_pooling_of_a_right_padded_row_equals_the_unpadded_row():
    model = mp.Classifier(models.tiny_llama(), pooling="last")
    ids = torch.tensor([[11, 12, 13, 14, 15]])
    padded = torch.tensor([[11, 12, 13, 14, 15, 2, 2, 2]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0, 0]])
    with torch.no_grad():
        torch.testing.assert_close(model(padded, mask)["logits"], model(ids)["logits"], rtol=0, atol=1e-5)
        assert not torch.allclose(model(padded)["logits"], model(ids)["logits"], atol=1e-3)  # the mask matters


# ---------------------------------------------------------------- the NLI set is package data
def test_the_nli_set_is_found_from_the_package():
    from minipeft.lab import data
    assert data.NLI_FILE.parent == ROOT / "minipeft" / "lab" and data.NLI_FILE.exists()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"minipeft.lab" = ["apple_nli.jsonl"]' in pyproject
    assert '"minipeft.methods"' in pyproject and '"minipeft.lab"' in pyproject  # subpackages are installed


def test_removing_a_merged_lora_gives_back_the_original_modules_and_weights():
    model = mp.Classifier(models.tiny_bert())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    mp.apply_lora(model, r=2)
    perturb_trainable(model)
    mp.merge_lora(model)
    mp.remove_adapter(model, "default")
    after = model.state_dict()
    assert list(after) == list(before)  # no wrapper left behind
    moved = [k for k in before if not torch.allclose(after[k], before[k], atol=1e-6)]
    assert moved == ["head.weight", "head.bias"]  # trained and kept; every base weight is back (merge taken out)
    assert not any(isinstance(m, LoRALinear) for m in model.modules()) and configs(model) == {}


# ---------------------------------------------------------------- a reader's library
@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_public_function_and_class_of_the_library_has_a_docstring(path):
    tree = ast.parse(path.read_text())
    assert ast.get_docstring(tree), f"{path.name} has no module docstring"
    top = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    members = [n for c in top if isinstance(c, ast.ClassDef) for n in c.body if isinstance(n, ast.FunctionDef)]
    missing = [node.name for node in top + members if not node.name.startswith("_") and not ast.get_docstring(node)
               and node.name != "forward"]  # forward's job is the class's docstring
    assert not missing, f"{path.name}: no docstring for {missing}"
