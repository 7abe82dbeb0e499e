"""Accuracy against size for one method at a time: the sweeps behind the notebooks' sliders.

    python benchmarks/rank_sweep.py           → data/results/rank_sweep.json (resumes if interrupted)
    python benchmarks/rank_sweep.py --quick   → 2 configurations, a few steps, into a temporary folder

The notebooks read it with minipeft.lab.widgets.sweep_accuracy(results, "lora", "r").

Pfeiffer adapters over the bottleneck r, LoRA on query,value over the rank r (α = 2r, so α/r stays 2), and
prompt tuning over the prompt length k. Rotten Tomatoes with MiniLM under compare_methods.py's final budget (the
same data, up to 4 epochs with early stopping, minipeft's defaults), one seed, and for each method the learning
rate compare_methods.py's search chose for its middle size (LoRA r = 8, Pfeiffer r = 8, prompt tuning k = 20),
not searched again per size. One seed only: compare differences with the seed-to-seed std of
compare_methods.json before reading much into them. Runs compare_methods.json already holds (the same
configuration, rate and seed) are copied from it, not trained again. Run it after compare_methods.py.
"""
import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare_methods as cm  # noqa: E402  (same settings, same data preparation)

from minipeft.lab import load_encoder, load_task, subsample  # noqa: E402
from minipeft.lab.compare import compare  # noqa: E402
from minipeft.lab.course import threads  # noqa: E402

ADAPTER_RANKS, LORA_RANKS, PROMPT_LENGTHS = [1, 2, 4, 8, 16, 32, 64, 128], [1, 2, 4, 8, 16, 32, 64], [1, 5, 10, 20, 50]


def sweep(rates: dict[str, float]) -> list[dict]:
    """The configurations, each at the rate chosen for its method's middle size ({label: lr})."""
    return ([{"label": f"Pfeiffer adapters r={r}", "method": "bottleneck", "kwargs": {"r": r, "placement": "pfeiffer"},
              "lr": rates["Pfeiffer adapters r=8"]} for r in ADAPTER_RANKS]
            + [{"label": f"LoRA r={r}", "method": "lora", "lr": rates["LoRA r=8"],
                "kwargs": {"targets": ["query", "value"], "r": r, "alpha": 2 * r}} for r in LORA_RANKS]
            + [{"label": f"prompt tuning k={k}", "method": "prompt_tuning", "kwargs": {"k": k, "init": "vocab"},
                "lr": rates["prompt tuning k=20"]} for k in PROMPT_LENGTHS])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(threads())
    task = load_task("rotten_tomatoes")
    settings, search, final, data = dict(cm.SETTINGS, seeds=1), cm.SEARCH, cm.FINAL, dict(task)
    earlier = cm.ROOT / "data" / "results" / "compare_methods.json"
    out = cm.ROOT / "data" / "results" / "rank_sweep.json"
    if args.quick:
        rates = {"Pfeiffer adapters r=8": 1e-3, "LoRA r=8": 1e-3, "prompt tuning k=20": 1e-2}
        methods, out, earlier = [sweep(rates)[0], sweep(rates)[-1]], Path(tempfile.mkdtemp()) / "rank_sweep.json", None
        data = {"train": subsample(task["train"], 64), "validation": subsample(task["validation"], 32),
                "test": subsample(task["test"], 32)}
        search, final = {"epochs": 1, "eval_every": 1}, {"epochs": 1, "eval_every": 1, "patience": 2}
    else:
        chosen = {row["label"]: row["lr"] for row in json.loads(earlier.read_text())["summary"]}
        methods = sweep(chosen)
    backbone, tokenizer = load_encoder()
    results = compare(methods, data, ["text"], backbone, tokenizer, out, search=search, final=final,
                      reference=None, task="rotten_tomatoes", model="all-MiniLM-L6-v2",
                      threads=torch.get_num_threads(), reuse=earlier, **settings)
    for row in results["summary"]:
        print(f"{row['label']:<26} {row['trainable_params']:>10,} params  test {row['test_mean']:.3f}")
    return out


if __name__ == "__main__":
    main()
