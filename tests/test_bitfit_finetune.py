import pytest
import torch
from method_checks import (assert_unchanged, check_one_adamw_step, check_save_load, check_second_apply_refused,
                           check_wrong_base, fresh_base, kv_width, make_batch, outputs, snapshot, with_loss_head)

from minipeft.methods.bitfit import apply_bitfit, bitfit_parameter_count
from minipeft.methods.finetune import apply_finetune, finetune_parameter_count
from minipeft.methods.probing import Classifier, probe_parameter_count
from minipeft.params import count_parameters


# ---------------------------------------------------------------- BitFit
def test_bitfit_trains_exactly_the_biases_and_head(tiny_bert):
    batch = make_batch()
    base = outputs(tiny_bert, batch)
    model = apply_bitfit(Classifier(tiny_bert, num_labels=2))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.named_parameters() if n.endswith(".bias") or n.startswith("head.")}
    assert any("LayerNorm.bias" in n for n in trainable) and "head.weight" in trainable
    assert torch.equal(outputs(model.backbone, batch), base)  # BitFit changes nothing until trained
    expected = bitfit_parameter_count(2, 32, 64, pooler=False) + probe_parameter_count(32, 2)
    assert count_parameters(model)["trainable"] == expected


@pytest.mark.slow
def test_bitfit_count_real_minilm(encoder):
    model = apply_bitfit(Classifier(encoder[0], num_labels=2))  # MiniLM has a pooler; + linear head 384·2 + 2
    expected = bitfit_parameter_count(6, 384, 1536, pooler=True) + probe_parameter_count(384, 2)
    assert count_parameters(model)["trainable"] == expected == 26_112 + 770


def test_bitfit_one_adamw_step_and_save_load(tiny_bert, tmp_path):
    check_one_adamw_step(apply_bitfit(Classifier(tiny_bert)), make_batch())
    model = apply_bitfit(fresh_base("bert"))
    path = check_save_load(model, fresh_base("bert"), tmp_path, make_batch())
    check_wrong_base(path, "bert")


def test_bitfit_refuses_llama_and_twice(tiny_bert, tiny_llama):
    before = snapshot(tiny_llama)
    with pytest.raises(ValueError, match=r"no bias terms.*LoRA or \(IA\)³"):
        apply_bitfit(tiny_llama)
    assert_unchanged(tiny_llama, before)
    check_second_apply_refused(tiny_bert, apply_bitfit, apply_bitfit, "already exists")


@pytest.mark.slow
def test_bitfit_refuses_real_smollm2(causal_lm):
    with pytest.raises(ValueError, match="LlamaForCausalLM has no bias terms"):
        apply_bitfit(causal_lm[0])


# ---------------------------------------------------------------- full and partial fine-tuning
def sizes(config, family: str) -> tuple:
    """(parameters of the embedding layer, of one transformer layer), from the config alone."""
    d, d_ff, v = config.hidden_size, config.intermediate_size, config.vocab_size
    if family == "bert":  # 4 attention linears + 2 FFN linears (with biases) + 2 LayerNorms
        embeddings = (v + config.max_position_embeddings + config.type_vocab_size) * d + 2 * d
        return embeddings, 4 * (d * d + d) + (d * d_ff + d_ff) + (d_ff * d + d) + 2 * 2 * d
    return v * d, 2 * d * d + 2 * d * kv_width(config) + 3 * d * d_ff + 2 * d  # q, o; k, v; gate, up, down; 2 RMSNorms


@pytest.mark.parametrize("top_k, freeze_embeddings", [(None, False), (None, True), (1, False), (2, False)])
def test_finetune_count_matches_closed_form_tiny(tiny_model, top_k, freeze_embeddings):
    model, family = tiny_model
    model = apply_finetune(with_loss_head(model, family), top_k=top_k, freeze_embeddings=freeze_embeddings)
    embeddings, per_layer = sizes(model.config, family)
    counts = count_parameters(model)
    assert counts["trainable"] == finetune_parameter_count(counts["total"], embeddings, per_layer, 2, top_k,
                                                           freeze_embeddings)


def test_finetune_top_k_trains_top_layers_and_above(tiny_model):
    model, family = tiny_model
    model = apply_finetune(with_loss_head(model, family), top_k=1)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    layers = "backbone.encoder.layer." if family == "bert" else "model.layers."  # BERT inside a Classifier
    assert trainable and all(f"{layers}1." in n or n.startswith("head.") or n == "model.norm.weight"
                             for n in trainable)
    assert f"{layers}1.{'output.dense.weight' if family == 'bert' else 'mlp.down_proj.weight'}" in trainable
    if family == "llama":  # the final norm trains with the top layer; the tied embedding / lm_head does not
        assert "model.norm.weight" in trainable and not model.lm_head.weight.requires_grad
    else:
        assert "head.weight" in trainable


@pytest.mark.slow
def test_finetune_count_real(encoder, causal_lm):
    minilm = apply_finetune(Classifier(encoder[0], num_labels=2), top_k=2)  # top 2 layers + pooler + head
    assert count_parameters(minilm)["trainable"] == 2 * sizes(minilm.config, "bert")[1] + (384 * 384 + 384) + 770
    smollm = apply_finetune(causal_lm[0], freeze_embeddings=True)  # no head; tied lm_head frozen with embeddings
    embeddings, per_layer = sizes(smollm.config, "llama")
    assert count_parameters(smollm)["trainable"] == 30 * per_layer + 576 == count_parameters(smollm)["total"] - \
        embeddings


@pytest.mark.parametrize("top_k", [None, 1])
def test_finetune_one_adamw_step(tiny_model, top_k):
    model, family = tiny_model
    check_one_adamw_step(apply_finetune(with_loss_head(model, family), top_k=top_k), make_batch())


def test_finetune_save_load(tiny_model, tmp_path):
    model, family = tiny_model
    model = apply_finetune(with_loss_head(model, family), top_k=1)
    path = check_save_load(model, fresh_base(family), tmp_path, make_batch())
    check_wrong_base(path, family)


def test_finetune_bad_input_leaves_model_unchanged(tiny_model):
    model, family = tiny_model
    before = snapshot(model)
    for top_k in (0, 3, -1, 1.5):
        with pytest.raises(ValueError, match=r"top_k must be an integer in \[1, 2\]"):
            apply_finetune(model, top_k=top_k)
    assert_unchanged(model, before)
    check_second_apply_refused(model, lambda m: apply_finetune(m, top_k=1), lambda m: apply_finetune(m, top_k=2),
                               "already exists")
