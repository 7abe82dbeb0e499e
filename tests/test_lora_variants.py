"""LoRA's successors: DoRA (a magnitude per output row), rsLoRA (α/√r) and LoRA+ (B learns faster than A).
Identity at initialisation, closed-form counts, merge = unmerged, save → load, and Hugging Face peft as the oracle
(`use_dora=True`, `use_rslora=True`) from the same weights, forward and backward."""
import copy
import math

import pytest
import torch
from method_checks import (LORA_TARGETS, check_mixed_batch, check_save_load, copy_into_peft, fresh_base, make_batch,
                           outputs, perturb_trainable, query_value_shapes, with_loss_head)

import minipeft as mp
from minipeft.lab import models
from minipeft.methods.dora import apply_dora, dora_parameter_count
from minipeft.methods.lora import LoRALinear, apply_lora, loraplus, merge_lora, unmerge_lora
from minipeft.params import count_parameters
from minipeft.train import parameter_groups

TARGETS, shapes = LORA_TARGETS, query_value_shapes


# ---------------------------------------------------------------- DoRA
def test_dora_is_the_base_model_at_initialisation(tiny_model):
    model, family = tiny_model
    batch = make_batch()
    base = outputs(model, batch)
    apply_dora(model, TARGETS[family], r=4)
    assert torch.equal(outputs(model, batch), base)  # m = ‖W‖ and B = 0: exactly W x + b


def test_dora_count_matches_closed_form(tiny_model):
    model, family = tiny_model
    apply_dora(model, TARGETS[family], r=4)
    assert count_parameters(model)["trainable"] == dora_parameter_count(shapes(model.config), 4)


def test_dora_follows_its_formula_on_one_layer():
    """h = m/‖W + s·BA‖ ⊙ (W + s·BA) x + b, with the norm of each output row."""
    torch.manual_seed(0)
    model = apply_dora(models.tiny_bert(), targets=["query"], r=4, alpha=12)
    layer = model.encoder.layer[0].attention.self.query
    dora = layer.adapters["default"]
    perturb_trainable(model, scale=0.3)
    W, b = layer.base.weight, layer.base.bias
    V = W + (12 / 4) * dora.B @ dora.A
    expected_weight = dora.magnitude[:, None] * V / V.norm(dim=1, keepdim=True)
    x = torch.randn(3, 5, 32)
    torch.testing.assert_close(layer(x), x @ expected_weight.T + b, rtol=1e-5, atol=1e-5)


def test_dora_merge_equals_unmerged_and_unmerge_restores_the_weights(tiny_model):
    model, family = tiny_model
    model = apply_dora(with_loss_head(model, family), TARGETS[family], r=4)
    perturb_trainable(model, scale=0.2)
    weights = {n: m.base.weight.clone() for n, m in model.named_modules() if isinstance(m, LoRALinear)}
    batch = make_batch()
    unmerged = outputs(model, batch)
    merge_lora(model)
    torch.testing.assert_close(outputs(model, batch), unmerged, rtol=0, atol=1e-5)
    with pytest.raises(RuntimeError, match="unmerge"):  # a merged DoRA cannot be subtracted like a LoRA
        mp.set_adapter(model, None)
        outputs(model, batch)
    mp.set_adapter(model, "default")
    unmerge_lora(model)
    for n, m in model.named_modules():
        if isinstance(m, LoRALinear):
            torch.testing.assert_close(m.base.weight, weights[n], rtol=0, atol=1e-6)
    torch.testing.assert_close(outputs(model, batch), unmerged, rtol=0, atol=1e-6)


def test_dora_save_load_and_mixed_batches(tiny_model, tmp_path):
    model, family = tiny_model
    model = apply_dora(with_loss_head(model, family), TARGETS[family], r=4, name="a")
    apply_lora(model, TARGETS[family], r=2, name="b")
    perturb_trainable(model)
    check_mixed_batch(model, make_batch(), ["a", "b", "a"])  # a DoRA row and a LoRA row in one batch
    single = apply_dora(fresh_base(family), TARGETS[family], r=4)
    check_save_load(single, fresh_base(family), tmp_path, make_batch())


def test_dora_refuses_a_bad_rank_and_a_used_name(tiny_bert):
    with pytest.raises(ValueError, match="rank r must be a positive integer"):
        apply_dora(tiny_bert, r=0)
    apply_dora(tiny_bert, r=2)
    with pytest.raises(ValueError, match="already exists"):
        apply_lora(tiny_bert, r=2)


# ---------------------------------------------------------------- rsLoRA and LoRA+
def test_rslora_scales_by_alpha_over_the_square_root_of_r():
    model = apply_lora(models.tiny_bert(), targets=["query"], r=16, alpha=8, rslora=True)
    lora = model.encoder.layer[0].attention.self.query.adapters["default"]
    assert lora.scaling == 8 / math.sqrt(16) == 2.0
    plain = apply_lora(models.tiny_bert(), targets=["query"], r=16, alpha=8)
    assert plain.encoder.layer[0].attention.self.query.adapters["default"].scaling == 0.5
    assert mp.core.configs(model)["default"]["rslora"] is True  # saved, so load_adapter rebuilds it


def test_loraplus_gives_b_its_own_learning_rate():
    model = apply_lora(mp.Classifier(models.tiny_bert()), r=2)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    groups = parameter_groups(trainable, 1e-3, loraplus(16))
    by_rate = {g["lr"]: {n for n, p in trainable.items() if any(p is q for q in g["params"])} for g in groups}
    assert set(by_rate) == {1e-3, 16e-3}
    assert by_rate[16e-3] == {n for n in trainable if n.endswith(".B")} and len(by_rate[16e-3]) == 4
    assert all(n.endswith(".A") or n.startswith("head.") for n in by_rate[1e-3])
    assert len(parameter_groups(trainable, 1e-3)) == 1  # without lr_scale: one group


def test_loraplus_trains_b_faster_in_the_loop(bert_tokenizer):
    import datasets
    data = datasets.Dataset.from_dict({"text": ["good", "bad", "fine film", "awful"] * 4, "label": [1, 0, 1, 0] * 4})
    from minipeft.batching import make_loader
    loader = make_loader(data, bert_tokenizer, "text", batch_size=4)
    moved = {}
    for ratio in (1, 16):
        torch.manual_seed(0)
        model = apply_lora(mp.Classifier(models.tiny_bert()), r=2)
        before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        mp.train.train(model, loader, lr=1e-3, steps=3, warmup=0, lr_scale=loraplus(ratio), precision="fp32",
                       progress=False)
        moved[ratio] = {kind: sum((p - before[n]).abs().sum().item() for n, p in model.named_parameters()
                                  if n.endswith(f".{kind}")) for kind in ("A", "B")}
    assert moved[16]["B"] > 5 * moved[1]["B"]  # AdamW steps scale with the learning rate
    assert moved[16]["A"] == pytest.approx(moved[1]["A"], rel=0.5)


# ---------------------------------------------------------------- Hugging Face peft as the oracle
def peft_reference(base, family, r, alpha, dora, rslora):
    peft = pytest.importorskip("peft")
    config = peft.LoraConfig(r=r, lora_alpha=alpha, target_modules=TARGETS[family], lora_dropout=0.0, use_dora=dora,
                             use_rslora=rslora)
    return peft.get_peft_model(copy.deepcopy(base), config)


def loss_of(model, batch):
    out = model(**batch)
    logits = out["logits"] if "logits" in out else out["last_hidden_state"]
    return (logits.float() ** 2).mean()


@pytest.mark.parametrize("dora,rslora", [(True, False), (False, True), (True, True)])
def test_same_outputs_and_gradients_as_peft(tiny_model, dora, rslora):
    base, family = tiny_model
    reference = peft_reference(base, family, 4, 8, dora, rslora)
    apply = apply_dora if dora else apply_lora
    ours = apply(base, TARGETS[family], r=4, alpha=8, rslora=rslora)
    perturb_trainable(ours, scale=0.2)
    assert copy_into_peft(ours, reference) == 2 * base.config.num_hidden_layers
    batch = make_batch()
    torch.testing.assert_close(outputs(ours, batch), outputs(reference, batch), atol=1e-5, rtol=0)
    loss_of(ours, batch).backward()
    loss_of(reference, batch).backward()
    for name, module in reference.named_modules():
        if hasattr(module, "lora_A") and "default" in module.lora_A:
            mine = ours.get_submodule(name.removeprefix("base_model.model.")).adapters["default"]
            torch.testing.assert_close(mine.B.grad, module.lora_B["default"].weight.grad, atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(mine.A.grad, module.lora_A["default"].weight.grad, atol=1e-5, rtol=1e-4)
            if dora:
                torch.testing.assert_close(mine.magnitude.grad, module.lora_magnitude_vector["default"].weight.grad,
                                           atol=1e-5, rtol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("which", ["minilm", "smollm2"])
def test_dora_same_outputs_as_peft_on_the_real_models(which, encoder, causal_lm):
    base, tokenizer = encoder if which == "minilm" else causal_lm
    base = copy.deepcopy(base).double()  # float64: six layers of fp32 rounding (~2e-5) would hide nothing but noise
    family = "bert" if which == "minilm" else "llama"
    batch = dict(tokenizer(["a quietly moving film", "the plot never takes off at all"], padding=True,
                           return_tensors="pt"))
    base_out = outputs(base, batch)
    reference = peft_reference(base, family, 8, 16, True, False)
    ours = apply_dora(base, TARGETS[family], r=8, alpha=16)
    perturb_trainable(ours, scale=0.05)
    assert copy_into_peft(ours, reference) == 2 * base.config.num_hidden_layers
    ours_out = outputs(ours, batch)
    torch.testing.assert_close(ours_out, outputs(reference, batch), atol=1e-9, rtol=0)
    assert (ours_out - base_out).abs().max() > 1e-3
