"""Learning curves: test accuracy against the number of labelled snippets, for seven methods, each tuned on a
validation set as small as its training set, as a user with that many labels would; then simple augmentations.

    python benchmarks/small_data.py             → data/results/small_data/*.json and data/results/small_data.json
    python benchmarks/small_data.py --augment   → also 64 and 256 snippets with each augmentation (after the above)
    python benchmarks/small_data.py --quick     → 2 methods, 2 sizes, a few steps, into a temporary folder

Rotten Tomatoes, MiniLM, compare_methods.py's settings and learning-rate grids. For every size n and draw d (5 draws
at n ≤ 256, 3 above; a draw is another user's data): n training and n validation snippets drawn with seed d
(stratified), the whole test split (1,265 snippets). Each method goes through minipeft.lab.compare with one seed:
its 4 learning rates (extended past an edge while the best sits there) on that small validation set, then the final
run at the chosen rate. The budget is counted in steps, because 16 snippets make one step an epoch: at least 4
epochs and at least 200 steps, validation 16 times, early stopping after 4 validations without improvement; batch
min(32, n). The whole training split is compare_methods.json's own runs (the size "all").
Augmentation (minipeft.lab.perturb): each training snippet plus one changed copy (word dropout p = 0.1, one swap of
neighbouring words, or every word of the synonym table swapped), at 64 and 256 snippets, same protocol and draws.
Each (size, draw, augmentation) writes its own file, run by run: a rerun resumes.
"""
import argparse
import json
import math
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from datasets import concatenate_datasets

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare_methods as cm  # noqa: E402  (same settings, grids and data)

from minipeft.lab import load_encoder, load_task, subsample  # noqa: E402
from minipeft.lab.compare import compare, save  # noqa: E402
from minipeft.lab.course import threads  # noqa: E402
from minipeft.lab.perturb import perturbed, swap_neighbours, synonym, word_dropout  # noqa: E402

SIZES, DRAWS = [16, 64, 256, 1024, 4096], {16: 5, 64: 5, 256: 5, 1024: 3, 4096: 3}
METHODS = ["linear probe (mean)", "full fine-tuning", "BitFit", "LoRA r=8", "Pfeiffer adapters r=8",
           "prefix tuning k=20", "prompt tuning k=20"]
AUGMENTATIONS = {"word dropout": (word_dropout, {"p": 0.1}), "neighbour swap": (swap_neighbours, {"n": 1}),
                 "synonyms": (synonym, {"every": True})}
AUGMENT_SIZES = [64, 256]
FOLDER = cm.ROOT / "data" / "results" / "small_data"


def budget(n: int, batch_size: int, min_epochs: int = 4, min_steps: int = 200) -> dict:
    """At least `min_epochs` epochs and `min_steps` steps, validation 16 times, patience 4 validations."""
    per_epoch = math.ceil(n / batch_size)
    epochs = max(min_epochs, math.ceil(min_steps / per_epoch))
    return {"epochs": epochs, "eval_every": max(1, epochs * per_epoch // 16), "patience": 4}


def draw(task, n: int, seed: int, augmentation: str | None = None) -> dict:
    """One user's data: n training and n validation snippets (seed), the whole test split; `augmentation` adds one
    changed copy of every training snippet."""
    train = subsample(task["train"], n, seed=seed)
    if augmentation:
        change, options = AUGMENTATIONS[augmentation]
        train = concatenate_datasets([train, perturbed(train, change, seed=seed + 1, **options)])
    return {"train": train, "validation": subsample(task["validation"], n, seed=seed), "test": task["test"]}


def curves(folder: Path) -> list[dict]:
    """One row per (method, size, augmentation): test accuracy of every draw's final run, mean and std."""
    cells = {}
    for path in sorted(folder.glob("n*_draw*.json")):
        results = json.loads(path.read_text())
        notes = results["settings"]
        for row in results["summary"]:
            if row["seeds"]:
                key = (row["label"], notes["n"], notes["augmentation"])
                cells.setdefault(key, []).append((notes["draw"], row["test_mean"], row["lr"]))
    rows = []
    for (label, n, augmentation), found in sorted(cells.items(), key=lambda kv: (kv[0][1], kv[0][0], str(kv[0][2]))):
        tests = [t for _, t, _ in sorted(found)]
        rows.append({"label": label, "n": n, "augmentation": augmentation, "draws": [d for d, _, _ in sorted(found)],
                     "test": tests, "lrs": [lr for _, _, lr in sorted(found)], "mean": statistics.fmean(tests),
                     "std": statistics.stdev(tests) if len(tests) > 1 else 0.0})
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--augment", action="store_true", help="also the augmented runs at 64 and 256 snippets")
    args = parser.parse_args(argv)
    torch.set_num_threads(threads())
    task, folder, out = load_task("rotten_tomatoes"), FOLDER, cm.ROOT / "data" / "results" / "small_data.json"
    methods, sizes, draws, augment_sizes = [cm.BY_LABEL[label] for label in METHODS], SIZES, DRAWS, AUGMENT_SIZES
    min_steps = 200
    if args.quick:
        folder = Path(tempfile.mkdtemp())
        out = folder / "small_data.json"
        methods = [{**cm.BY_LABEL[label], "lrs": cm.BY_LABEL[label]["lrs"][1:3]} for label in ("LoRA r=8", "BitFit")]
        sizes, draws, augment_sizes, min_steps = [8, 16], {8: 2, 16: 1}, [8], 4
        task = {**task, "test": subsample(task["test"], 32)}
    plan = [(n, d, None) for n in sizes for d in range(draws[n])]
    plan += [(n, d, a) for a in AUGMENTATIONS for n in augment_sizes for d in range(draws[n])] if args.augment else []
    backbone, tokenizer = load_encoder()
    for n, d, augmentation in plan:
        batch = min(cm.SETTINGS["batch_size"], n)
        steps = budget(n, batch, min_steps=min_steps)
        name = f"n{n}_draw{d}" + (f"_{augmentation.replace(' ', '_')}" if augmentation else "")
        print(f"== {name}: {steps}", flush=True)
        compare(methods, draw(task, n, d, augmentation), ["text"], backbone, tokenizer, folder / f"{name}.json",
                search=steps, final=steps, seeds=1, batch_size=batch, max_length=cm.SETTINGS["max_length"],
                task="rotten_tomatoes", model="all-MiniLM-L6-v2", n=n, draw=d, augmentation=augmentation,
                threads=torch.get_num_threads())
    save({"protocol": __doc__, "rows": curves(folder)}, out)
    for row in curves(folder):
        print(f"{row['label']:<24} n={row['n']:<5} {row['augmentation'] or '':<15} "
              f"{100 * row['mean']:.1f} ± {100 * row['std']:.1f} ({len(row['test'])} draws)")
    return out


if __name__ == "__main__":
    main()
