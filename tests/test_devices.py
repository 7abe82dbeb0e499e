"""Any device: the default device prefers a GPU (or $MINIPEFT_DEVICE), the task head follows its backbone, and on a
CUDA GPU a training step, merging, saving / loading / exporting and a mixed batch work. The GPU tests are skipped
where there is none (they were written on a CPU-only machine and have not run there)."""
import datasets
import pytest
import torch
from method_checks import make_batch

import minipeft as mp
from minipeft.batching import make_loader
from minipeft.lab import models
from minipeft.train import default_device, evaluate, train

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; this machine has none")


def test_the_default_device_is_a_gpu_when_there_is_one(monkeypatch):
    monkeypatch.delenv("MINIPEFT_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_device() == torch.device("cuda")
    assert default_device("cpu") == torch.device("cpu")  # an explicit device wins
    monkeypatch.setenv("MINIPEFT_DEVICE", "cpu")  # so does the environment, over the GPU
    assert default_device() == torch.device("cpu")
    monkeypatch.delenv("MINIPEFT_DEVICE")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_device() == torch.device("cpu")


@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_the_task_head_is_made_on_its_backbones_device(head):
    """The bug: Classifier built its head on the CPU, so a backbone on a GPU met a head on the CPU ("meta" stands in
    for a GPU here: a device that is not the CPU)."""
    model = mp.Classifier(models.tiny_bert().to("meta"), head=head)
    assert {p.device.type for p in model.head.parameters()} == {"meta"}


@pytest.mark.slow
def test_the_lab_loads_the_real_models_on_the_default_device(monkeypatch):
    monkeypatch.setenv("MINIPEFT_DEVICE", "meta")  # no GPU here: a device that is not the CPU
    encoder, _ = models.load_encoder()
    assert {p.device.type for p in encoder.parameters()} == {"meta"}
    assert models.load_encoder(device="cpu")[0].device.type == "cpu"


# ---------------------------------------------------------------- on a CUDA GPU
def on_gpu(batch: dict) -> dict:
    return {k: v.cuda() for k, v in batch.items()}


@torch.no_grad()
def nudge(model, scale=0.1) -> None:
    """Move every adapter tensor away from its initial value, on its own device."""
    torch.manual_seed(1)
    for name, p in model.named_parameters():
        if ".adapters." in name:
            p.add_(scale * torch.randn_like(p))


@CUDA
def test_training_steps_on_the_gpu(bert_tokenizer):
    rows = datasets.Dataset.from_dict({"text": ["a good film", "bad", "loved it", "dull and long"] * 4,
                                       "label": [1, 0, 1, 0] * 4})
    loader = make_loader(rows, bert_tokenizer, "text", batch_size=4, shuffle=True)  # batches made on the CPU
    model = mp.apply_lora(mp.Classifier(models.tiny_bert().cuda()), r=2)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    _, stats = train(model, loader, loader, lr=1e-2, steps=4, progress=False)
    assert stats["precision"] == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")
    assert {p.device.type for p in model.parameters()} == {"cuda"}
    assert all(not torch.equal(p, before[n]) for n, p in model.named_parameters() if n in before)
    assert 0.0 <= evaluate(model, loader) <= 1.0


@CUDA
def test_merge_on_the_gpu():
    model = mp.apply_lora(models.tiny_llama().cuda(), ["q_proj", "v_proj"], r=4, alpha=8)
    nudge(model)
    batch = on_gpu(make_batch())
    with torch.no_grad():
        unmerged = model(**batch).logits
        mp.merge_lora(model)
        merged = model(**batch).logits
        mp.unmerge_lora(model)
        again = model(**batch).logits
    torch.testing.assert_close(merged, unmerged, atol=1e-4, rtol=0)
    torch.testing.assert_close(again, unmerged, atol=1e-4, rtol=0)


@CUDA
def test_save_load_and_export_from_the_gpu(tmp_path):
    model = mp.apply_ia3(mp.Classifier(models.tiny_bert().cuda()))
    nudge(model)
    batch = make_batch()
    with torch.no_grad():
        expected = model(**on_gpu(batch))["logits"]
    mp.save_adapter(model, tmp_path / "adapter")
    on_the_gpu = mp.load_adapter(mp.Classifier(models.tiny_bert().cuda()), tmp_path / "adapter")
    on_the_cpu = mp.load_adapter(mp.Classifier(models.tiny_bert()), tmp_path / "adapter")
    with torch.no_grad():
        torch.testing.assert_close(on_the_gpu(**on_gpu(batch))["logits"], expected, atol=1e-6, rtol=0)
        torch.testing.assert_close(on_the_cpu(**batch)["logits"], expected.cpu(), atol=1e-4, rtol=0)
    mp.export_peft(model, tmp_path / "peft")
    imported = mp.import_peft(mp.Classifier(models.tiny_bert().cuda()), tmp_path / "peft")
    with torch.no_grad():
        torch.testing.assert_close(imported(**on_gpu(batch))["logits"], expected, atol=1e-6, rtol=0)


@CUDA
@pytest.mark.parametrize("method", ["lora", "prefix"])
def test_a_mixed_batch_on_the_gpu(method):
    model = models.tiny_llama().cuda()
    for name in ("a", "b"):
        if method == "lora":
            mp.apply_lora(model, ["q_proj", "v_proj"], r=4, name=name)
        else:
            mp.apply_prefix_tuning(model, k=3, name=name)
    nudge(model)
    batch = on_gpu(make_batch())
    names = ["a", "b", "a"]
    with torch.no_grad():
        mp.set_adapter(model, names)
        mixed = model(**batch).logits
        for i, name in enumerate(names):
            mp.set_adapter(model, name)
            alone = model(**{k: v[i:i + 1] for k, v in batch.items()}).logits
            torch.testing.assert_close(mixed[i:i + 1], alone, atol=1e-4, rtol=0)
