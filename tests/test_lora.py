import copy

import pytest
import torch
from method_checks import (assert_unchanged, check_one_adamw_step, check_save_load, check_second_apply_refused,
                           check_two_adapters, check_wrong_base, copy_into_peft, fresh_base, LORA_TARGETS, make_batch,
                           outputs, perturb_trainable, query_value_shapes, snapshot, with_loss_head)

from minipeft.core import disable_adapters, remove_adapter, set_adapter
from minipeft.methods.lora import LoRALinear, apply_lora, lora_parameter_count, merge_lora, unmerge_lora
from minipeft.methods.probing import Classifier, probe_parameter_count
from minipeft.params import count_parameters
from minipeft.saving import configs

TARGETS = LORA_TARGETS


def test_identity_at_init(tiny_model):
    model, family = tiny_model
    batch = make_batch()
    base = outputs(model, batch)
    apply_lora(model, TARGETS[family], r=4)
    assert torch.equal(outputs(model, batch), base)


@pytest.mark.parametrize("r", [1, 8])
def test_count_matches_closed_form_tiny(tiny_model, r):
    model, family = tiny_model  # no head
    apply_lora(model, TARGETS[family], r=r)
    assert count_parameters(model)["trainable"] == lora_parameter_count(query_value_shapes(model.config), r)


@pytest.mark.slow
def test_count_matches_closed_form_real(encoder, causal_lm):
    minilm = apply_lora(Classifier(encoder[0], num_labels=2), TARGETS["bert"], r=8)  # with a linear head
    expected = lora_parameter_count(query_value_shapes(minilm.config), 8) + probe_parameter_count(384, 2)
    assert count_parameters(minilm)["trainable"] == expected == 74_498  # = peft's count in shared notes
    smollm = apply_lora(causal_lm[0], TARGETS["llama"], r=16)  # no head: the tied lm_head stays frozen
    assert count_parameters(smollm)["trainable"] == lora_parameter_count(query_value_shapes(smollm.config), 16)


def test_one_adamw_step_moves_only_trainable(tiny_model):
    model, family = tiny_model
    model = apply_lora(with_loss_head(model, family), TARGETS[family], r=4)
    check_one_adamw_step(model, make_batch())


def test_save_load_round_trip(tiny_model, tmp_path):
    model, family = tiny_model
    model = apply_lora(with_loss_head(model, family), TARGETS[family], r=4, alpha=8)
    path = check_save_load(model, fresh_base(family), tmp_path, make_batch())
    check_wrong_base(path, family)


def test_merge_unmerge_tiny(tiny_model):
    model, family = tiny_model
    check_merge(model, TARGETS[family], make_batch(), scale=0.1)


@pytest.mark.slow
def test_merge_unmerge_real_minilm(encoder):
    """In float64: in float32 the merged and unmerged MiniLM differ by 4–9e-5 after six layers depending on the
    random adapter (rounding of W + BA against W x + B A x), too close to 1e-5 for a check of the arithmetic."""
    model, tokenizer = encoder
    check_merge(model, TARGETS["bert"], real_batch(tokenizer), scale=0.05, dtype=torch.float64)


@pytest.mark.slow
def test_merge_unmerge_real_smollm2(causal_lm):
    """In float64: in float32, SmolLM2's logits (|x| up to ~30) move by ~3e-5 from merely batching rows
    differently, so a 1e-5 check of the merge arithmetic needs more precision than float32 has."""
    model, tokenizer = causal_lm
    check_merge(model, TARGETS["llama"], real_batch(tokenizer), scale=0.05, dtype=torch.float64)


def real_batch(tokenizer):
    return dict(tokenizer(["The movie was a delight from start to finish.", "Dull."], return_tensors="pt",
                          padding=True))


def check_merge(model, targets, batch, scale, dtype=torch.float32):
    apply_lora(model, targets, r=8)
    perturb_trainable(model, scale)
    model.to(dtype)
    disable_adapters(model)  # exactly the base model (test_identity_at_init, test_named_adapters_...)
    base = outputs(model, batch)
    set_adapter(model, "default")
    weights = {n: m.base.weight.clone() for n, m in model.named_modules() if isinstance(m, LoRALinear)}
    unmerged = outputs(model, batch)
    assert (unmerged - base).abs().max() > 1e-3  # the adapter really changes the model
    merge_lora(model)
    assert all(not torch.equal(m.base.weight, weights[n]) for n, m in model.named_modules() if n in weights)
    torch.testing.assert_close(outputs(model, batch), unmerged, atol=1e-5, rtol=0)
    disable_adapters(model)  # while merged: the layer subtracts the merged update again
    torch.testing.assert_close(outputs(model, batch), base, atol=1e-5, rtol=0)
    set_adapter(model, "default")
    unmerge_lora(model)
    for n, m in model.named_modules():
        if n in weights:
            torch.testing.assert_close(m.base.weight, weights[n], atol=1e-6, rtol=0)
    torch.testing.assert_close(outputs(model, batch), unmerged, atol=1e-5, rtol=0)


def test_named_adapters_switch_disable_remove(tiny_model):
    model, family = tiny_model
    batch = make_batch()
    base = outputs(model, batch)
    apply_lora(model, TARGETS[family], r=4, name="a")
    apply_lora(model, TARGETS[family][:1], r=2, name="b")
    perturb_trainable(model)
    set_adapter(model, "a")
    out_a = outputs(model, batch)
    set_adapter(model, "b")
    out_b = outputs(model, batch)
    assert not torch.equal(out_a, out_b) and not torch.equal(out_a, base) and not torch.equal(out_b, base)
    set_adapter(model, "a")
    assert torch.equal(outputs(model, batch), out_a)
    disable_adapters(model)
    assert torch.equal(outputs(model, batch), base)
    remove_adapter(model, "a")
    with pytest.raises(KeyError, match="a"):
        set_adapter(model, "a")
    assert list(configs(model)) == ["b"]  # what save_adapter would write is gone with it
    set_adapter(model, "b")
    assert torch.equal(outputs(model, batch), out_b)


def test_mixed_batch(tiny_model):
    model, family = tiny_model
    check_two_adapters(model, lambda m, name: apply_lora(m, TARGETS[family], r=4, name=name),
                       lambda m, name: apply_lora(m, TARGETS[family][1:], r=2, alpha=4, name=name))


def test_bad_input_leaves_model_unchanged(tiny_model):
    model, family = tiny_model
    before = snapshot(model)
    first = TARGETS[family][0]
    with pytest.raises(ValueError, match=r"nonexistent.*Candidates.*" + first):
        apply_lora(model, "nonexistent")
    with pytest.raises(ValueError, match=r"\['nonexistent'\].*Candidates.*" + first):
        apply_lora(model, [first, "nonexistent"])
    for r in (0, -1, 2.5):
        with pytest.raises(ValueError, match="positive integer"):
            apply_lora(model, TARGETS[family], r=r)
    assert_unchanged(model, before)
    check_second_apply_refused(model, lambda m: apply_lora(m, TARGETS[family], r=4),
                               lambda m: apply_lora(m, TARGETS[family][:1], r=2), "already exists")


# ---------------------------------------------------------------- Hugging Face peft as the oracle
def peft_lora(base, targets, r, alpha):
    peft = pytest.importorskip("peft")
    config = peft.LoraConfig(r=r, lora_alpha=alpha, target_modules=targets, lora_dropout=0.0)
    return peft.get_peft_model(copy.deepcopy(base), config).eval(), peft.__version__


@pytest.mark.slow
@pytest.mark.parametrize("which", ["minilm", "smollm2"])
def test_same_outputs_as_peft(which, encoder, causal_lm):
    base, tokenizer = encoder if which == "minilm" else causal_lm
    targets = TARGETS["bert" if which == "minilm" else "llama"]
    batch = real_batch(tokenizer)
    base_out = outputs(base, batch)
    reference, version = peft_lora(base, targets, r=8, alpha=16)
    ours = apply_lora(base, targets, r=8, alpha=16)
    perturb_trainable(ours, scale=0.05)
    copied = copy_into_peft(ours, reference)
    if copied != 2 * base.config.num_hidden_layers:
        pytest.skip(f"peft {version} did not wrap {targets} as expected ({copied} layers)")
    ours_out = outputs(ours, batch)
    torch.testing.assert_close(ours_out, outputs(reference, batch), atol=1e-5, rtol=0)
    assert (ours_out - base_out).abs().max() > 1e-3  # the copied adapters really change the model
