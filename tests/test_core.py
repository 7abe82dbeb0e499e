"""Shared machinery: targeting by name, freezing, parameter reports, switching adapters."""
import pytest
import torch

from minipeft import core, params
from minipeft.methods.lora import apply_lora
from minipeft.methods.probing import Classifier, apply_probe, probe_parameter_count


def test_find_modules_by_last_component_suffix_and_regex(tiny_bert):
    by_name = [n for n, _ in core.find_modules(tiny_bert, ["query"])]
    assert by_name == ["encoder.layer.0.attention.self.query", "encoder.layer.1.attention.self.query"]
    assert [n for n, _ in core.find_modules(tiny_bert, ["1.attention.self.query"])] == by_name[1:]
    ffn_out = [n for n, _ in core.find_modules(tiny_bert, [r"re:encoder\.layer\.\d+\.output\.dense"])]
    assert ffn_out == ["encoder.layer.0.output.dense", "encoder.layer.1.output.dense"]


def test_unmatched_targets_raise_with_candidates(tiny_llama):
    with pytest.raises(ValueError, match=r"\['query'\].*Candidates.*'q_proj'"):
        core.find_modules(tiny_llama, ["q_proj", "query"])  # a partial match is an error, not a silent subset
    with pytest.raises(ValueError, match="empty"):
        core.find_modules(tiny_llama, [])


def test_wrapped_modules_are_still_found_by_their_name(tiny_bert):
    apply_lora(tiny_bert, ["query"], r=2, name="a")
    found = core.find_modules(tiny_bert, ["query"])
    assert len(found) == 2 and all(isinstance(m, core.AdapterLayer) for _, m in found)


def test_mark_trainable_and_count(tiny_bert):
    n = core.mark_trainable(tiny_bert, lambda name, p: name.endswith("bias"))
    biases = sum(p.numel() for name, p in tiny_bert.named_parameters() if name.endswith("bias"))
    assert n == biases == params.count_parameters(tiny_bert)["trainable"]


def test_tied_embeddings_are_counted_once(tiny_llama):
    assert tiny_llama.lm_head.weight is tiny_llama.model.embed_tokens.weight
    unique = {id(p): p.numel() for p in tiny_llama.state_dict(keep_vars=True).values()}
    assert params.count_parameters(tiny_llama)["total"] == sum(unique.values())


def test_parameter_report_folds_layers_and_adds_up(tiny_bert):
    apply_lora(tiny_bert, ["value"], r=3)
    rows = params.parameter_report(tiny_bert)
    assert sum(r["total"] for r in rows) == params.count_parameters(tiny_bert)["total"]
    trained = {r["module"]: r["trainable"] for r in rows if r["trainable"]}
    assert trained == {"encoder.layer.*.attention.self.value.adapters.default.A": 2 * 3 * 32,
                       "encoder.layer.*.attention.self.value.adapters.default.B": 2 * 32 * 3}


@pytest.mark.parametrize("pooling", ["cls", "mean", "last"])
@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_probe_trains_only_the_head(tiny_model, pooling, head):
    backbone, _ = tiny_model
    model = apply_probe(Classifier(backbone, num_labels=3, pooling=pooling, head=head))
    assert params.count_parameters(model)["trainable"] == probe_parameter_count(32, 3, head)
    ids = torch.randint(5, 1000, (2, 6))
    out = model(ids, torch.ones_like(ids), labels=torch.tensor([0, 2]))
    assert out["logits"].shape == (2, 3) and out["loss"].ndim == 0


def test_mean_pooling_ignores_padding(tiny_bert):
    model = Classifier(tiny_bert, pooling="mean")
    ids = torch.tensor([[101, 2000, 2001, 102]])
    padded = torch.tensor([[101, 2000, 2001, 102, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 0, 0]])
    with torch.no_grad():
        a = model(ids)["logits"]
        b = model(padded, mask)["logits"]
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_probe_on_a_chosen_layer_reads_that_layer(tiny_bert):
    model = Classifier(tiny_bert, pooling="cls", layer=1)
    ids = torch.tensor([[101, 2000, 102]])
    with torch.no_grad():
        hidden = tiny_bert(ids, output_hidden_states=True).hidden_states[1][:, 0]
        torch.testing.assert_close(model(ids)["logits"], model.head(hidden))


def test_classifier_rejects_bad_options(tiny_bert):
    with pytest.raises(ValueError, match="pooling"):
        Classifier(tiny_bert, pooling="max")
    with pytest.raises(ValueError, match="layer"):
        Classifier(tiny_bert, layer=7)


def test_switching_needs_a_known_adapter(tiny_bert):
    apply_lora(tiny_bert, ["query"], r=2, name="a")
    with pytest.raises(KeyError, match=r"\['a'\]"):
        core.set_adapter(tiny_bert, "b")
    with pytest.raises(KeyError):
        core.remove_adapter(tiny_bert, "b")


def trainable_adapters(model) -> set:
    """The adapter names whose parameters require grad."""
    return {n.split(".adapters.")[1].split(".")[0] for n, p in model.named_parameters()
            if p.requires_grad and ".adapters." in n}


def test_only_the_active_adapters_train(tiny_bert):
    """The bug: every adapter on a model trained, so an inactive one held trainable parameters that got no gradient
    (PyTorch DDP raises on those). Now applying, switching and mixed batches all decide what trains."""
    model = Classifier(tiny_bert)
    apply_lora(model, ["query"], r=2, name="a")
    apply_lora(model, ["value"], r=2, name="b")
    assert trainable_adapters(model) == {"b"}
    assert all(p.requires_grad for n, p in model.named_parameters() if n.startswith("head."))
    core.set_adapter(model, "a")
    assert trainable_adapters(model) == {"a"}
    core.set_adapter(model, ["a", "b", "a"])
    assert trainable_adapters(model) == {"a", "b"}
    core.set_adapter(model, None)
    assert trainable_adapters(model) == set()
    core.set_adapter(model, "b")
    ids = torch.randint(5, 1000, (2, 6))
    model(ids, labels=torch.tensor([0, 1]))["loss"].backward()
    got_gradient = {n.split(".adapters.")[1].split(".")[0] for n, p in model.named_parameters()
                    if ".adapters." in n and p.grad is not None}
    assert got_gradient == trainable_adapters(model) == {"b"}  # every trainable adapter tensor gets a gradient
