"""Training and evaluation: the one small loop that every method of the course is trained with.

    every step:        loss ─▶ backward ─▶ clip ‖grad‖ ≤ max_grad_norm ─▶ AdamW step ─▶ next learning rate
    every eval_every:  accuracy on validation; remember the best trainable weights; stop after `patience`
                       evaluations without improvement. At the end the best weights are put back.

    learning rate   lr ┤    ╱‾‾╲
                       │   ╱     ╲          linear warm-up over the first `warmup` fraction of the steps,
                       │  ╱        ╲        then linear decay to 0 (the schedule of transformers'
                     0 ┼─╱───────────╲─▶    get_linear_schedule_with_warmup)
                         warm-up      steps

Only parameters with requires_grad go to AdamW: a frozen base model needs no gradients and no optimizer state.
Three kinds of loss share the loop. "classification": a Classifier's logits against the class labels. "tokens": a
TokenClassifier's logits at each word's first sub-token against the word's tag (methods/tagging.py). "causal_lm":
next-token prediction of the *target* tokens only (the prompt's labels are -100, ignored); the loss reads the
logits of the last n positions, so methods that prepend virtual tokens (prompt and prefix tuning) just work.

Three things make a step cheaper without changing what is learned (benchmarks/speedups.py measures each):
    group_by_length   batches of snippets of similar length (batching.make_loader): less padding to compute
    precision="bf16"  matrix products in bfloat16 under autocast, where the CPU or GPU has bf16 units; the
                      weights, AdamW's state and the loss stay fp32 ("auto" picks bf16 only where it is fast)
    base_dropout      dropout inside a *frozen* base model only adds noise to what the adapters see; by default
                      it is off when no base parameter trains (PEFT methods, probes) and on otherwise

Same seed on the same machine → the same history and weights, bit for bit: the seed fixes dropout and batch order.
The loop reports raw step timings (`stats["step_seconds"]`); what a run costs in memory and on disk is the lab's
business (minipeft.lab.measure).
"""
import math
import os
import statistics
import time
from functools import partial
from itertools import chain, repeat
from pathlib import Path

import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from .batching import LOSS_KINDS, batches_with_rows
from .core import adapter_layers, pretrained_model, trains_base

PRECISIONS = ("auto", "bf16", "fp32")


# ---------------------------------------------------------------- precision and device
def bf16_is_fast(device: torch.device) -> bool:
    """Whether `device` computes bf16 matrix products in hardware: a CUDA GPU that supports bf16, or a CPU with
    AVX512-BF16 or AMX (read from /proc/cpuinfo; other systems are assumed not to)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    cpuinfo = Path("/proc/cpuinfo")
    flags = cpuinfo.read_text() if device.type == "cpu" and cpuinfo.exists() else ""
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """"bf16" or "fp32": "auto" becomes bf16 where bf16_is_fast(device), fp32 elsewhere."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if precision == "auto":
        return "bf16" if bf16_is_fast(device) else "fp32"
    return precision


def default_device(device=None) -> torch.device:
    """Where to put a model: `device` if given ("cuda", "cuda:1", "cpu", a torch.device), else $MINIPEFT_DEVICE if
    set (e.g. MINIPEFT_DEVICE=cpu on a GPU machine), else the first CUDA GPU if there is one, else the CPU."""
    if device is None:
        device = os.environ.get("MINIPEFT_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def model_device(model) -> torch.device:
    """The device of the model's first parameter (the CPU for a model without parameters)."""
    return next(model.parameters(), torch.empty(0)).device


def to_device(batch: dict, device: torch.device) -> dict:
    """The batch's tensors moved to `device` (a no-op where they already are)."""
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def autocast(precision: str, device: torch.device):
    """The context the forward pass runs in: bf16 autocast, or nothing for fp32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


# ---------------------------------------------------------------- loss and accuracy
def logits_and_targets(model, batch, task="classification"):
    """(logits, targets) lined up so that cross_entropy(logits, targets, ignore_index=-100) is the loss.
    classification: (batch, classes) and (batch,). causal_lm: position t predicts token t+1; only the last
    labels.shape[1] positions are read (virtual tokens in front are skipped); both flattened. tokens: position t
    predicts the tag of position t (-100 where no word starts), the last labels.shape[1] positions, flattened."""
    if task not in LOSS_KINDS:
        raise ValueError(f"task must be one of {LOSS_KINDS}, not {task!r}")
    logits = model(**{k: v for k, v in batch.items() if k != "labels"})["logits"]
    return lined_up(logits, batch["labels"], task)


def lined_up(logits: torch.Tensor, labels: torch.Tensor, task="classification"):
    """The model's logits and the batch's labels lined up as logits_and_targets returns them (see there)."""
    if task == "classification":
        return logits, labels
    logits = logits[:, -labels.shape[1]:]
    if task == "tokens":
        return logits.flatten(0, 1), labels.flatten()
    return logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten()


@torch.no_grad()
def predictions(model, loader, task="classification", precision="fp32") -> torch.Tensor:
    """1 where the model's guess is right, 0 where it is wrong, one entry per example, in dataset order
    (classification) or per target token in the loader's order (causal_lm). Paired comparisons of two models
    read these."""
    was_training, device = model.training, model_device(model)
    precision = resolve_precision(precision, device)
    model.eval()
    hits, order = [], []
    for rows, batch in batches_with_rows(loader):
        with autocast(precision, device):
            logits, targets = logits_and_targets(model, to_device(batch, device), task)
        keep = targets != -100
        hits.append((logits.argmax(-1)[keep] == targets[keep]).to(torch.uint8).cpu())
        order += rows or []
    model.train(was_training)
    hits = torch.cat(hits) if hits else torch.zeros(0, dtype=torch.uint8)
    if task == "classification" and len(order) == len(hits):  # one guess per row: back to dataset order
        hits = hits[torch.argsort(torch.tensor(order))]
    return hits


def evaluate(model, loader, task="classification", precision="fp32") -> float:
    """Accuracy: of the predicted classes, of the tags of the words (tokens), or (causal_lm) of the greedy next-token
    guesses on target tokens."""
    hits = predictions(model, loader, task, precision)
    return hits.sum().item() / len(hits) if len(hits) else 0.0


# ---------------------------------------------------------------- training
def linear_schedule(step: int, warmup_steps: int, total_steps: int) -> float:
    """Learning-rate factor for 0-based `step`: 0 → 1 over warmup_steps, then 1 → 0 at total_steps."""
    if step < warmup_steps:
        return step / warmup_steps
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


def parameter_groups(trainable: dict, lr: float, lr_scale=None) -> list[dict]:
    """AdamW's parameter groups: one at `lr`, or, with lr_scale(name) → factor (e.g. lora.loraplus), one group per
    factor at factor × lr."""
    groups = {}
    for name, p in trainable.items():
        groups.setdefault(1.0 if lr_scale is None else float(lr_scale(name)), []).append(p)
    return [{"params": params, "lr": factor * lr, "scale": factor} for factor, params in groups.items()]


def set_train_mode(model, base_dropout: bool) -> None:
    """Train mode (dropout on) for the whole model, or, with base_dropout=False, for the adapters and the head
    only: the pretrained model's own modules run as at evaluation (no dropout)."""
    model.train()
    if not base_dropout:
        pretrained_model(model).eval()
        for layer in adapter_layers(model):
            layer.adapters.train()


def train(model, train_loader, val_loader=None, *, lr, steps=None, epochs=None, warmup=0.1, weight_decay=0.0,
          max_grad_norm=1.0, eval_every=None, patience=None, seed=0, task="classification", precision="auto",
          base_dropout=None, lr_scale=None, on_step=None, progress=True):
    """Train the parameters that require grad; return (history, stats).

    history: one dict per evaluation {step, epoch, loss (mean training loss since the previous one), metric
    (validation accuracy, None without val_loader), lr, seconds}. stats: steps, step_seconds (each step's wall
    time), seconds_per_step (their median), trainable_params, best_step, steps_per_epoch, best_metric, precision,
    base_dropout. precision: "auto" (bf16 where the hardware is fast at it), "bf16" or "fp32"; validation runs in
    the same precision (evaluate() on its own defaults to fp32). base_dropout: None = on only if some base parameter
    trains. lr_scale(name) → factor gives a parameter its own learning rate (LoRA+). on_step(step, seconds, loss) is
    called after every step. weight_decay defaults to 0: AdamW would pull BitFit's or fine-tuning's pretrained
    weights towards zero, not towards where they started. Raises ValueError for a model with nothing to train, both
    or neither of steps/epochs, or patience without a validation loader."""
    if (steps is None) == (epochs is None):
        raise ValueError("give exactly one of steps=... or epochs=...")
    if patience is not None and val_loader is None:
        raise ValueError("early stopping (patience=...) watches the validation metric: pass a val_loader")
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if not trainable:
        raise ValueError("the model has no trainable parameters: apply a method (or a probe) to it first")
    device = model_device(model)
    precision = resolve_precision(precision, device)
    base_dropout = trains_base(model) if base_dropout is None else bool(base_dropout)
    total = steps if steps is not None else round(epochs * len(train_loader))
    eval_every = eval_every or max(1, total // 10)
    torch.manual_seed(seed)  # dropout, and anything else random inside the model
    if train_loader.generator is not None:
        train_loader.generator.manual_seed(seed)  # the order of the batches
    optimizer = torch.optim.AdamW(parameter_groups(trainable, lr, lr_scale), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, partial(linear_schedule, warmup_steps=math.ceil(warmup * total), total_steps=total))
    history, losses, step_seconds, since_best = [], [], [], 0
    best = {"metric": None, "step": 0, "weights": None}
    batches = chain.from_iterable(repeat(train_loader))  # epoch after epoch, reshuffled each time
    start, bar = time.perf_counter(), tqdm(total=total, disable=not progress)
    set_train_mode(model, base_dropout)
    for step in range(1, total + 1):
        tick, batch = time.perf_counter(), to_device(next(batches), device)
        current_lr = optimizer.param_groups[0]["lr"] / optimizer.param_groups[0]["scale"]  # the rate at factor 1
        with autocast(precision, device):
            logits, targets = logits_and_targets(model, batch, task)
        loss = F.cross_entropy(logits.float(), targets, ignore_index=-100)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable.values(), max_grad_norm)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        step_seconds.append(time.perf_counter() - tick)
        if on_step is not None:
            on_step(step, step_seconds[-1], losses[-1])
        bar.update()
        bar.set_postfix(loss=f"{losses[-1]:.4f}", best=best["metric"])
        if step % eval_every and step != total:
            continue
        metric = evaluate(model, val_loader, task, precision) if val_loader is not None else None
        set_train_mode(model, base_dropout)
        history.append({"step": step, "epoch": step / len(train_loader), "loss": statistics.fmean(losses),
                        "metric": metric, "lr": current_lr, "seconds": time.perf_counter() - start})
        losses, since_best = [], since_best + 1
        if metric is not None and (best["metric"] is None or metric > best["metric"]):
            weights = {name: p.detach().clone() for name, p in trainable.items()}
            best, since_best = {"metric": metric, "step": step, "weights": weights}, 0
        bar.set_postfix(loss=f"{loss.item():.4f}", best=best["metric"])  # the bar ends on the best train returns
        if patience is not None and since_best >= patience:
            break
    bar.close()
    if best["weights"] is not None:
        model.load_state_dict(best["weights"], strict=False)  # only the trainable tensors: the rest never moved
    model.eval()
    return history, {"steps": len(step_seconds), "step_seconds": step_seconds,
                     "seconds_per_step": statistics.median(step_seconds),
                     "trainable_params": sum(p.numel() for p in trainable.values()), "best_step": best["step"],
                     "steps_per_epoch": len(train_loader),
                     "best_metric": best["metric"], "precision": precision, "base_dropout": base_dropout}
