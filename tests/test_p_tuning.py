"""P-tuning is prompt tuning whose prompt an encoder makes; deep prompts overwrite the virtual positions at every
layer (vectors equal to what was there change nothing; others do); off = base; mixed; generate; counts; saving."""
import copy

import pytest
import torch
from method_checks import (assert_unchanged, check_mixed_batch, check_one_adamw_step, check_save_load, fresh_base,
                           make_batch, outputs, perturb_trainable, row, snapshot, with_loss_head)
from prompt_checks import assert_close, greedy, left_padded_batch

from minipeft.core import body, freeze, set_adapter
from minipeft.methods.p_tuning import (apply_deep_prompts, apply_p_tuning, deep_prompt_parameter_count,
                                       p_tuning_parameter_count)
from minipeft.methods.prompt_tuning import apply_prompt_tuning
from minipeft.params import count_parameters


def layers_of(model):
    core = body(model)
    return core.encoder.layer if hasattr(core, "encoder") else core.layers


@pytest.mark.parametrize("encoder", ["mlp", "lstm"])
def test_p_tuning_is_prompt_tuning_with_the_encoders_output(tiny_model, encoder):
    model, _ = tiny_model
    twin = copy.deepcopy(model)
    batch = make_batch()
    apply_p_tuning(model, k=4, encoder=encoder, hidden=16)
    perturb_trainable(model)
    apply_prompt_tuning(twin, k=4)
    with torch.no_grad():
        prompt = body(model).prompts.adapters["default"]()
        assert prompt.shape == (4, 32)
        body(twin).prompts.adapters["default"].weight.copy_(prompt)
    assert torch.equal(outputs(model, batch), outputs(twin, batch))


@pytest.mark.parametrize("encoder", ["mlp", "lstm"])
def test_p_tuning_count_matches_closed_form_tiny(tiny_model, encoder):
    model, _ = tiny_model
    apply_p_tuning(model, k=5, encoder=encoder, hidden=16)
    assert count_parameters(model)["trainable"] == p_tuning_parameter_count(5, 32, 16, encoder)


def test_deep_prompt_count_matches_closed_form_tiny(tiny_model):
    model, _ = tiny_model
    apply_deep_prompts(model, k=5)
    assert count_parameters(model)["trainable"] == deep_prompt_parameter_count(5, 32, 2) == 2 * 5 * 32


@pytest.mark.slow
def test_counts_match_closed_forms_real(encoder, causal_lm):
    for model, d, layers in [(encoder[0], 384, 6), (causal_lm[0], 576, 30)]:
        apply_p_tuning(model, k=10, encoder="mlp", hidden=128, name="mlp")
        expected = {"mlp": p_tuning_parameter_count(10, d, 128, "mlp")}
        assert count_parameters(model)["trainable"] == expected["mlp"]
        apply_p_tuning(model, k=10, encoder="lstm", hidden=64, name="lstm")  # only the active adapter trains
        expected["lstm"] = p_tuning_parameter_count(10, d, 64, "lstm")
        assert count_parameters(model)["trainable"] == expected["lstm"]
        apply_deep_prompts(model, k=10, name="deep")
        expected["deep"] = deep_prompt_parameter_count(10, d, layers)
        assert count_parameters(model)["trainable"] == expected["deep"]
        set_adapter(model, ["mlp", "lstm", "deep"])  # all three active (a mixed batch): all three train
        assert count_parameters(model)["trainable"] == sum(expected.values())


def test_deep_prompts_overwrite_exactly_the_virtual_positions_of_each_layer(tiny_model):
    """Deep vectors equal to the hidden states that a plain prompt leaves at the k virtual positions give exactly
    the plain prompt's outputs (right positions, right layers); other vectors give other outputs."""
    model, _ = tiny_model
    batch = row(make_batch(), 0)  # one row: in BERT the virtual positions' states depend on the input
    plain = copy.deepcopy(model)
    apply_deep_prompts(model, k=4)
    apply_prompt_tuning(plain, k=4)
    with torch.no_grad():
        body(plain).prompts.adapters["default"].weight.copy_(body(model).prompts.adapters["default"].weight)
    seen = {}
    hooks = [layer.register_forward_pre_hook(lambda m, args, i=i: seen.__setitem__(i, args[0][0, :4].clone()))
             for i, layer in enumerate(layers_of(plain))]
    expected = outputs(plain, batch)
    for hook in hooks:
        hook.remove()
    deep = [layer.deep_prompts.adapters["default"].weight for layer in layers_of(model)[1:]]
    assert not any(torch.equal(w, seen[i + 1]) for i, w in enumerate(deep))
    assert not torch.allclose(outputs(model, batch), expected)
    with torch.no_grad():
        for i, w in enumerate(deep):
            w.copy_(seen[i + 1])
    assert torch.equal(outputs(model, batch), expected)


def test_disabled_is_exactly_the_base_model(tiny_model):
    model, _ = tiny_model
    batch = make_batch()
    base = outputs(model, batch)
    apply_p_tuning(model, k=3, encoder="lstm", hidden=8, name="p")
    apply_deep_prompts(model, k=3, name="deep")
    set_adapter(model, None)
    assert torch.equal(outputs(model, batch), base)


def test_mixed_batch_of_deep_p_tuning_and_plain_prompts(tiny_model):
    model, _ = tiny_model
    apply_deep_prompts(model, k=4, name="deep")
    apply_p_tuning(model, k=4, encoder="mlp", hidden=16, name="p")
    apply_prompt_tuning(model, k=4, name="plain")
    perturb_trainable(model)
    check_mixed_batch(model, make_batch(), ["deep", "p", "plain"])


@pytest.mark.parametrize("method", ["deep", "p_tuning"])
def test_generate_with_the_cache_equals_without(tiny_llama, method):
    """Decoding steps skip the virtual positions (they are in the cache): the same scores as re-running all."""
    batch = left_padded_batch()
    freeze(tiny_llama)
    base = greedy(tiny_llama, batch["input_ids"], batch["attention_mask"])
    if method == "deep":
        apply_deep_prompts(tiny_llama, k=3)
    else:
        apply_p_tuning(tiny_llama, k=3, encoder="lstm", hidden=16)
    perturb_trainable(tiny_llama, scale=1.0)
    cached = greedy(tiny_llama, batch["input_ids"], batch["attention_mask"])
    uncached = tiny_llama.generate(**batch, max_new_tokens=6, do_sample=False, use_cache=False,
                                   output_scores=True, return_dict_in_generate=True)
    assert torch.equal(cached[0], uncached.sequences[:, 6:])
    assert_close(cached[1], torch.stack(uncached.scores), 1e-5)
    assert not torch.allclose(cached[1], base[1])
    set_adapter(tiny_llama, None)
    off = greedy(tiny_llama, batch["input_ids"], batch["attention_mask"])
    assert torch.equal(off[0], base[0]) and torch.equal(off[1], base[1])


METHODS = {"mlp": lambda m: apply_p_tuning(m, k=3, encoder="mlp", hidden=8),
           "lstm": lambda m: apply_p_tuning(m, k=3, encoder="lstm", hidden=8),
           "deep": lambda m: apply_deep_prompts(m, k=3)}


@pytest.mark.parametrize("method", list(METHODS))
def test_one_step_trains_only_the_prompt_parameters(tiny_model, method):
    model, family = tiny_model
    check_one_adamw_step(with_loss_head(METHODS[method](model), family), make_batch())


@pytest.mark.parametrize("method", list(METHODS))
def test_save_load_round_trip(tiny_model, tmp_path, method):
    model, family = tiny_model
    model = with_loss_head(METHODS[method](model), family)
    check_save_load(model, fresh_base(family), tmp_path, make_batch())


def test_bad_input_leaves_the_model_unchanged(tiny_llama):
    apply_p_tuning(tiny_llama, k=2, name="taken")
    before = snapshot(tiny_llama)
    for kwargs in [dict(k=0), dict(k=-2), dict(encoder="gru"), dict(hidden=0), dict(hidden=2.0), dict(name="taken")]:
        with pytest.raises(ValueError):
            apply_p_tuning(tiny_llama, **kwargs)
        assert_unchanged(tiny_llama, before)
    for kwargs in [dict(k=0), dict(k="4"), dict(name="taken")]:
        with pytest.raises(ValueError):
            apply_deep_prompts(tiny_llama, **kwargs)
        assert_unchanged(tiny_llama, before)
