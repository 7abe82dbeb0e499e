import copy

import pytest
import torch
from method_checks import (assert_unchanged, check_one_adamw_step, check_save_load, check_second_apply_refused,
                           check_two_adapters, check_wrong_base, fresh_base, kv_width, make_batch, outputs,
                           perturb_trainable, snapshot, with_loss_head)

from minipeft.methods.ia3 import IA3Linear, apply_ia3, ia3_parameter_count
from minipeft.methods.probing import Classifier, probe_parameter_count
from minipeft.params import count_parameters

SCALED_OUTPUT = {"bert": ["key", "value"], "llama": ["k_proj", "v_proj"]}


def closed_form(config) -> int:
    return ia3_parameter_count(config.num_hidden_layers, kv_width(config), config.intermediate_size)


def test_identity_at_init(tiny_model):
    model, family = tiny_model
    batch = make_batch()
    base = outputs(model, batch)
    apply_ia3(model)
    assert torch.equal(outputs(model, batch), base)


def test_default_targets_scale_keys_values_output_and_ffn_input(tiny_model):
    model, family = tiny_model
    apply_ia3(model)
    perturb_trainable(model)
    wrapped = {n for n, m in model.named_modules() if isinstance(m, IA3Linear)}
    prefix, suffixes = {"bert": ("encoder.layer", ["attention.self.key", "attention.self.value", "output.dense"]),
                        "llama": ("model.layers", ["self_attn.k_proj", "self_attn.v_proj", "mlp.down_proj"])}[family]
    assert wrapped == {f"{prefix}.{i}.{s}" for i in range(2) for s in suffixes}  # not attention.output.dense
    for name, layer in model.named_modules():
        if isinstance(layer, IA3Linear):
            l = layer.adapters["default"].vector
            x = torch.randn(2, 3, layer.base.in_features)
            expected = layer.base(x * l) if name.endswith(("dense", "down_proj")) else layer.base(x) * l
            assert torch.equal(layer(x), expected), name


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_count_matches_closed_form_tiny(family):
    model = fresh_base(family)  # Classifier head on BERT (counted), none on Llama
    head = probe_parameter_count(32, 2) if family == "bert" else 0
    apply_ia3(model)
    assert count_parameters(model)["trainable"] == closed_form(model.config) + head
    only_values = apply_ia3(fresh_base(family), targets=SCALED_OUTPUT[family][1:], feedforward=[])
    assert count_parameters(only_values)["trainable"] == kv_width(model.config) * 2 + head


@pytest.mark.slow
def test_count_matches_closed_form_real(encoder, causal_lm):
    minilm = apply_ia3(Classifier(encoder[0], num_labels=3))  # linear head 384·3 + 3
    assert count_parameters(minilm)["trainable"] == 6 * (2 * 384 + 1536) + probe_parameter_count(384, 3)
    smollm = apply_ia3(causal_lm[0])  # no head; grouped KV: d_kv = 3 heads · 64
    assert count_parameters(smollm)["trainable"] == closed_form(smollm.config) == 30 * (2 * 192 + 1536)


def test_one_adamw_step_moves_only_trainable(tiny_model):
    model, family = tiny_model
    check_one_adamw_step(apply_ia3(with_loss_head(model, family)), make_batch())


def test_save_load_round_trip(tiny_model, tmp_path):
    model, family = tiny_model
    model = apply_ia3(with_loss_head(model, family))
    path = check_save_load(model, fresh_base(family), tmp_path, make_batch())
    check_wrong_base(path, family)


def test_named_adapters_and_mixed_batch(tiny_model):
    model, family = tiny_model
    check_two_adapters(model, apply_ia3, lambda m, name: apply_ia3(m, SCALED_OUTPUT[family][1:], [], name=name))
    # "b" scales values only: in a mixed batch its rows leave keys and the FFN input alone


def test_bad_input_leaves_model_unchanged(tiny_model, monkeypatch):
    model, family = tiny_model
    before = snapshot(model)
    key = SCALED_OUTPUT[family][0]
    with pytest.raises(ValueError, match=r"nonexistent.*Candidates.*" + key):
        apply_ia3(model, targets=["nonexistent"])
    with pytest.raises(ValueError, match=r"\['nonexistent'\].*Candidates"):
        apply_ia3(model, targets=[key, "nonexistent"])
    with pytest.raises(ValueError, match=r"\['nonexistent'\].*Candidates"):
        apply_ia3(model, feedforward=["nonexistent"])
    with pytest.raises(ValueError, match="both empty"):
        apply_ia3(model, targets=[], feedforward=[])
    with pytest.raises(ValueError, match="both targets and feedforward"):
        apply_ia3(model, targets=[key], feedforward=[key])
    monkeypatch.setattr(model.config, "model_type", "gpt2")
    with pytest.raises(ValueError, match="no default .* for model_type 'gpt2'"):
        apply_ia3(model)
    monkeypatch.undo()
    assert_unchanged(model, before)
    check_second_apply_refused(model, apply_ia3, apply_ia3, "already exists")


# ---------------------------------------------------------------- Hugging Face peft as the oracle
PEFT_TARGETS = {  # peft's IA3Config: feed-forward modules must be among the targets; regexes are full matches
    "minilm": (r".*\.(key|value)|.*layer\.\d+\.output\.dense", r".*layer\.\d+\.output\.dense"),
    "smollm2": (["k_proj", "v_proj", "down_proj"], ["down_proj"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("which", ["minilm", "smollm2"])
def test_same_outputs_as_peft(which, encoder, causal_lm):
    peft = pytest.importorskip("peft")
    base, tokenizer = encoder if which == "minilm" else causal_lm
    batch = dict(tokenizer(["An (IA)3 check.", "Two rows, one padded at the end."], return_tensors="pt",
                           padding=True))
    base_out = outputs(base, batch)
    targets, feedforward = PEFT_TARGETS[which]
    config = peft.IA3Config(target_modules=targets, feedforward_modules=feedforward)
    reference = peft.get_peft_model(copy.deepcopy(base), config).eval()
    ours = apply_ia3(base)
    perturb_trainable(ours, scale=0.1)
    copied = 0
    with torch.no_grad():
        for name, module in reference.named_modules():
            if hasattr(module, "ia3_l") and "default" in module.ia3_l:
                ours_layer = ours.get_submodule(name.removeprefix("base_model.model."))
                assert module.is_feedforward == ours_layer.adapters["default"].scales_input, name
                module.ia3_l["default"].copy_(ours_layer.adapters["default"].vector.view_as(module.ia3_l["default"]))
                copied += 1
    if copied != 3 * base.config.num_hidden_layers:
        pytest.skip(f"peft {peft.__version__} did not wrap the (IA)³ targets as expected ({copied} layers)")
    ours_out = outputs(ours, batch)
    torch.testing.assert_close(ours_out, outputs(reference, batch), atol=1e-5, rtol=0)
    assert (ours_out - base_out).abs().max() > 1e-3
