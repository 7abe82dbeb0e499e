"""Hugging Face peft's adapter folder, both ways, judged by peft itself: export_peft → peft.PeftModel.from_pretrained
(its real loader, from the files on disk) gives minipeft's outputs; a folder peft saved (save_pretrained) imports into
minipeft with peft's outputs; bad folders raise and change nothing; minipeft's own folder no longer uses peft's
file name."""
import copy
import json
import warnings

import pytest
import torch
from method_checks import assert_unchanged, make_batch, outputs, perturb_trainable, snapshot
from prompt_checks import assert_close, real_batch
from safetensors.torch import load_file, save_file

import minipeft as mp
from minipeft.core import configs
from minipeft.lab import models

peft = pytest.importorskip("peft")


def classifier_bert():
    return mp.Classifier(models.tiny_bert())


def classifier_llama_body():
    """A Classifier on LlamaModel (the body): on LlamaForCausalLM, peft's modules_to_save=["head"] takes lm_head."""
    return mp.Classifier(models.tiny_llama().model, pooling="last")


EXPORTS = {  # case: (the base model, how minipeft adapts it)
    "lora classifier bert": (classifier_bert, lambda m: mp.apply_lora(m, ["query", "value"], r=4, alpha=16)),
    "ia3 classifier bert": (classifier_bert, mp.apply_ia3),  # feed-forward targets given as a "re:" regex
    "lora classifier llama": (classifier_llama_body, lambda m: mp.apply_lora(m, [r"re:.*\.(q|v)_proj"], r=2, alpha=6)),
    "lora llama": (models.tiny_llama, lambda m: mp.apply_lora(m, ["q_proj", "v_proj"], r=8, alpha=16, dropout=0.1)),
    "rslora classifier bert": (classifier_bert, lambda m: mp.apply_lora(m, ["query", "value"], r=4, alpha=8,
                                                                        rslora=True)),
    "dora llama": (models.tiny_llama, lambda m: mp.apply_dora(m, ["q_proj", "v_proj"], r=4, alpha=8)),
    "dora rslora classifier bert": (classifier_bert, lambda m: mp.apply_dora(m, ["query", "value", "dense"], r=2,
                                                                             alpha=4, rslora=True)),
    "ia3 llama": (models.tiny_llama, mp.apply_ia3),
    "prompt llama": (models.tiny_llama, lambda m: mp.apply_prompt_tuning(m, k=3)),
    "p-tuning mlp llama": (models.tiny_llama, lambda m: mp.apply_p_tuning(m, k=3, hidden=16)),
    "p-tuning lstm llama": (models.tiny_llama, lambda m: mp.apply_p_tuning(m, k=3, encoder="lstm", hidden=8)),
    "prefix llama": (models.tiny_llama, lambda m: mp.apply_prefix_tuning(m, k=3)),  # grouped KV heads
    "prefix reparameterised llama": (models.tiny_llama, lambda m: mp.apply_prefix_tuning(m, k=3, reparam_hidden=8)),
    "prompt bert": (models.tiny_bert, lambda m: mp.apply_prompt_tuning(m, k=3)),
    "prefix bert": (models.tiny_bert, lambda m: mp.apply_prefix_tuning(m, k=4)),
}


def load_in_peft(base, folder):
    """peft's own loader, from the files on disk, into an untouched copy of the base model."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "could not find a config file in tiny-llama": the name is no hub repo
        return peft.PeftModel.from_pretrained(copy.deepcopy(base), folder).eval()


def check_export(base, apply, folder, batch, tol):
    """export_peft of the perturbed adapter, loaded by peft, gives minipeft's outputs within `tol`; the adapter
    really changes the model (on the real tokens' positions)."""
    model = apply(copy.deepcopy(base)).eval()
    perturb_trainable(model)
    ours = outputs(model, batch)
    mp.export_peft(model, folder)
    assert_close(outputs(load_in_peft(base, folder), batch), ours, tol)
    plain = outputs(base, batch)
    n = plain.shape[1] if plain.dim() == 3 else 0  # prompts: the real tokens are the last n positions
    assert (ours[:, -n:] - plain).abs().max() > 1e-3
    return model


@pytest.mark.parametrize("case", list(EXPORTS))
def test_export_loads_in_peft_with_the_same_outputs(case, tmp_path):
    base, apply = EXPORTS[case]
    check_export(base(), apply, tmp_path / "peft", make_batch(), 1e-5)


def test_every_lora_hyper_parameter_is_written_out(tmp_path):
    """peft's defaults are r = 8, lora_alpha = 8: without lora_alpha an r = 8, α = 16 adapter would load at half its
    scale, silently. The export test above fails then; this one says why."""
    model = mp.apply_lora(models.tiny_llama(), ["q_proj", r"re:.*\.v_proj"], r=8, alpha=16, dropout=0.1)
    config = json.loads((mp.export_peft(model, tmp_path / "peft") / "adapter_config.json").read_text())
    assert {k: config[k] for k in ("peft_type", "task_type", "r", "lora_alpha", "lora_dropout", "bias", "use_rslora",
                                   "base_model_name_or_path")} == {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 8, "lora_alpha": 16, "lora_dropout": 0.1, "bias": "none",
        "use_rslora": False, "base_model_name_or_path": "tiny-llama"}
    assert config["target_modules"] == r"(?:.*\.)?q_proj|(?:.*\.v_proj)"  # one full-match regex, as peft reads it
    loaded = load_in_peft(models.tiny_llama(), tmp_path / "peft")
    assert loaded.base_model.model.model.layers[0].self_attn.q_proj.scaling["default"] == 2.0


def test_the_exported_files_hold_peft_keys_and_shapes(tmp_path):
    model = mp.apply_ia3(classifier_bert())
    folder = mp.export_peft(model, tmp_path / "peft")
    tensors = load_file(folder / "adapter_model.safetensors")
    config = json.loads((folder / "adapter_config.json").read_text())
    prefix = "base_model.model.backbone.encoder.layer.0."
    assert tensors[prefix + "attention.self.key.ia3_l"].shape == (32, 1)  # scales the output
    assert tensors[prefix + "output.dense.ia3_l"].shape == (1, 64)  # feed-forward: scales the input
    assert {"base_model.model.head.weight", "base_model.model.head.bias"} <= set(tensors)
    assert len(tensors) == 2 * 3 + 2 and config["modules_to_save"] == ["head"] and config["task_type"] is None


# ---------------------------------------------------------------- folders peft saved
PEFT_SAVED = {  # case: (the base model, peft's config)
    "lora classifier": (classifier_bert, lambda: peft.LoraConfig(r=4, lora_alpha=12, target_modules=["query", "value"],
                                                                 modules_to_save=["head"])),
    "lora llama regex": (models.tiny_llama, lambda: peft.LoraConfig(task_type="CAUSAL_LM", r=2, lora_alpha=6,
                                                                     target_modules=r".*\.(q|v)_proj")),
    "lora llama defaults": (models.tiny_llama, lambda: peft.LoraConfig(task_type="CAUSAL_LM",  # r = α = 8
                                                                        target_modules=["k_proj"])),
    "rslora llama": (models.tiny_llama, lambda: peft.LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8,
                                                                 use_rslora=True, target_modules=["q_proj"])),
    "dora classifier": (classifier_bert, lambda: peft.LoraConfig(r=4, lora_alpha=8, use_dora=True,
                                                                 target_modules=["query", "value"],
                                                                 modules_to_save=["head"])),
    "ia3 llama": (models.tiny_llama, lambda: peft.IA3Config(task_type="CAUSAL_LM", feedforward_modules=["down_proj"],
                                                             target_modules=["k_proj", "v_proj", "down_proj"])),
    "ia3 bert regex": (models.tiny_bert, lambda: peft.IA3Config(
        task_type="FEATURE_EXTRACTION", target_modules=r".*\.(key|value)|.*layer\.\d+\.output\.dense",
        feedforward_modules=r".*layer\.\d+\.output\.dense")),
    "prompt llama": (models.tiny_llama, lambda: peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3)),
    "p-tuning llama": (models.tiny_llama, lambda: peft.PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=3,
                                                                            encoder_hidden_size=16)),
    "prefix projection llama": (models.tiny_llama, lambda: peft.PrefixTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=3, prefix_projection=True, encoder_hidden_size=8)),
    "prefix bert": (models.tiny_bert, lambda: peft.PrefixTuningConfig(task_type="FEATURE_EXTRACTION",
                                                                       num_virtual_tokens=4)),
}


def peft_saved(base, config, folder):
    """A peft model with perturbed weights (B = 0 and ones would prove little), saved by peft itself."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = peft.get_peft_model(copy.deepcopy(base), config).eval()
        perturb_trainable(reference)
        reference.save_pretrained(folder)
    return reference


@pytest.mark.parametrize("case", list(PEFT_SAVED))
def test_import_of_a_folder_peft_saved_gives_peft_outputs(case, tmp_path):
    base, config = PEFT_SAVED[case]
    base, batch = base(), make_batch()
    reference = peft_saved(base, config(), tmp_path / "peft")
    imported = mp.import_peft(base, tmp_path / "peft").eval()
    assert_close(outputs(imported, batch), outputs(reference, batch), 1e-5)
    assert mp.adapter_names(imported) == ["default"]


def test_import_then_export_gives_peft_the_same_folder_back(tmp_path):
    reference = peft_saved(models.tiny_llama(), peft.LoraConfig(task_type="CAUSAL_LM", r=2, lora_alpha=5,
                                                                 target_modules=["q_proj"]), tmp_path / "peft")
    model = mp.import_peft(models.tiny_llama(), tmp_path / "peft", name="imported")
    assert configs(model)["imported"] == {"method": "lora", "targets": ["q_proj"], "r": 2, "alpha": 5, "dropout": 0.0,
                                        "rslora": False}
    again = load_file(mp.export_peft(model, tmp_path / "again", name="imported") / "adapter_model.safetensors")
    saved = load_file(tmp_path / "peft" / "adapter_model.safetensors")
    assert again.keys() == saved.keys() and all(torch.equal(again[k], saved[k]) for k in saved)
    batch = make_batch()
    assert_close(outputs(load_in_peft(models.tiny_llama(), tmp_path / "again"), batch), outputs(reference, batch), 0)


# ---------------------------------------------------------------- bad folders and combinations peft cannot load
def lora_folder(tmp_path):
    model = mp.apply_lora(models.tiny_llama(), ["q_proj", "v_proj"], r=4, alpha=8)
    return mp.export_peft(model, tmp_path / "peft")


def rewrite(folder, config=None, tensors=None):
    if config is not None:
        (folder / "adapter_config.json").write_text(json.dumps(config))
    if tensors is not None:
        save_file(tensors, folder / "adapter_model.safetensors")


def test_bad_folders_raise_and_change_nothing(tmp_path):
    model = mp.apply_lora(models.tiny_llama(), ["k_proj"], r=2, name="already")  # a model that holds an adapter
    before = snapshot(model)
    folder = lora_folder(tmp_path)
    config = json.loads((folder / "adapter_config.json").read_text())
    tensors = load_file(folder / "adapter_model.safetensors")
    first_b = next(k for k in tensors if k.endswith("lora_B.weight"))
    cases = [  # (what is wrong, config, tensors, the message says)
        ("a tensor is missing", None, {k: v for k, v in tensors.items() if k != first_b}, "missing"),
        ("shapes of another rank", {**config, "r": 2}, None, "another shape"),
        ("a base weight", None, {**tensors, "base_model.model.lm_head.weight": torch.zeros(49152, 32)}, "unknown"),
        ("another method", {**config, "peft_type": "LOHA"}, None, "LOHA"),
        ("an option minipeft lacks", {**config, "lora_bias": True}, None, "lora_bias"),
        ("DoRA without its magnitudes", {**config, "use_dora": True}, None, "missing.*magnitude"),
        ("another base model", {**config, "base_model_name_or_path": "/models/tiny-bert"}, None, "tiny-bert"),
        ("targets the model lacks", {**config, "target_modules": ["query"]}, None, "query"),
    ]
    for what, bad_config, bad_tensors, message in cases:
        rewrite(folder, config, tensors)
        rewrite(folder, bad_config, bad_tensors)
        with pytest.raises(ValueError, match=message):
            mp.import_peft(model, folder)
        assert_unchanged(model, before), what
    (folder / "adapter_config.json").unlink()
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        mp.import_peft(model, folder)
    assert_unchanged(model, before)


def test_an_ia3_vector_on_the_wrong_side_is_refused(tmp_path):
    folder = mp.export_peft(mp.apply_ia3(models.tiny_llama()), tmp_path / "peft")
    tensors = load_file(folder / "adapter_model.safetensors")
    key = next(k for k in tensors if "k_proj" in k)  # (16, 1): scales the output
    rewrite(folder, tensors={**tensors, key: tensors[key].T.contiguous()})  # (1, 16): as if it scaled the input
    model = models.tiny_llama()
    before = snapshot(model)
    with pytest.raises(ValueError, match="another shape"):
        mp.import_peft(model, folder)
    assert_unchanged(model, before)


NOT_IN_PEFT = {
    "bitfit": lambda m: mp.apply_bitfit(m), "finetune": lambda m: mp.apply_finetune(m, top_k=1),
    "probe": lambda m: mp.apply_probe(m), "bottleneck": lambda m: mp.apply_bottleneck(m, r=2),
    "deep_prompt": lambda m: mp.apply_deep_prompts(m, k=2),
}


@pytest.mark.parametrize("method", list(NOT_IN_PEFT))
def test_methods_peft_does_not_have_are_refused(method, tmp_path):
    model = NOT_IN_PEFT[method](classifier_bert())
    with pytest.raises(ValueError, match=f"{method}, which Hugging Face peft does not have"):
        mp.export_peft(model, tmp_path / "peft")
    assert not (tmp_path / "peft").exists()


def test_combinations_peft_cannot_load_are_refused(tmp_path):
    with pytest.raises(ValueError, match="only into a transformers model.*LlamaForCausalLM"):
        mp.export_peft(mp.apply_prompt_tuning(classifier_bert(), k=2), tmp_path / "peft")
    with pytest.raises(ValueError, match=r"backbone\.lm_head.*Classifier\(lm\.model\)"):
        mp.export_peft(mp.apply_lora(mp.Classifier(models.tiny_llama()), ["q_proj"]), tmp_path / "peft")
    assert not (tmp_path / "peft").exists()


# ---------------------------------------------------------------- minipeft's own folder is not a peft folder
def test_minipeft_folders_no_longer_use_peft_file_names(tmp_path):
    """The bug: save_adapter wrote adapter_config.json in a schema of its own, the file peft and transformers look
    for in any adapter folder; transformers' adapter detection then took a minipeft folder for a peft one."""
    from transformers.utils import find_adapter_config_file
    model = mp.apply_lora(classifier_bert(), r=2)
    perturb_trainable(model)
    folder = mp.save_adapter(model, tmp_path / "minipeft")
    assert sorted(p.name for p in folder.iterdir()) == ["adapter.safetensors", "minipeft_adapter.json"]
    assert find_adapter_config_file(str(folder)) is None
    (folder / "minipeft_adapter.json").rename(folder / "adapter_config.json")  # a folder saved before the rename
    old = mp.load_adapter(classifier_bert(), folder)
    assert torch.equal(outputs(old, make_batch()), outputs(model, make_batch()))
    with pytest.raises(ValueError, match="import_peft"):
        mp.load_adapter(classifier_bert(), mp.export_peft(model, tmp_path / "peft"))


# ---------------------------------------------------------------- the real models
@pytest.mark.slow
@pytest.mark.parametrize("method", ["lora", "ia3"])
def test_real_minilm_classifier_export(method, encoder, tmp_path):
    backbone, tokenizer = encoder
    apply = {"lora": lambda m: mp.apply_lora(m, ["query", "value"], r=8, alpha=16), "ia3": mp.apply_ia3}[method]
    batch = {k: v for k, v in real_batch(tokenizer, "bert").items() if k != "token_type_ids"}
    check_export(mp.Classifier(backbone), apply, tmp_path / "peft", batch, 1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["prompt", "prefix"])
def test_real_minilm_prompt_export(method, encoder, tmp_path):
    backbone, tokenizer = encoder
    apply = {"prompt": lambda m: mp.apply_prompt_tuning(m, k=5, init="vocab"),
             "prefix": lambda m: mp.apply_prefix_tuning(m, k=5)}[method]
    batch = {k: v for k, v in real_batch(tokenizer, "bert").items() if k != "token_type_ids"}  # peft does not pad them
    check_export(backbone, apply, tmp_path / "peft", batch, 1e-5)


SMOLLM2 = {
    "lora": lambda m: mp.apply_lora(m, ["q_proj", "v_proj"], r=8, alpha=16),
    "ia3": mp.apply_ia3,
    "prompt": lambda m: mp.apply_prompt_tuning(m, k=5, init="vocab"),
    "p-tuning": lambda m: mp.apply_p_tuning(m, k=5),
    "prefix": lambda m: mp.apply_prefix_tuning(m, k=5, reparam_hidden=32),  # grouped KV heads, exported folded
}


@pytest.mark.slow
@pytest.mark.parametrize("method", list(SMOLLM2))
def test_real_smollm2_export(method, causal_lm, tmp_path):
    model, tokenizer = causal_lm
    check_export(model, SMOLLM2[method], tmp_path / "peft", real_batch(tokenizer, "llama"), 1e-5)


@pytest.mark.slow
def test_real_smollm2_import_of_a_folder_peft_saved(causal_lm, tmp_path):
    model, tokenizer = causal_lm
    batch = real_batch(tokenizer, "llama")
    config = peft.LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"])
    reference = peft_saved(model, config, tmp_path / "peft")
    assert_close(outputs(mp.import_peft(model, tmp_path / "peft"), batch), outputs(reference, batch), 1e-5)
