"""Time to accuracy: LoRA trained with minipeft's defaults against Hugging Face peft + transformers.Trainer at
Trainer's defaults, in one run, on the same data, model, learning rate, batch size and epochs.

    python benchmarks/time_to_accuracy.py          → data/results/time_to_accuracy.json
    python benchmarks/time_to_accuracy.py --quick  tiny data, a few steps, into a temporary folder (a smoke test)

Both train the same model: MiniLM under minipeft's Classifier (mean pooling, a linear head with the same initial
weights), LoRA r = 8, α = 16 on query and value, on Rotten Tomatoes' whole training split, batch 32, snippets cut
at 64 tokens, 3 epochs (Trainer's default), the learning rate compare_methods.py chose for LoRA r = 8.
    minipeft   minipeft.apply_lora + minipeft.train.train with its defaults: length-grouped batches, bf16 autocast
               where the CPU has bf16 units, no dropout in the frozen base, 10 % warm-up then linear decay
    peft       peft.get_peft_model(LoraConfig(...)) + transformers.Trainer with TrainingArguments' defaults but
               for the shared settings: random batches, fp32, dropout on, no warm-up, linear decay (use_cpu=True)
Both validate on the whole validation split 4 times an epoch (each in its own precision). Training time is the wall
time spent training, evaluation excluded (Trainer's own eval_runtime is subtracted; minipeft's step times are
summed). The time to accuracy is the training time until the validation accuracy first reaches the lower of the two
runs' best accuracies (so both reach it). Target: minipeft ≤ 0.5 × peft + Trainer.

It also measures how much of this CPU's matrix-product speed a LoRA step uses: the FLOPs of one step
(torch.utils.flop_counter) divided by its seconds, against the FLOP/s of a large square matmul timed in the same run
(fp32 and bf16, the CPU's practical peak with these threads).
"""
import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare_methods as cm  # noqa: E402  (same settings, same data preparation)
import peft  # noqa: E402
import transformers  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from minipeft import Classifier, apply_lora  # noqa: E402
from minipeft.lab import load_encoder, load_task, subsample  # noqa: E402
from minipeft.lab.compare import save  # noqa: E402
from minipeft.lab.course import threads  # noqa: E402
from minipeft.train import autocast, logits_and_targets, resolve_precision, train  # noqa: E402
from minipeft.batching import make_loader  # noqa: E402

R, ALPHA, EPOCHS, EVALS_PER_EPOCH = 8, 16, 3, 4


def run_minipeft(backbone, tokenizer, data, lr, settings, epochs, eval_every):
    """minipeft's defaults. Returns [(training seconds, validation accuracy)] and the run's precision."""
    torch.manual_seed(0)
    model = apply_lora(Classifier(copy.deepcopy(backbone)), targets=["query", "value"], r=R, alpha=ALPHA)
    train_loader = make_loader(data["train"], tokenizer, ["text"], settings["batch_size"], settings["max_length"],
                               shuffle=True)
    val_loader = make_loader(data["validation"], tokenizer, ["text"], 64, settings["max_length"])
    history, stats = train(model, train_loader, val_loader, lr=lr, epochs=epochs, eval_every=eval_every)
    elapsed = [sum(stats["step_seconds"][:h["step"]]) for h in history]
    return [(t, h["metric"]) for t, h in zip(elapsed, history)], stats["precision"]


class Clock(transformers.TrainerCallback):
    """Training seconds at each evaluation: wall time since training began minus the evaluations' own runtime."""

    def __init__(self):
        self.start, self.evaluating, self.points = None, 0.0, []

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.evaluating += metrics["eval_runtime"]
        self.points.append((time.perf_counter() - self.start - self.evaluating, metrics["eval_accuracy"]))


def run_peft_trainer(backbone, tokenizer, data, lr, settings, epochs, eval_every, folder):
    """peft + Trainer at Trainer's defaults. Returns [(training seconds, validation accuracy)]."""
    torch.manual_seed(0)
    classifier = Classifier(copy.deepcopy(backbone))  # the same initial head as minipeft's run (seed 0)
    config = peft.LoraConfig(r=R, lora_alpha=ALPHA, target_modules=["query", "value"], lora_dropout=0.0,
                             modules_to_save=["head"])
    model = peft.get_peft_model(classifier, config)
    collate = make_loader(data["train"], tokenizer, ["text"], settings["batch_size"], settings["max_length"],
                          group_by_length=False).collate_fn
    args = transformers.TrainingArguments(
        output_dir=str(folder), per_device_train_batch_size=settings["batch_size"], per_device_eval_batch_size=64,
        num_train_epochs=epochs, learning_rate=lr, eval_strategy="steps", eval_steps=eval_every,
        save_strategy="no", report_to=[], remove_unused_columns=False, use_cpu=True, seed=0, disable_tqdm=False,
        logging_strategy="no")
    clock = Clock()
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=data["train"], eval_dataset=data["validation"], data_collator=collate,
        compute_metrics=lambda p: {"accuracy": float((p.predictions.argmax(-1) == p.label_ids).mean())},
        callbacks=[clock])
    trainer.train()
    return clock.points


def first_time_at(points, accuracy):
    """The training seconds at the first evaluation that reached `accuracy` (None if none did)."""
    return next((t for t, a in points if a >= accuracy - 1e-12), None)


def matmul_share(backbone, tokenizer, data, settings, n=2048, repeats=5) -> dict:
    """FLOP/s of a LoRA step (minipeft, bf16 where fast) against a large matmul's, fp32 and bf16."""
    peak = {}
    for dtype in (torch.float32, torch.bfloat16):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        a @ b
        seconds = []
        for _ in range(repeats):
            tick = time.perf_counter()
            a @ b
            seconds.append(time.perf_counter() - tick)
        peak[str(dtype).split(".")[-1]] = 2 * n ** 3 / min(seconds)
    torch.manual_seed(0)
    model = apply_lora(Classifier(copy.deepcopy(backbone)), targets=["query", "value"], r=R, alpha=ALPHA)
    loader = make_loader(data["train"], tokenizer, ["text"], settings["batch_size"], settings["max_length"],
                         shuffle=True)
    batch = next(iter(loader))
    precision = resolve_precision("auto", torch.device("cpu"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)

    def step():
        with autocast(precision, torch.device("cpu")):
            logits, targets = logits_and_targets(model, batch)
        torch.nn.functional.cross_entropy(logits.float(), targets).backward()
        optimizer.step()
        optimizer.zero_grad()

    with FlopCounterMode(display=False) as counter:
        step()
    seconds = []
    for _ in range(repeats + 1):
        tick = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - tick)
    flops, step_seconds = counter.get_total_flops(), statistics.median(seconds[1:])
    achieved = flops / step_seconds
    key = "bfloat16" if precision == "bf16" else "float32"
    return {"step_flops": flops, "step_seconds": step_seconds, "tokens_per_batch": batch["input_ids"].shape[1],
            "achieved_flops_per_second": achieved, "matmul_peak_flops_per_second": peak, "precision": precision,
            "share_of_peak": achieved / peak[key], "matmul_size": n}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(threads())
    task = load_task("rotten_tomatoes")
    settings, data, epochs = dict(cm.SETTINGS), dict(task), EPOCHS
    out = cm.ROOT / "data" / "results" / "time_to_accuracy.json"
    if args.quick:
        data = {"train": subsample(task["train"], 64), "validation": subsample(task["validation"], 32)}
        out, epochs, lr = Path(tempfile.mkdtemp()) / "time_to_accuracy.json", 1, 1e-3
    else:
        summary = json.loads((cm.ROOT / "data" / "results" / "compare_methods.json").read_text())["summary"]
        lr = next(row["lr"] for row in summary if row["label"] == "LoRA r=8")
    steps_per_epoch = -(-len(data["train"]) // settings["batch_size"])
    eval_every = max(1, steps_per_epoch // EVALS_PER_EPOCH)
    backbone, tokenizer = load_encoder(device="cpu")  # this CPU's time to accuracy (Trainer runs with use_cpu=True)
    load = os.getloadavg()[0]
    ours, precision = run_minipeft(backbone, tokenizer, data, lr, settings, epochs, eval_every)
    with tempfile.TemporaryDirectory() as folder:
        theirs = run_peft_trainer(backbone, tokenizer, data, lr, settings, epochs, eval_every, folder)
    target = min(max(a for _, a in ours), max(a for _, a in theirs))
    reach = {"minipeft": first_time_at(ours, target), "peft_trainer": first_time_at(theirs, target)}
    results = {"settings": {**settings, "epochs": epochs, "lr": lr, "r": R, "alpha": ALPHA, "eval_every": eval_every,
                            "sizes": {k: len(v) for k, v in data.items()}, "threads": torch.get_num_threads(),
                            "minipeft_precision": precision},
               "curves": {"minipeft": ours, "peft_trainer": theirs}, "target_accuracy": target,
               "seconds_to_target": reach, "ratio": reach["minipeft"] / reach["peft_trainer"],
               "final_best": {"minipeft": max(a for _, a in ours), "peft_trainer": max(a for _, a in theirs)},
               "training_seconds": {"minipeft": ours[-1][0], "peft_trainer": theirs[-1][0]},
               "matmul": matmul_share(backbone, tokenizer, data, settings, n=512 if args.quick else 2048),
               "load_average_before": load, "load_average_after": os.getloadavg()[0],
               "utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "versions": {
                   "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}}
    save(results, out)
    headline = ("target_accuracy", "seconds_to_target", "ratio", "final_best")
    print(json.dumps({k: results[k] for k in headline}, indent=1))
    print(f"LoRA step: {results['matmul']['share_of_peak']:.1%} of the {results['matmul']['precision']} matmul peak")
    return out


if __name__ == "__main__":
    main()
