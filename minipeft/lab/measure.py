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

    history, stats = train(model, loader, ...)                  # the library reports step times
    costs = run_costs(model, stats, longest_batch(loader))      # the lab adds memory and bytes on disk
"""
import resource
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch

from ..core import configs
from ..saving import save_adapter
from ..train import autocast, logits_and_targets, model_device, set_train_mode, to_device
from ..batching import batches_with_rows

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


def memory_mb(model, activation_bytes: int) -> dict[str, float]:
    """{weights, gradients, optimizer, activations} in MB: what one training step of `model` has to hold."""
    params = list(model.parameters())  # a shared (tied) parameter appears once
    trainable = sum(p.numel() * p.element_size() for p in params if p.requires_grad)
    return {"weights": sum(p.numel() * p.element_size() for p in params) / MB, "gradients": trainable / MB,
            "optimizer": 2 * trainable / MB, "activations": activation_bytes / MB}


def adapter_bytes(model, name: str | None = None) -> int:
    """Size on disk of save_adapter's safetensors file for adapter `name` (default: the first one applied)."""
    if not configs(model):
        raise ValueError("no method was applied to this model, so there is no adapter to save")
    with tempfile.TemporaryDirectory() as tmp:
        save_adapter(model, tmp, name or next(iter(configs(model))))
        return Path(tmp, "adapter.safetensors").stat().st_size


def longest_batch(loader) -> dict:
    """The batch of `loader` with the most tokens (the one whose activations peak)."""
    return max((batch for _, batch in batches_with_rows(loader)), key=lambda b: b["input_ids"].numel())


def activation_bytes(model, batch: dict, task: str = "classification", precision: str = "fp32",
                     base_dropout: bool = True) -> int:
    """Bytes autograd saves for the backward pass in one training forward pass of `batch` (no step is taken)."""
    device = model_device(model)
    set_train_mode(model, base_dropout)
    with saved_activations(model) as saved, autocast(precision, device):
        logits_and_targets(model, to_device(batch, device), task)
    model.eval()
    return sum(saved.values())


def run_costs(model, stats: dict, batch: dict, task: str = "classification") -> dict:
    """What a training run cost, from train()'s stats and the largest batch: trainable_params, total_params,
    seconds_per_step (median: the first steps warm up caches), steps, memory_mb (see above), peak_rss_mb,
    adapter_bytes."""
    params = list(model.parameters())
    saved = activation_bytes(model, batch, task, stats["precision"], stats["base_dropout"])
    return {"trainable_params": sum(p.numel() for p in params if p.requires_grad),
            "total_params": sum(p.numel() for p in params),
            "seconds_per_step": stats["seconds_per_step"], "steps": stats["steps"],
            "memory_mb": memory_mb(model, saved),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # Linux reports KiB
            "adapter_bytes": adapter_bytes(model)}


def time_steps_side_by_side(setups: dict, rounds: int = 3, task: str = "classification",
                            progress: bool = True) -> dict[str, list[float]]:
    """Seconds of each training step (forward, backward, AdamW) of several set-ups, timed in turns: every round runs
    each set-up once over its batches, so whatever else the machine does slows them alike and their ratios hold.
    setups: {label: {"model", "batches", optional "precision" (default "auto") and "base_dropout" (default: on
    only if base parameters train)}}. The first round warms up and is not kept. Returns {label: [seconds]}."""
    import time

    from tqdm.auto import tqdm

    from ..core import trains_base
    from ..train import resolve_precision
    optimizers = {label: torch.optim.AdamW([p for p in s["model"].parameters() if p.requires_grad], lr=1e-6)
                  for label, s in setups.items()}
    seconds = {label: [] for label in setups}
    bar = tqdm(total=rounds * len(setups), desc="timing steps", disable=not progress)
    for round_ in range(rounds):
        for label, setup in setups.items():
            model, device = setup["model"], model_device(setup["model"])
            precision = resolve_precision(setup.get("precision", "auto"), device)
            base_dropout = setup.get("base_dropout")
            set_train_mode(model, trains_base(model) if base_dropout is None else base_dropout)
            for batch in setup["batches"]:
                batch = to_device(batch, device)
                tick = time.perf_counter()
                with autocast(precision, device):
                    logits, targets = logits_and_targets(model, batch, task)
                loss = torch.nn.functional.cross_entropy(logits.float(), targets, ignore_index=-100)
                optimizers[label].zero_grad(set_to_none=True)
                loss.backward()
                optimizers[label].step()
                if round_ > 0:
                    seconds[label].append(time.perf_counter() - tick)
            model.eval()
            bar.update()
    bar.close()
    return seconds
