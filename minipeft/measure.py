"""What a training run costs: seconds per step, memory, and the size of what you would ship.

Memory on CPU. PyTorch keeps no allocator statistics on CPU (there is no torch.cuda.max_memory_allocated), and
the operating system's high-water mark (getrusage ru_maxrss) covers the whole process: the interpreter, the
data, every model loaded before. It never goes down, so a second run in the same process reports the first
run's peak. We report it as `peak_rss_mb`, but compare methods with `memory_mb`, counted from the tensors
training has to keep:

    weights        every parameter, frozen or not                               same for every method
    gradients      one number per trainable parameter                           PEFT: tiny
    optimizer      AdamW's two moments per trainable parameter                  PEFT: tiny
    activations    what autograd saves in the forward pass for the backward     PEFT: about as large as
                   pass (saved_tensors_hooks; the largest batch's)             full fine-tuning!

Gradients still flow back through a frozen base model to reach the adapters inside it, so activations only
shrink for methods that need no backward through the base model: probes (and methods on the top layers only).
"""
import resource
import statistics
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import save_file

from .saving import configs, save_adapter

MB = 2 ** 20


@contextmanager
def saved_activations(model):
    """Yields {storage: bytes} of the tensors autograd saves for backward inside the block, weights left out."""
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    sizes = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            sizes[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        yield sizes


def memory_mb(model, activation_bytes: int) -> dict:
    params = list(model.parameters())  # a shared (tied) parameter appears once
    trainable = sum(p.numel() * p.element_size() for p in params if p.requires_grad)
    return {"weights": sum(p.numel() * p.element_size() for p in params) / MB, "gradients": trainable / MB,
            "optimizer": 2 * trainable / MB, "activations": activation_bytes / MB}


def adapter_bytes(model) -> int:
    """Size on disk of save_adapter's safetensors file. A probe records no adapter config: its trainable
    tensors (the head) are written the same way."""
    with tempfile.TemporaryDirectory() as tmp:
        if configs(model):
            save_adapter(model, tmp, next(iter(configs(model))))
        else:
            tensors = {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}
            save_file(tensors, Path(tmp, "adapter.safetensors"))
        return Path(tmp, "adapter.safetensors").stat().st_size


def run_stats(model, step_seconds: list, activation_bytes: int, **extra) -> dict:
    """trainable_params, total_params, seconds_per_step (median: the first steps warm up caches), steps,
    memory_mb (see above), peak_rss_mb, adapter_bytes, plus whatever `extra` the caller adds."""
    params = list(model.parameters())
    return {"trainable_params": sum(p.numel() for p in params if p.requires_grad),
            "total_params": sum(p.numel() for p in params),
            "seconds_per_step": statistics.median(step_seconds), "steps": len(step_seconds),
            "memory_mb": memory_mb(model, activation_bytes),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # Linux reports KiB
            "adapter_bytes": adapter_bytes(model), **extra}
