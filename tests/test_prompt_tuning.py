"""Prompt tuning: a soft prompt made of real tokens' embeddings IS those tokens written in front (hard-prompt
equivalence, tiny and real models, and peft as an oracle); off = base; mixed batches; counts; training; saving."""
import copy

import pytest
import torch
from method_checks import (assert_unchanged, check_mixed_batch, check_one_adamw_step, check_save_load, fresh_base,
                           make_batch, outputs, perturb_trainable, snapshot, with_loss_head)
from prompt_checks import PROMPT, assert_close, greedy, hard_prompted, left_padded_batch, real_batch

from minipeft.core import body, freeze, remove_adapter, set_adapter
from minipeft.methods.probing import Classifier
from minipeft.methods.prompt_tuning import apply_prompt_tuning, prompt_tuning_parameter_count
from minipeft.params import count_parameters


def real_positions(x: torch.Tensor, k: int) -> torch.Tensor:
    return x[:, k:]


@pytest.mark.parametrize("extra", ["mask", "positions", "token_types"])
def test_hard_prompt_equivalence_tiny(tiny_model, extra):
    model, family = tiny_model
    batch = make_batch()  # row 1 right-padded
    if extra == "positions":
        batch["position_ids"] = torch.arange(9).expand(3, 9)
    if extra == "token_types" and family == "bert":
        batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
    hard = outputs(model, hard_prompted(batch, PROMPT))
    apply_prompt_tuning(model, init="text", text=PROMPT)
    soft = outputs(model, batch)
    assert soft.shape == hard.shape  # k + n rows: the virtual positions are outputs too
    assert_close(real_positions(soft, 4), real_positions(hard, 4), 1e-6)


def test_text_init_from_a_string_sets_k(tiny_bert, bert_tokenizer):
    ids = bert_tokenizer(" positive negative", add_special_tokens=False)["input_ids"]
    apply_prompt_tuning(tiny_bert, init="text", text=" positive negative", tokenizer=bert_tokenizer)
    prompt = body(tiny_bert).prompts.adapters["default"].weight
    assert prompt.shape[0] == len(ids) == 2
    assert torch.equal(prompt, tiny_bert.embeddings.word_embeddings.weight[ids])
    assert count_parameters(tiny_bert)["trainable"] == prompt_tuning_parameter_count(2, 32)


@pytest.mark.parametrize("init", ["random", "vocab"])
def test_random_and_vocab_init(tiny_model, init):
    model, _ = tiny_model
    table = body(model).get_input_embeddings().weight
    apply_prompt_tuning(model, k=5, init=init)
    prompt = body(model).prompts.adapters["default"].weight
    assert prompt.shape == (5, 32)
    rows_of_table = [(table == p).all(1).any().item() for p in prompt]
    assert all(rows_of_table) if init == "vocab" else not any(rows_of_table)
    if init == "random":  # on the scale of the token embeddings, not N(0, 1)
        assert 0.3 < prompt.std().item() / table.std().item() < 3


def test_classifier_pools_only_the_real_tokens(tiny_bert):
    batch = make_batch()
    hidden = outputs(tiny_bert, hard_prompted(batch, PROMPT))[:, 4:]
    model = Classifier(apply_prompt_tuning(tiny_bert, init="text", text=PROMPT))
    expected = model.head(model.pool(hidden, batch["attention_mask"]))
    assert_close(model(**batch)["logits"], expected, 1e-6)


def test_disabled_is_exactly_the_base_model(tiny_model):
    model, _ = tiny_model
    batch = make_batch()
    base = outputs(model, batch)
    apply_prompt_tuning(model, k=3)
    assert outputs(model, batch).shape[1] == 9 + 3
    set_adapter(model, None)
    assert torch.equal(outputs(model, batch), base)


def test_several_prompts_switch_and_mix(tiny_model):
    model, _ = tiny_model
    batch = make_batch()
    apply_prompt_tuning(model, init="text", text=PROMPT, name="a")
    apply_prompt_tuning(model, k=4, init="vocab", name="b")
    set_adapter(model, "a")
    with_a = outputs(model, batch)
    set_adapter(model, "b")
    assert not torch.allclose(outputs(model, batch), with_a)
    check_mixed_batch(model, batch, ["a", "b", "a"])
    remove_adapter(model, "b")
    set_adapter(model, "a")
    assert torch.equal(outputs(model, batch), with_a)


def test_mixed_batch_needs_one_length(tiny_bert):
    apply_prompt_tuning(tiny_bert, k=3, name="a")
    apply_prompt_tuning(tiny_bert, k=5, name="b")
    set_adapter(tiny_bert, ["a", "b", "a"])
    with pytest.raises(ValueError, match="same k"):
        outputs(tiny_bert, make_batch())


def test_count_matches_closed_form_tiny(tiny_model):
    model, _ = tiny_model
    apply_prompt_tuning(model, k=7, name="seven")
    assert count_parameters(model)["trainable"] == prompt_tuning_parameter_count(7, 32) == 224
    apply_prompt_tuning(model)  # k=None: 8 virtual tokens; only the active prompt trains
    assert count_parameters(model)["trainable"] == prompt_tuning_parameter_count(8, 32)
    set_adapter(model, ["seven", "default"])  # both active (a mixed batch): both train
    assert count_parameters(model)["trainable"] == prompt_tuning_parameter_count(7 + 8, 32)


@pytest.mark.slow
def test_count_matches_closed_form_real(encoder, causal_lm):
    for model, d in [(encoder[0], 384), (causal_lm[0], 576)]:
        apply_prompt_tuning(model, k=20)
        assert count_parameters(model)["trainable"] == prompt_tuning_parameter_count(20, d) == 20 * d


def test_one_step_trains_only_the_prompt(tiny_model):
    model, family = tiny_model
    check_one_adamw_step(with_loss_head(apply_prompt_tuning(model, k=3), family), make_batch())


def test_causal_lm_labels_are_padded_over_the_prompt(tiny_llama):
    batch = make_batch()
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    hard = hard_prompted(batch, PROMPT)
    expected = tiny_llama(**hard, labels=torch.cat([torch.full((3, 4), -100), labels], 1)).loss
    apply_prompt_tuning(tiny_llama, init="text", text=PROMPT)
    assert_close(tiny_llama(**batch, labels=labels).loss, expected, 1e-6)


def test_generate_with_a_prompt_continues_the_hard_prompted_input(tiny_llama):
    batch = left_padded_batch()
    freeze(tiny_llama)  # generate's first step differs by ~1e-8 between trainable and frozen weights
    base = greedy(tiny_llama, batch["input_ids"], batch["attention_mask"])
    hard = hard_prompted(batch, PROMPT)
    hard_tokens, hard_scores = greedy(tiny_llama, hard["input_ids"], hard["attention_mask"])
    apply_prompt_tuning(tiny_llama, init="text", text=PROMPT)
    tokens, scores = greedy(tiny_llama, batch["input_ids"], batch["attention_mask"])
    assert torch.equal(tokens, hard_tokens)
    assert_close(scores, hard_scores, 1e-5)
    set_adapter(tiny_llama, None)  # off: generation is exactly the base model's
    off = greedy(tiny_llama, batch["input_ids"], batch["attention_mask"])
    assert torch.equal(off[0], base[0]) and torch.equal(off[1], base[1])


@pytest.mark.parametrize("init", ["random", "vocab", "text"])
def test_save_load_round_trip(tiny_model, tmp_path, init, bert_tokenizer, llama_tokenizer):
    model, family = tiny_model
    tokenizer = bert_tokenizer if family == "bert" else llama_tokenizer
    model = with_loss_head(model, family)
    text = {"text": "great movie", "tokenizer": tokenizer} if init == "text" else {"k": 3}
    apply_prompt_tuning(model, init=init, **text)
    check_save_load(model, fresh_base(family), tmp_path, make_batch())  # loading needs no tokenizer


def test_bad_input_leaves_the_model_unchanged(tiny_bert, bert_tokenizer):
    apply_prompt_tuning(tiny_bert, k=2, name="taken")
    before = snapshot(tiny_bert)
    bad = [dict(k=0), dict(k=-3), dict(k=2.5), dict(k=True), dict(k=3, init="zeros"),
           dict(init="text", text="great movie"),  # a string needs a tokenizer
           dict(init="text", text="great movie", tokenizer=bert_tokenizer, k=5),  # 2 tokens, not 5
           dict(init="text", text=[1, 10 ** 9]), dict(k=3, text=[5, 6]), dict(k=3, name="taken")]
    for kwargs in bad:
        with pytest.raises(ValueError):
            apply_prompt_tuning(tiny_bert, **kwargs)
        assert_unchanged(tiny_bert, before)


def test_prompt_plus_input_longer_than_max_positions_raises(tiny_bert):
    apply_prompt_tuning(tiny_bert, k=4)
    limit = tiny_bert.config.max_position_embeddings  # 128
    outputs(tiny_bert, {"input_ids": torch.ones(1, limit - 4, dtype=torch.long)})  # fits exactly
    with pytest.raises(ValueError, match="max_position_embeddings"):
        outputs(tiny_bert, {"input_ids": torch.ones(1, limit - 3, dtype=torch.long)})


# ---------------------------------------------------------------- real models


@pytest.mark.slow
@pytest.mark.parametrize("family", ["bert", "llama"])
def test_hard_prompt_equivalence_real(family, encoder, causal_lm):
    model, tokenizer = encoder if family == "bert" else causal_lm
    batch = real_batch(tokenizer, family)
    token_ids = tokenizer("Review sentiment:", add_special_tokens=False)["input_ids"]
    hard = outputs(model, hard_prompted(batch, token_ids))
    apply_prompt_tuning(model, init="text", text="Review sentiment:", tokenizer=tokenizer)
    k = len(token_ids)
    assert_close(real_positions(outputs(model, batch), k), real_positions(hard, k), 1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["bert", "llama"])
def test_matches_peft_prompt_tuning(family, encoder, causal_lm):
    peft = pytest.importorskip("peft")
    model, tokenizer = encoder if family == "bert" else causal_lm
    batch = {k: v for k, v in real_batch(tokenizer, family).items() if k != "token_type_ids"}  # peft does not pad them
    task = "FEATURE_EXTRACTION" if family == "bert" else "CAUSAL_LM"
    reference = peft.get_peft_model(copy.deepcopy(model), peft.PromptTuningConfig(task_type=task, num_virtual_tokens=6))
    apply_prompt_tuning(model, k=6, init="vocab")
    perturb_trainable(model)
    with torch.no_grad():
        reference.prompt_encoder["default"].embedding.weight.copy_(body(model).prompts.adapters["default"].weight)
    assert_close(real_positions(outputs(model, batch), 6), real_positions(outputs(reference, batch), 6), 1e-5)
