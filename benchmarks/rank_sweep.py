"""Accuracy against size for one method at a time: the sweeps behind the notebooks' sliders.

    python benchmarks/rank_sweep.py           → data/results/rank_sweep.json (resumes if interrupted)
    python benchmarks/rank_sweep.py --quick   → 2 configurations × 3 steps into a temporary folder

The notebooks read it with minipeft.widgets.sweep_accuracy(results, "lora", "r").

Pfeiffer adapters over the bottleneck r, LoRA on query,value over the rank r (α = 2r, so α/r stays 2), and
prompt tuning over the prompt length k. Rotten Tomatoes with MiniLM, the same budget as compare_methods.py
(120 steps of batch 32, 48 tokens, validation on 500 snippets at steps 60 and 120, the full test split), one
seed and one learning rate per method, fixed in advance (the upper value of that method's grid in
compare_methods.py), not tuned per size. One seed only: compare differences with the seed-to-seed std that
compare_methods.json reports before reading much into them. Runs on 2 CPU threads, after compare_methods.py:
the runs that compare_methods.json already holds (LoRA r = 1, 8, 64, Pfeiffer r = 8, 64 and prompt tuning k = 20
at these learning rates with seed 0) are copied from it, not trained again (training is deterministic: the same
run gives the same numbers bit for bit).
"""
import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare_methods as cm  # noqa: E402  (same settings, same data preparation)

from minipeft.compare import compare  # noqa: E402
from minipeft.data import TASKS, load_task, subsample  # noqa: E402
from minipeft.models import load_encoder  # noqa: E402

ADAPTER_RANKS, LORA_RANKS, PROMPT_LENGTHS = [1, 2, 4, 8, 16, 32, 64, 128], [1, 2, 4, 8, 16, 32, 64], [1, 5, 10, 20, 50]
SWEEP = (
    [{"label": f"Pfeiffer adapters r={r}", "method": "adapter", "kwargs": {"r": r, "placement": "pfeiffer"},
      "lrs": [1e-3]} for r in ADAPTER_RANKS]
    + [{"label": f"LoRA r={r}", "method": "lora", "kwargs": {"targets": ["query", "value"], "r": r, "alpha": 2 * r},
        "lrs": [2e-3]} for r in LORA_RANKS]
    + [{"label": f"prompt tuning k={k}", "method": "prompt_tuning", "kwargs": {"k": k, "init": "vocab"},
        "lrs": [3e-2]} for k in PROMPT_LENGTHS]
)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    task = load_task("rotten_tomatoes")
    settings = dict(cm.SETTINGS, seeds=1)
    methods, sizes = SWEEP, {"validation": settings.pop("n_validation")}
    out = cm.ROOT / "data" / "results" / "rank_sweep.json"
    if args.quick:
        methods, out = [SWEEP[0], SWEEP[-1]], Path(tempfile.mkdtemp()) / "rank_sweep.json"
        settings.update(steps=3, eval_every=3)
        sizes = {"train": 64, "validation": 32, "test": 32}
    data = {split: subsample(task[split], sizes[split]) if sizes.get(split) else task[split] for split in task}
    backbone, tokenizer = load_encoder()
    earlier = None if args.quick else cm.ROOT / "data" / "results" / "compare_methods.json"
    results = compare(methods, data, TASKS["rotten_tomatoes"]["fields"], backbone, tokenizer, out, **settings,
                      task="rotten_tomatoes", model="all-MiniLM-L6-v2", reuse=earlier)
    for row in results["summary"]:
        print(f"{row['label']:<26} {row['trainable_params']:>10,} params  test {row['test_mean']:.3f}")
    return out


if __name__ == "__main__":
    main()
