"""How many epochs until the methods stop learning: validation accuracy over 6 epochs, the curve that sets the
comparison's budget (compare_methods.py).

    python benchmarks/convergence.py          → data/results/convergence.json and .png (resumes if interrupted)
    python benchmarks/convergence.py --quick  2 methods, a few steps, into a temporary folder (a smoke test)

Rotten Tomatoes (the whole training split, split by movie), MiniLM, mean pooling, batch 32, snippets cut at 64
tokens, minipeft's defaults (length-grouped batches, bf16 autocast where the CPU has bf16 units, no dropout in a
frozen base). One seed per method at a learning rate that worked in earlier runs (not searched: this is only about
*when* learning stops), a linear schedule over 6 epochs, validation (the whole validation split) 4 times an
epoch. Full fine-tuning and LoRA r = 8 are the pair the course is about. Every other method's curve comes from
compare_methods.py, whose final runs validate 4 times an epoch too and record the epoch of their best accuracy.
"""
import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from minipeft.lab import load_encoder, load_task, subsample  # noqa: E402
from minipeft.lab.compare import compare  # noqa: E402
from minipeft.lab.course import threads  # noqa: E402

EPOCHS, EVALS_PER_EPOCH = 6, 4
METHODS = [
    {"label": "full fine-tuning", "method": "finetune", "kwargs": {}, "lr": 5e-5},
    {"label": "LoRA r=8", "method": "lora", "kwargs": {"targets": ["query", "value"], "r": 8, "alpha": 16}, "lr": 2e-3},
]


def plot(results: dict, path: Path) -> None:
    """Validation accuracy against epochs, one line per method."""
    fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
    for run in results["runs"]:
        ax.plot([h["epoch"] for h in run["history"]], [100 * h["metric"] for h in run["history"]], marker=".",
                label=f"{run['label']} (lr {run['lr']:g})")
    ax.set(xlabel="epoch", ylabel="validation accuracy (%)", title="When do the methods stop learning?")
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    fig.savefig(path, dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(threads())
    task = load_task("rotten_tomatoes")
    methods, epochs, out = METHODS, EPOCHS, ROOT / "data" / "results" / "convergence.json"
    data = dict(task)
    if args.quick:
        methods, epochs, out = METHODS[:2], 2, Path(tempfile.mkdtemp()) / "convergence.json"
        data = {"train": subsample(task["train"], 64), "validation": subsample(task["validation"], 32),
                "test": subsample(task["test"], 32)}
    steps_per_epoch = -(-len(data["train"]) // 32)
    final = {"epochs": epochs, "eval_every": max(1, steps_per_epoch // EVALS_PER_EPOCH), "patience": None}
    backbone, tokenizer = load_encoder()
    results = compare(methods, data, ["text"], backbone, tokenizer, out, search={}, final=final, seeds=1,
                      batch_size=32, max_length=64, task="rotten_tomatoes", model="all-MiniLM-L6-v2")
    plot(results, out.with_suffix(".png"))
    for run in results["runs"]:
        curve = " ".join(f"{100 * h['metric']:.1f}" for h in run["history"])
        print(f"{run['label']:<24} best {100 * run['validation']:.1f} at epoch "
              f"{run['stats']['best_step'] / run['stats']['steps_per_epoch']:.2f}: {curve}")
    return out


if __name__ == "__main__":
    main()
