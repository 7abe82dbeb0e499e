import pytest
import torch
from method_checks import (assert_unchanged, check_one_adamw_step, check_save_load, check_second_apply_refused,
                           check_two_adapters, check_wrong_base, fresh_base, make_batch, outputs, perturb_trainable,
                           snapshot, with_loss_head)

from minipeft.methods.bottleneck import BottleneckLayer, apply_bottleneck, bottleneck_parameter_count
from minipeft.methods.probing import Classifier, probe_parameter_count
from minipeft.params import count_parameters

PLACEMENT_FUSION = [(p, f) for p in ("houlsby", "pfeiffer") for f in ("add", "gate")]
WRAPPED = {  # family -> placement -> the linears an adapter follows, in layer i
    "bert": {"houlsby": ["encoder.layer.{i}.attention.output.dense", "encoder.layer.{i}.output.dense"],
             "pfeiffer": ["encoder.layer.{i}.output.dense"]},
    "llama": {"houlsby": ["model.layers.{i}.self_attn.o_proj", "model.layers.{i}.mlp.down_proj"],
              "pfeiffer": ["model.layers.{i}.mlp.down_proj"]},
}


@pytest.mark.parametrize("placement, fusion", PLACEMENT_FUSION)
def test_identity_at_init(tiny_model, placement, fusion):
    model, family = tiny_model
    batch = make_batch()
    base = outputs(model, batch)
    apply_bottleneck(model, r=8, placement=placement, fusion=fusion)
    assert torch.equal(outputs(model, batch), base)


@pytest.mark.parametrize("placement, fusion", [("houlsby", "add"), ("pfeiffer", "gate")])
def test_near_identity_with_init_scale(tiny_model, placement, fusion):
    model, family = tiny_model
    batch = make_batch()
    base = outputs(model, batch)
    apply_bottleneck(model, r=8, placement=placement, fusion=fusion, init="normal", init_scale=1e-3)
    gap = (outputs(model, batch) - base).abs().max().item()
    assert 0 < gap < 0.1 * base.abs().max().item()  # tiny Llama's logits are small (|x| < 1)


@pytest.mark.parametrize("placement", ["houlsby", "pfeiffer"])
def test_placement_and_formula(tiny_model, placement):
    model, family = tiny_model
    apply_bottleneck(model, r=4, placement=placement, fusion="gate", activation="gelu")
    perturb_trainable(model)
    wrapped = {n for n, m in model.named_modules() if isinstance(m, BottleneckLayer)}
    assert wrapped == {t.format(i=i) for t in WRAPPED[family][placement] for i in range(2)}
    layer = model.get_submodule(sorted(wrapped)[0])
    a = layer.adapters["default"]
    x = torch.randn(2, 3, layer.base.in_features)
    h = layer.base(x)
    expected = h + torch.sigmoid(a.gate) * (torch.nn.functional.gelu(h @ a.down.weight.T + a.down.bias)
                                            @ a.up.weight.T + a.up.bias)
    torch.testing.assert_close(layer(x), expected, atol=1e-6, rtol=0)
    assert a.gate.shape == (1,)  # one learned scalar per adapter module


@pytest.mark.parametrize("r", [4, 16])
@pytest.mark.parametrize("placement, fusion", PLACEMENT_FUSION)
@pytest.mark.parametrize("family", ["bert", "llama"])
def test_count_matches_closed_form_tiny(family, placement, fusion, r):
    model = apply_bottleneck(fresh_base(family), r=r, placement=placement, fusion=fusion)
    head = probe_parameter_count(32, 2) if family == "bert" else 0  # Classifier head on BERT, none on Llama
    assert count_parameters(model)["trainable"] == bottleneck_parameter_count(2, 32, r, placement, fusion) + head


@pytest.mark.slow
def test_count_matches_closed_form_real(encoder, causal_lm):
    minilm = apply_bottleneck(Classifier(encoder[0], num_labels=2), r=24, placement="houlsby", fusion="gate")
    expected = 2 * 6 * (2 * 384 * 24 + 384 + 24 + 1) + probe_parameter_count(384, 2)  # with a linear head
    assert count_parameters(minilm)["trainable"] == expected == bottleneck_parameter_count(6, 384, 24, "houlsby",
                                                                                        "gate") + 770
    smollm = apply_bottleneck(causal_lm[0], r=36, placement="pfeiffer", fusion="add")  # no head
    assert count_parameters(smollm)["trainable"] == 30 * (2 * 576 * 36 + 576 + 36)


def test_one_adamw_step_moves_only_trainable(tiny_model):
    model, family = tiny_model
    model = apply_bottleneck(with_loss_head(model, family), r=4, placement="houlsby", fusion="gate",
                           activation="silu")  # ReLU units can be dead on tiny random models: no gradient
    check_one_adamw_step(model, make_batch())


def test_save_load_round_trip(tiny_model, tmp_path):
    model, family = tiny_model
    model = apply_bottleneck(with_loss_head(model, family), r=4, placement="houlsby", fusion="gate",
                           activation="silu", init="normal", init_scale=0.05)
    path = check_save_load(model, fresh_base(family), tmp_path, make_batch())
    check_wrong_base(path, family)


def test_named_adapters_and_mixed_batch(tiny_model):
    model, _ = tiny_model
    check_two_adapters(model, lambda m, name: apply_bottleneck(m, r=4, placement="houlsby", name=name),
                       lambda m, name: apply_bottleneck(m, r=8, placement="pfeiffer", fusion="gate", name=name))


def test_bad_input_leaves_model_unchanged(tiny_model, monkeypatch):
    model, family = tiny_model
    before = snapshot(model)
    for r in (0, -2, 1.5):
        with pytest.raises(ValueError, match="positive integer"):
            apply_bottleneck(model, r=r)
    with pytest.raises(ValueError, match="bottleneck larger than the hidden size: r=33 > d=32"):
        apply_bottleneck(model, r=33)
    for kwargs, what in [({"placement": "middle"}, "placement"), ({"fusion": "concat"}, "fusion"),
                         ({"activation": "tanh"}, "activation"), ({"init": "xavier"}, "init")]:
        with pytest.raises(ValueError, match=f"unknown {what} '{list(kwargs.values())[0]}'"):
            apply_bottleneck(model, r=4, **kwargs)
    with pytest.raises(ValueError, match="init_scale"):
        apply_bottleneck(model, r=4, init_scale=0.01)  # init="zeros" is exact: a σ there is a mistake
    monkeypatch.setattr(model.config, "model_type", "gpt2")
    with pytest.raises(ValueError, match="model_type 'gpt2'"):
        apply_bottleneck(model, r=4)
    monkeypatch.undo()
    assert_unchanged(model, before)
    check_second_apply_refused(model, lambda m: apply_bottleneck(m, r=4),
                               lambda m: apply_bottleneck(m, r=4, placement="houlsby"), "already exists")
