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
Two tasks share the loop. "classification": a Classifier's logits against the class labels. "causal_lm":
next-token prediction of the *target* tokens only (the prompt's labels are -100, ignored); the loss reads the
logits of the last n positions, so methods that prepend virtual tokens (prompt and prefix tuning) just work.

Same seed on the same CPU → the same history and weights, bit for bit: the seed fixes dropout and batch order.
What a run costs (time, memory, bytes on disk) is measured in measure.py.
"""
import math
import statistics
import time
from functools import partial
from itertools import chain, repeat

import torch
from torch.nn import functional as F
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .measure import run_stats, saved_activations

TASKS = ("classification", "causal_lm")


# ---------------------------------------------------------------- data
def make_loader(dataset, tokenizer, fields, batch_size=32, max_length=128, shuffle=False, seed=0,
                task="classification"):
    """Batches padded to their own longest row, not to max_length (dynamic padding: no wasted compute).
    classification: `fields` names one text column or a pair (encoded as tokenizer(first, second)), and the
    dataset has an int "label" column. causal_lm: `fields` = (prompt column, target column), see lm_batch."""
    fields = [fields] if isinstance(fields, str) else list(fields)

    def collate(rows):
        columns = [[row[f] for row in rows] for f in fields]
        if task == "causal_lm":
            return lm_batch(tokenizer, *columns, max_length=max_length)
        batch = dict(tokenizer(*columns, truncation=True, max_length=max_length, padding=True, return_tensors="pt"))
        if len(fields) == 1:
            batch.pop("token_type_ids", None)  # all zeros for a single text: the model's default anyway
        return {**batch, "labels": torch.tensor([row["label"] for row in rows])}

    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, collate_fn=collate,
                      generator=torch.Generator().manual_seed(seed))


def lm_batch(tokenizer, prompts, targets, max_length=128) -> dict:
    """input_ids, attention_mask and labels to learn to continue each prompt with its target (+ EOS).
    labels are -100 on the prompt and the padding: only the target tokens are learned. A prompt too long is
    cut from the left, so the target always fits (its first max_length tokens)."""
    ids, labels = [], []
    for prompt, target in zip(prompts, targets):
        answer = (tokenizer(target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id])[:max_length]
        question = tokenizer(prompt)["input_ids"]
        question = question[max(0, len(question) + len(answer) - max_length):]
        ids.append(torch.tensor(question + answer))
        labels.append(torch.tensor([-100] * len(question) + answer))
    return {"input_ids": pad_sequence(ids, batch_first=True, padding_value=tokenizer.pad_token_id),
            "attention_mask": pad_sequence([torch.ones_like(i) for i in ids], batch_first=True),
            "labels": pad_sequence(labels, batch_first=True, padding_value=-100)}


# ---------------------------------------------------------------- loss and accuracy
def logits_and_targets(model, batch, task="classification"):
    """(logits, targets) lined up so that cross_entropy(logits, targets, ignore_index=-100) is the loss.
    classification: (batch, classes) and (batch,). causal_lm: position t predicts token t+1; only the last
    labels.shape[1] positions are read (virtual tokens in front are skipped); both flattened."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, not {task!r}")
    labels = batch["labels"]
    logits = model(**{k: v for k, v in batch.items() if k != "labels"})["logits"]
    if task == "classification":
        return logits, labels
    logits = logits[:, -labels.shape[1]:]
    return logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten()


@torch.no_grad()
def evaluate(model, loader, task="classification") -> float:
    """Accuracy: of the predicted classes, or (causal_lm) of the greedy next-token guesses on target tokens."""
    was_training, correct, total = model.training, 0, 0
    model.eval()
    for batch in loader:
        logits, targets = logits_and_targets(model, batch, task)
        keep = targets != -100
        correct += (logits.argmax(-1)[keep] == targets[keep]).sum().item()
        total += keep.sum().item()
    model.train(was_training)
    return correct / max(total, 1)


# ---------------------------------------------------------------- training
def linear_schedule(step: int, warmup_steps: int, total_steps: int) -> float:
    """Learning-rate factor for 0-based `step`: 0 → 1 over warmup_steps, then 1 → 0 at total_steps."""
    if step < warmup_steps:
        return step / warmup_steps
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


def train(model, train_loader, val_loader=None, *, lr, steps=None, epochs=None, warmup=0.1, weight_decay=0.0,
          max_grad_norm=1.0, eval_every=None, patience=None, seed=0, task="classification", progress=True):
    """Train the parameters that require grad; return (history, stats).
    history: one dict per evaluation {step, loss (mean training loss since the previous one), metric
    (validation accuracy, None without val_loader), lr, seconds}. stats: measure.run_stats plus best_step,
    best_metric. weight_decay defaults to 0: AdamW would pull BitFit's or fine-tuning's pretrained weights
    towards zero, not towards where they started. The whole model is in train mode (dropout on, frozen parts
    included), as under transformers' Trainer with peft."""
    if (steps is None) == (epochs is None):
        raise ValueError("give exactly one of steps=... or epochs=...")
    if patience is not None and val_loader is None:
        raise ValueError("early stopping (patience=...) watches the validation metric: pass a val_loader")
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if not trainable:
        raise ValueError("the model has no trainable parameters: apply a method (or a probe) to it first")
    total = steps if steps is not None else epochs * len(train_loader)
    eval_every = eval_every or max(1, total // 10)
    torch.manual_seed(seed)  # dropout, and anything else random inside the model
    if train_loader.generator is not None:
        train_loader.generator.manual_seed(seed)  # the order of the batches
    optimizer = torch.optim.AdamW(trainable.values(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, partial(linear_schedule, warmup_steps=math.ceil(warmup * total), total_steps=total))
    history, losses, step_seconds, since_best, activation_bytes = [], [], [], 0, 0
    best = {"metric": None, "step": 0, "weights": None}
    batches = chain.from_iterable(repeat(train_loader))  # epoch after epoch, reshuffled each time
    start, bar = time.perf_counter(), tqdm(total=total, disable=not progress)
    model.train()
    for step in range(1, total + 1):
        tick, batch, current_lr = time.perf_counter(), next(batches), optimizer.param_groups[0]["lr"]
        with saved_activations(model) as saved:
            loss = F.cross_entropy(*logits_and_targets(model, batch, task), ignore_index=-100)
        activation_bytes = max(activation_bytes, sum(saved.values()))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable.values(), max_grad_norm)
        optimizer.step()
        schedule.step()
        step_seconds.append(time.perf_counter() - tick)
        losses.append(loss.item())
        bar.update()
        bar.set_postfix(loss=f"{losses[-1]:.4f}", metric=history[-1]["metric"] if history else None)
        if step % eval_every and step != total:
            continue
        metric = evaluate(model, val_loader, task) if val_loader is not None else None
        history.append({"step": step, "loss": statistics.fmean(losses), "metric": metric, "lr": current_lr,
                        "seconds": time.perf_counter() - start})
        losses, since_best = [], since_best + 1
        if metric is not None and (best["metric"] is None or metric > best["metric"]):
            weights = {name: p.detach().clone() for name, p in trainable.items()}
            best, since_best = {"metric": metric, "step": step, "weights": weights}, 0
        if patience is not None and since_best >= patience:
            break
    bar.close()
    if best["weights"] is not None:
        model.load_state_dict(best["weights"], strict=False)  # only the trainable tensors: the rest never moved
    return history, run_stats(model, step_seconds, activation_bytes, best_step=best["step"],
                              best_metric=best["metric"])
