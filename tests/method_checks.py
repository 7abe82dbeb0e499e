"""Checks shared by the weight-side method tests (LoRA, (IA)³, adapters, BitFit, fine-tuning).

Each check takes the method as a function `apply(model, name=...)`, so test_<method>.py files stay short and every
method is held to the same standard: exact identity at init, only trainable tensors move, save/load round trip,
mixed batches, bad input leaves the model untouched.
"""
import struct

import pytest
import torch
from safetensors import safe_open

from minipeft.core import disable_adapters, set_adapter
from minipeft.lab import models
from minipeft.methods.probing import Classifier
from minipeft.params import count_parameters
from minipeft.saving import configs, load_adapter, save_adapter

FAMILIES = {"bert": models.tiny_bert, "llama": models.tiny_llama}
OTHER_SHAPE = {"bert": {"type_vocab_size": 3}, "llama": {"attention_bias": True}}  # same family, other tensors


def kv_width(config) -> int:
    """Width of the key and value projections: n_kv_heads · head_dim (grouped KV heads), d for BERT."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return getattr(config, "num_key_value_heads", config.num_attention_heads) * head_dim


LORA_TARGETS = {"bert": ["query", "value"], "llama": ["q_proj", "v_proj"]}  # the query and value projections


def query_value_shapes(config) -> list:
    """(d_in, d_out) of the query and value projections of every layer, from the config alone."""
    d = config.hidden_size
    return [(d, d), (d, kv_width(config))] * config.num_hidden_layers


def make_batch(rows: int = 3, length: int = 9, seed: int = 0) -> dict:
    """Random token ids (both vocabularies are > 1000) with a right-padded second row."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 1000, (rows, length), generator=g)
    mask = torch.ones_like(ids)
    mask[1, -3:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def row(batch: dict, i: int) -> dict:
    return {k: v[i:i + 1] for k, v in batch.items()}


@torch.no_grad()
def outputs(model, batch: dict) -> torch.Tensor:
    """Logits (LlamaForCausalLM, Classifier) or the last hidden state (BertModel)."""
    out = model(**batch)
    return out["logits"] if "logits" in out else out["last_hidden_state"]


def lm_or_classifier_loss(model, batch):
    """A real loss: next-token cross-entropy for a causal LM, cross-entropy of a Classifier otherwise."""
    if isinstance(model, Classifier):
        return model(**batch, labels=torch.arange(batch["input_ids"].shape[0]) % 2)["loss"]
    return model(**batch, labels=batch["input_ids"]).loss


@torch.no_grad()
def perturb_trainable(model, scale: float = 0.1, seed: int = 1) -> None:
    """Move every trainable tensor, and every adapter's tensors (an inactive adapter is frozen), away from its
    initial value (B = 0, ones, W_up = 0 make weak tests)."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if p.requires_grad or ".adapters." in name:
            p.add_(scale * torch.randn(p.shape, generator=g))


def snapshot(model) -> dict:
    return {"state": {k: v.clone() for k, v in model.state_dict().items()}, "configs": configs(model),
            "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()}}


def assert_unchanged(model, before: dict) -> None:
    """Same tensor names (no layer wrapped), same values, same requires_grad, no config recorded."""
    after = snapshot(model)
    assert list(after["state"]) == list(before["state"]), "the module structure changed"
    changed = [k for k in before["state"] if not torch.equal(before["state"][k], after["state"][k])]
    assert not changed, f"tensors changed: {changed[:5]}"
    assert after["requires_grad"] == before["requires_grad"]
    assert after["configs"] == before["configs"]


def check_second_apply_refused(model, apply_first, apply_again, match: str) -> None:
    """Applying a method a second time under the same name raises and leaves the model as the first left it."""
    apply_first(model)
    after_first = snapshot(model)
    with pytest.raises(ValueError, match=match):
        apply_again(model)
    assert_unchanged(model, after_first)


def check_one_adamw_step(model, batch) -> None:
    """One AdamW step on a real loss: every trainable tensor moves, every frozen one stays bit-identical."""
    perturb_trainable(model)  # so that no gradient is zero by construction (e.g. LoRA's A while B = 0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)  # all of them: frozen must be skipped
    lm_or_classifier_loss(model, batch).backward()
    optimizer.step()
    for n, p in model.named_parameters():
        if n in trainable:
            assert not torch.equal(p, before[n]), f"trainable {n} did not change"
        else:
            assert torch.equal(p, before[n]), f"frozen {n} changed"


def check_save_load(model, fresh, tmp_path, batch, name: str = "default") -> None:
    """save_adapter -> load_adapter into `fresh` (an untouched copy of the base) gives the same outputs; the file
    holds exactly the trainable tensors: its size is 8 + header + 4 bytes per trainable parameter."""
    perturb_trainable(model)
    expected = outputs(model, batch)
    path = save_adapter(model, tmp_path / "adapter", name)
    file = path / "adapter.safetensors"
    with safe_open(file, "pt") as f:
        keys = set(f.keys())
    assert keys == {n for n, p in model.named_parameters() if p.requires_grad}
    header = struct.unpack("<Q", file.read_bytes()[:8])[0]
    assert header < 200 * len(keys)
    assert file.stat().st_size == 8 + header + 4 * count_parameters(model)["trainable"]
    load_adapter(fresh, path)
    assert torch.equal(outputs(fresh, batch), expected)
    return path


def check_two_adapters(model, add_a, add_b) -> None:
    """Adapters "a" and "b" (added by add_a(model, name=...), add_b) on one model: mixed batches match each row
    run alone, each adapter changes the outputs, and disable_adapters gives exactly the base model."""
    batch = make_batch()
    base = outputs(model, batch)
    add_a(model, name="a")
    add_b(model, name="b")
    perturb_trainable(model)
    check_mixed_batch(model, batch, ["a", "b", "a"])
    check_mixed_batch(model, batch, ["b", "a", "b"])
    for name in ("a", "b"):
        set_adapter(model, name)
        assert not torch.equal(outputs(model, batch), base)
    disable_adapters(model)
    assert torch.equal(outputs(model, batch), base)


def check_mixed_batch(model, batch, names) -> None:
    """set_adapter(model, [name per row]) equals running each row alone with its adapter, and not the other one."""
    set_adapter(model, names)
    mixed = outputs(model, batch)
    for i, name in enumerate(names):
        for other in sorted(set(names)):
            set_adapter(model, other)
            alone = outputs(model, row(batch, i))
            gap = (mixed[i:i + 1] - alone).abs().max().item()
            assert gap <= 1e-6 if other == name else gap > 1e-4, (i, name, other, gap)


def with_loss_head(model, family: str):
    """BERT has no loss of its own: wrap it in the course's Classifier (a `head` that trains and is saved).
    The causal LM keeps its language-modelling loss and no extra head."""
    return Classifier(model) if family == "bert" else model


def fresh_base(family: str):
    """An untouched copy of the tiny base model (same seed = same weights), wrapped as with_loss_head does."""
    return with_loss_head(FAMILIES[family](), family)


def check_wrong_base(path, family: str) -> None:
    """Loading into the other family, or into a model of another shape, fails and names both models."""
    other = "llama" if family == "bert" else "bert"
    for wrong in (FAMILIES[other](), FAMILIES[family](**OTHER_SHAPE[family])):
        try:
            load_adapter(wrong, path)
        except ValueError as e:
            message = str(e)
        else:
            raise AssertionError("loading into another base model did not fail")
        assert f"tiny-{family}" in message and "fingerprint" in message, message


def copy_into_peft(ours, reference) -> int:
    """Copy minipeft's LoRA (or DoRA) tensors of adapter "default" into peft's model `reference`; returns how many
    layers were copied (the caller checks that peft wrapped what minipeft did)."""
    copied = 0
    with torch.no_grad():
        for name, module in reference.named_modules():
            if hasattr(module, "lora_A") and "default" in module.lora_A:
                lora = ours.get_submodule(name.removeprefix("base_model.model.")).adapters["default"]
                module.lora_A["default"].weight.copy_(lora.A)
                module.lora_B["default"].weight.copy_(lora.B)
                if hasattr(lora, "magnitude"):  # DoRA
                    module.lora_magnitude_vector["default"].weight.copy_(lora.magnitude)
                copied += 1
    return copied
