"""Prefix tuning: a prefix holding the keys and values that real tokens produce IS those tokens written in front
(Llama from its cache; BERT from the hard-prompted run, because its prefix states depend on the input), also in
generate(); peft as an oracle; off = base; mixed batches; counts plain, reparameterised and folded; saving."""
import copy

import pytest
import torch
from method_checks import (FAMILIES, assert_unchanged, check_mixed_batch, check_one_adamw_step, check_save_load,
                           fresh_base, make_batch, outputs, perturb_trainable, row, snapshot, with_loss_head)
from prompt_checks import PROMPT, assert_close, greedy, hard_prompted, left_padded_batch, real_batch

from minipeft.core import body, freeze, remove_adapter, set_adapter
from minipeft.methods.prefix_tuning import apply_prefix_tuning, fold_prefix, kv_sizes, prefix_tuning_parameter_count
from minipeft.params import count_parameters


def prefix(model, name="default"):
    return body(model).prefixes.adapters[name]


def as_table(keys_values) -> torch.Tensor:
    """[(keys, values) per layer], each (kv_heads, k, head_dim) -> the (k, L·2·d_kv) table of a Prefix."""
    kv = torch.stack([torch.stack([keys, values]) for keys, values in keys_values])  # (L, 2, heads, k, head_dim)
    return kv.permute(3, 0, 1, 2, 4).reshape(kv.shape[3], -1)


@torch.no_grad()
def llama_prefix_of(model, token_ids) -> torch.Tensor:
    """The keys and values the tokens leave in the cache (a causal model: they do not depend on what follows)."""
    cache = model(input_ids=torch.tensor([token_ids]), use_cache=True).past_key_values
    return as_table([(layer.keys[0], layer.values[0]) for layer in cache.layers])


@torch.no_grad()
def bert_prefix_of(model, hard_row: dict, k: int) -> torch.Tensor:
    """Keys and values at the first k positions of a hard-prompted run (read off the key and value linears)."""
    seen, hooks = {}, []
    for index, layer in enumerate(model.encoder.layer):
        for part in ("key", "value"):
            module = getattr(layer.attention.self, part)
            hooks.append(module.register_forward_hook(lambda m, i, out, key=(index, part): seen.__setitem__(key, out)))
    model(**hard_row)
    for hook in hooks:
        hook.remove()
    _, heads, head_dim = kv_sizes(model.config)
    per_head = {key: out[0, :k].view(k, heads, head_dim).transpose(0, 1) for key, out in seen.items()}
    return as_table([(per_head[i, "key"], per_head[i, "value"]) for i in range(len(model.encoder.layer))])


def set_table(model, table, name="default"):
    with torch.no_grad():
        prefix(model, name).table.copy_(table)


@pytest.mark.parametrize("positions", [False, True])
def test_llama_prefix_of_real_tokens_equals_writing_them_in_front(tiny_llama, positions):
    batch = make_batch()  # row 1 right-padded
    if positions:
        batch["position_ids"] = torch.arange(9).expand(3, 9)
    hard = outputs(tiny_llama, hard_prompted(batch, PROMPT))
    table = llama_prefix_of(tiny_llama, PROMPT)
    apply_prefix_tuning(tiny_llama, k=4)
    set_table(tiny_llama, table)
    soft = outputs(tiny_llama, batch)
    assert soft.shape == (3, 9, tiny_llama.config.vocab_size)  # the sequence stays n long
    assert_close(soft, hard[:, 4:], 1e-6)


def test_bert_prefix_from_the_hard_run_gives_its_outputs_per_row(tiny_bert):
    """BERT is bidirectional, so each row's prefix is read off its own hard-prompted run: one adapter per row,
    run as one mixed batch."""
    batch = make_batch()
    hard_batch = hard_prompted(batch, PROMPT)
    hard = outputs(tiny_bert, hard_batch)
    tables = [bert_prefix_of(tiny_bert, row(hard_batch, i), 4) for i in range(3)]
    for i, table in enumerate(tables):
        apply_prefix_tuning(tiny_bert, k=4, name=f"row{i}")
        set_table(tiny_bert, table, f"row{i}")
    set_adapter(tiny_bert, ["row0", "row1", "row2"])
    assert_close(outputs(tiny_bert, batch), hard[:, 4:], 1e-6)


def test_generate_with_a_prefix_continues_the_hard_prompted_input(tiny_llama):
    batch = left_padded_batch()  # row 1 left-padded: mask and positions must stay right at every step
    freeze(tiny_llama)
    base = greedy(tiny_llama, batch["input_ids"], batch["attention_mask"])
    hard = hard_prompted(batch, PROMPT)
    hard_tokens, hard_scores = greedy(tiny_llama, hard["input_ids"], hard["attention_mask"])
    table = llama_prefix_of(tiny_llama, PROMPT)
    apply_prefix_tuning(tiny_llama, k=4)
    set_table(tiny_llama, table)
    tokens, scores = greedy(tiny_llama, batch["input_ids"], batch["attention_mask"])
    assert torch.equal(tokens, hard_tokens)
    assert_close(scores, hard_scores, 1e-5)
    set_adapter(tiny_llama, None)
    off = greedy(tiny_llama, batch["input_ids"], batch["attention_mask"])
    assert torch.equal(off[0], base[0]) and torch.equal(off[1], base[1])


def test_disabled_is_exactly_the_base_model(tiny_model):
    model, _ = tiny_model
    batch = make_batch()
    base = outputs(model, batch)
    apply_prefix_tuning(model, k=3)
    assert not torch.allclose(outputs(model, batch), base)
    set_adapter(model, None)
    assert torch.equal(outputs(model, batch), base)


def test_several_prefixes_switch_and_mix(tiny_model):
    model, _ = tiny_model
    batch = make_batch()
    apply_prefix_tuning(model, k=3, name="a")
    apply_prefix_tuning(model, k=3, reparam_hidden=8, name="b")
    set_adapter(model, "a")
    with_a = outputs(model, batch)
    check_mixed_batch(model, batch, ["b", "a", "b"])
    remove_adapter(model, "b")
    set_adapter(model, "a")
    assert torch.equal(outputs(model, batch), with_a)


def test_mixed_batch_needs_one_length(tiny_llama):
    apply_prefix_tuning(tiny_llama, k=3, name="a")
    apply_prefix_tuning(tiny_llama, k=5, name="b")
    set_adapter(tiny_llama, ["a", "b", "a"])
    with pytest.raises(ValueError, match="same k"):
        outputs(tiny_llama, make_batch())


def closed_form(model, k, reparam_hidden=None):
    layers, kv_heads, head_dim = kv_sizes(model.config)
    return prefix_tuning_parameter_count(k, layers, kv_heads * head_dim, model.config.hidden_size, reparam_hidden)


@pytest.mark.parametrize("reparam_hidden", [None, 16])
def test_count_matches_closed_form_tiny(tiny_model, reparam_hidden):
    model, family = tiny_model
    apply_prefix_tuning(model, k=5, reparam_hidden=reparam_hidden)
    d_kv = {"bert": 32, "llama": 16}[family]  # tiny_llama: 2 KV heads × 8
    assert count_parameters(model)["trainable"] == closed_form(model, 5, reparam_hidden)
    assert closed_form(model, 5) == 2 * 2 * 5 * d_kv
    assert prefix(model)().shape == (2, 2, d_kv // 8, 5, 8)  # keys/values, layers, KV heads, k, head_dim


@pytest.mark.slow
def test_count_matches_closed_form_real(encoder, causal_lm):
    for model, d_kv, layers in [(encoder[0], 384, 6), (causal_lm[0], 3 * 64, 30)]:
        apply_prefix_tuning(model, k=10, reparam_hidden=64, name="mlp")
        assert count_parameters(model)["trainable"] == closed_form(model, 10, 64)
        fold_prefix(model, "mlp")
        assert count_parameters(model)["trainable"] == closed_form(model, 10) == 2 * layers * 10 * d_kv


def test_fold_keeps_outputs_and_becomes_a_table(tiny_model, tmp_path):
    model, family = tiny_model
    batch = make_batch()
    apply_prefix_tuning(model, k=4, reparam_hidden=16)
    perturb_trainable(model)
    before = outputs(model, batch)
    fold_prefix(model)
    assert prefix(model).mlp is None and prefix(model).embedding is None
    assert count_parameters(model)["trainable"] == closed_form(model, 4)
    assert_close(outputs(model, batch), before, 1e-6)
    check_save_load(model, FAMILIES[family](), tmp_path, batch)  # saved and reloaded as a plain table


@pytest.mark.parametrize("reparam_hidden", [None, 8])
def test_one_step_trains_only_the_prefix(tiny_model, reparam_hidden):
    model, family = tiny_model
    model = with_loss_head(apply_prefix_tuning(model, k=3, reparam_hidden=reparam_hidden), family)
    check_one_adamw_step(model, make_batch())


@pytest.mark.parametrize("reparam_hidden", [None, 8])
def test_save_load_round_trip(tiny_model, tmp_path, reparam_hidden):
    model, family = tiny_model
    model = with_loss_head(apply_prefix_tuning(model, k=3, reparam_hidden=reparam_hidden), family)
    check_save_load(model, fresh_base(family), tmp_path, make_batch())


def test_bad_input_leaves_the_model_unchanged(tiny_llama):
    apply_prefix_tuning(tiny_llama, k=2, name="taken")
    before = snapshot(tiny_llama)
    for kwargs in [dict(k=0), dict(k=-1), dict(k=2.5), dict(k=3, reparam_hidden=0), dict(k=3, reparam_hidden="64"),
                   dict(k=3, name="taken")]:
        with pytest.raises(ValueError):
            apply_prefix_tuning(tiny_llama, **kwargs)
        assert_unchanged(tiny_llama, before)
    with pytest.raises(KeyError):
        fold_prefix(tiny_llama, "missing")


def test_prefix_plus_input_longer_than_max_positions_raises(tiny_bert):
    apply_prefix_tuning(tiny_bert, k=10)  # BERT starts the input's absolute positions at k
    limit = tiny_bert.config.max_position_embeddings
    outputs(tiny_bert, {"input_ids": torch.ones(1, limit - 10, dtype=torch.long)})
    with pytest.raises(ValueError, match="max_position_embeddings"):
        outputs(tiny_bert, {"input_ids": torch.ones(1, limit - 9, dtype=torch.long)})


# ---------------------------------------------------------------- real models
@pytest.mark.slow
def test_real_prefixes_equal_writing_the_tokens_in_front(encoder, causal_lm):
    minilm, bert_tokenizer = encoder
    batch = real_batch(bert_tokenizer, "bert")
    token_ids = bert_tokenizer("Review sentiment:", add_special_tokens=False)["input_ids"]
    hard_batch = hard_prompted(batch, token_ids)
    hard = outputs(minilm, hard_batch)
    k = len(token_ids)
    tables = [bert_prefix_of(minilm, row(hard_batch, i), k) for i in range(2)]  # before any prefix is on
    for i, table in enumerate(tables):
        apply_prefix_tuning(minilm, k=k, name=f"row{i}")
        set_table(minilm, table, f"row{i}")
    set_adapter(minilm, ["row0", "row1"])
    assert_close(outputs(minilm, batch), hard[:, k:], 1e-5)

    smollm, llama_tokenizer = causal_lm
    batch = real_batch(llama_tokenizer, "llama")
    token_ids = llama_tokenizer("Review sentiment:", add_special_tokens=False)["input_ids"]
    hard = outputs(smollm, hard_prompted(batch, token_ids))
    table = llama_prefix_of(smollm, token_ids)
    apply_prefix_tuning(smollm, k=len(token_ids))
    set_table(smollm, table)
    # Relative to the logits' scale (~30): the prefix's keys come from a k-token run, the hard run's from a
    # (k + n)-token one, so their matmuls round differently (~1e-7) and 30 layers amplify that to ~2e-6 relative.
    assert_close(outputs(smollm, batch), hard[:, len(token_ids):], 1e-5 * hard.abs().max().item())


@pytest.mark.slow
def test_real_generate_with_a_prefix(causal_lm):
    model, tokenizer = causal_lm
    freeze(model)
    ids = tokenizer("The capital of France is", return_tensors="pt")["input_ids"]
    token_ids = tokenizer("Answer in one word.", add_special_tokens=False)["input_ids"]
    hard_ids = torch.cat([torch.tensor([token_ids]), ids], 1)
    hard_tokens, hard_scores = greedy(model, hard_ids, torch.ones_like(hard_ids), steps=4)
    table = llama_prefix_of(model, token_ids)
    apply_prefix_tuning(model, k=len(token_ids))
    set_table(model, table)
    tokens, scores = greedy(model, ids, torch.ones_like(ids), steps=4)
    assert torch.equal(tokens, hard_tokens)
    assert_close(scores, hard_scores, 1e-5 * hard_scores.abs().max().item())  # relative, as above


@pytest.mark.slow
@pytest.mark.parametrize("family,reparam_hidden", [("bert", None), ("bert", 32), ("llama", None), ("llama", 32)])
def test_matches_peft_prefix_tuning(family, reparam_hidden, encoder, causal_lm):
    peft = pytest.importorskip("peft")
    if family == "llama" and reparam_hidden:
        pytest.skip("peft 0.21.2 reparameterises a grouped-KV prefix from k × d_kv inputs (token_dim is set to "
                    "d_kv), ours from k × d, so the weights cannot be aligned")
    model, tokenizer = encoder if family == "bert" else causal_lm
    batch = {k: v for k, v in real_batch(tokenizer, family).items() if k != "token_type_ids"}
    task = "FEATURE_EXTRACTION" if family == "bert" else "CAUSAL_LM"
    config = peft.PrefixTuningConfig(task_type=task, num_virtual_tokens=5, prefix_projection=bool(reparam_hidden),
                                     encoder_hidden_size=reparam_hidden or 1)
    reference = peft.get_peft_model(copy.deepcopy(model), config)
    apply_prefix_tuning(model, k=5, reparam_hidden=reparam_hidden)
    perturb_trainable(model)
    ours, theirs = prefix(model), reference.prompt_encoder["default"]
    with torch.no_grad():  # peft's flat layout per virtual token is ours: [K¹ V¹ … Kᴸ Vᴸ]
        if reparam_hidden is None:
            theirs.embedding.weight.copy_(ours.table)
        else:
            theirs.embedding.weight.copy_(ours.embedding)
            theirs.transform.load_state_dict(ours.mlp.state_dict())
            their_rows = theirs(reference.prompt_tokens["default"][None])[0]
            assert_close(ours.rows(), their_rows, 1e-5)
    # The reparameterised prefix differs from peft's only by matmul rounding (~1e-6: peft's MLP runs batched, and
    # its own batch rows differ by as much), which the attention of 6 layers amplifies to ~1e-4.
    assert_close(outputs(model, batch), outputs(reference, batch), 1e-5 if reparam_hidden is None else 3e-4)
