"""Learning curves: test accuracy against the number of labelled snippets, for seven methods, each tuned on a
validation set as small as its training set, as a user with that many labels would; then simple augmentations.

    python benchmarks/small_data.py             → data/results/small_data/*.json and data/results/small_data.json
    python benchmarks/small_data.py --plain     → the learning curves only, no augmented runs
    python benchmarks/small_data.py --quick     → 2 methods, 2 sizes, a few steps, into a temporary folder
    python benchmarks/small_data.py --summarize → small_data.json from the cells in so far (it says how many)
    python benchmarks/small_data.py --sizes 64 256 → only those sizes' cells (the rest of the plan waits)

Rotten Tomatoes, MiniLM, compare_methods.py's settings and learning-rate grids. For every size n and draw d (5 draws
at n ≤ 256, 3 above; a draw is another user's data): n training and n validation snippets drawn with seed d
(stratified), the whole test split (1,265 snippets). Each method goes through minipeft.lab.compare with one seed:
its 4 learning rates (extended past an edge while the best sits there) on that small validation set, then the final
run at the chosen rate. The budget is counted in steps, because 16 snippets make one step an epoch: at least 4
epochs and at least 200 steps, validation 16 times, early stopping after 4 validations without improvement; batch
min(32, n). The whole training split is compare_methods.json's own runs (the size "all").
Augmentation (minipeft.lab.perturb): each training snippet plus one changed copy (word dropout p = 0.1, one swap of
neighbouring words, or every word of the synonym table swapped), at 64 and 256 snippets, the same draws and number
of steps, one final run at the learning rate the same method chose on the same draw without augmentation: a paired
comparison that changes only the training rows (a search of its own would cost 5× and add its noise to the
difference). The effect is measured draw by draw: augmented minus plain test accuracy, mean over draws with a
t interval (draws are the unit: they vary far more than the ±1.1 points of the test split).
Cells are run draw by draw (every size's first draw before any size's second; an augmented cell right after its
plain one), so a run stopped part-way has traced whole curves. Each (size, draw, augmentation) cell has its own
file; a job (one method in one cell) writes run by run to a part file that is merged into the cell's file when the
job ends: a rerun resumes. `--workers N` runs N jobs at once, one process each, an augmented job only once its
plain job is in. On the 2-core CPU, draw 0 of 64, 256 and 1,024 snippets took 4.2 CPU hours; the whole plan needs
about 30 (n = 4,096 alone ~15): a GPU, or a many-core machine, with `--workers 12` is the way to finish it.
"""
import argparse
import json
import math
import re
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from datasets import concatenate_datasets

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare_methods as cm  # noqa: E402  (same settings, grids and data)
from workers import in_workers  # noqa: E402

from minipeft.lab import load_encoder, load_task, subsample  # noqa: E402
from minipeft.lab.compare import compare, merge, save, summarize  # noqa: E402
from minipeft.lab.course import threads  # noqa: E402
from minipeft.lab.perturb import perturbed, swap_neighbours, synonym, word_dropout  # noqa: E402

SIZES, DRAWS = [16, 64, 256, 1024, 4096], {16: 5, 64: 5, 256: 5, 1024: 3, 4096: 3}
METHODS = ["linear probe (mean)", "full fine-tuning", "BitFit", "LoRA r=8", "Pfeiffer adapters r=8",
           "prefix tuning k=20", "prompt tuning k=20"]
AUGMENTATIONS = {"word dropout": (word_dropout, {"p": 0.1}), "neighbour swap": (swap_neighbours, {"n": 1}),
                 "synonyms": (synonym, {"every": True})}
AUGMENT_SIZES = [64, 256]
REFERENCE = "full fine-tuning"  # what the others are compared with, draw by draw
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


def summary(folder: Path, conf: dict, plan: list) -> dict:
    """small_data.json: the protocol, what was planned, how much of it is in, and the curves so far."""
    labels = [m["label"] for m in conf["methods"]]
    done = [cell for cell in plan if cell_done(folder / f"{cell_name(*cell)}.json", labels)]
    augmented = sorted({a for _, _, a in plan if a})
    return {"protocol": __doc__, "planned": {"methods": labels,
                                             "draws": {str(n): conf["draws"][n] for n in conf["sizes"]},
                                             "augmentations": augmented,
                                             "augment_sizes": conf["augment_sizes"] if augmented else [],
                                             "cells": len(plan)},
            "cells_done": len(done), "complete": len(done) == len(plan), "rows": curves(folder),
            "reference": REFERENCE, "vs_reference": versus_reference(folder),
            "augmentation": augmentation_effects(folder)}


def paired_over_draws(tests: dict, reference: dict) -> dict | None:
    """{draw: test accuracy} minus {draw: reference accuracy} on the draws both have (the same training rows and
    test split, so a draw's own luck cancels): draws, gains, their mean and a 95 % t interval over draws (None from
    one draw); None where no draw is shared."""
    paired = sorted(d for d in tests if d in reference)
    if not paired:
        return None
    gains = [tests[d] - reference[d] for d in paired]
    mean = statistics.fmean(gains)
    half = (T_95[len(gains) - 1] * statistics.stdev(gains) / math.sqrt(len(gains))) if len(gains) > 1 else None
    return {"draws": paired, "gains": gains, "mean": mean,
            "interval": [mean - half, mean + half] if half is not None else None}


def by_cell(folder: Path) -> dict:
    """{(method, size, augmentation): {draw: test accuracy}} of every final run in."""
    return {(r["label"], r["n"], r["augmentation"]): dict(zip(r["draws"], r["test"])) for r in curves(folder)}


def augmentation_effects(folder: Path) -> list[dict]:
    """One row per (method, size, augmentation): augmented minus plain test accuracy, paired_over_draws."""
    cells = by_cell(folder)
    rows = [{"label": label, "n": n, "augmentation": augmentation,
             **(paired_over_draws(tests, cells.get((label, n, None), {})) or {})}
            for (label, n, augmentation), tests in cells.items() if augmentation is not None]
    return [row for row in rows if "gains" in row]


def versus_reference(folder: Path, reference: str = REFERENCE) -> list[dict]:
    """One row per (method, size), without augmentation: the method minus `reference` (full fine-tuning) on the
    same draws, paired_over_draws. Which method to use with n labels is a question about these differences, not
    about the curves' means, whose spread is mostly the draws'."""
    cells = by_cell(folder)
    rows = [{"label": label, "n": n, **(paired_over_draws(tests, cells.get((reference, n, None), {})) or {})}
            for (label, n, augmentation), tests in cells.items() if augmentation is None and label != reference]
    return [row for row in rows if "gains" in row]


T_95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}  # t(0.975, df)


def cell_name(n: int, d: int, augmentation: str | None) -> str:
    return f"n{n}_draw{d}" + (f"_{augmentation.replace(' ', '_')}" if augmentation else "")


def cell_done(path: Path, labels: list[str]) -> bool:
    """Whether a cell's file holds a final run of every method in `labels` (an augmented cell's summary lists only
    the methods whose plain run is in, so its own rows are not enough)."""
    rows = {row["label"]: row["seeds"] for row in json.loads(path.read_text())["summary"]} if path.exists() else {}
    return all(rows.get(label) for label in labels)


def ordered(sizes: list, draws: dict, augment_sizes: list) -> list[tuple]:
    """The cells (n, draw, augmentation), draw by draw: every size has its first draw before any has its second, so
    that a run stopped part-way has already traced a whole curve; each augmented cell right after its plain one."""
    return [(n, d, a) for d in range(max(draws[n] for n in sizes)) for n in sizes if d < draws[n]
            for a in [None, *(AUGMENTATIONS if n in augment_sizes else [])]]


def cell_methods(conf, folder: Path, n: int, d: int, augmentation: str | None) -> list[dict]:
    """The methods of a cell: as configured for a plain cell; for an augmented one, each method whose plain run of
    the same draw is in, at the learning rate that run chose (a fixed "lr": no search)."""
    if augmentation is None:
        return conf["methods"]
    plain = folder / f"{cell_name(n, d, None)}.json"
    chosen = {row["label"]: row["lr"] for row in json.loads(plain.read_text())["summary"] if row["seeds"]} \
        if plain.exists() else {}
    return [{**{k: v for k, v in m.items() if k != "lrs"}, "lr": chosen[m["label"]]}
            for m in conf["methods"] if m["label"] in chosen]


def setup(quick: bool) -> dict:
    """The data, methods, sizes, draws and minimum steps of a run (--quick: 2 methods, 2 sizes, a few steps)."""
    task = load_task("rotten_tomatoes")
    conf = {"task": task, "methods": [cm.BY_LABEL[label] for label in METHODS], "sizes": SIZES, "draws": DRAWS,
            "augment_sizes": AUGMENT_SIZES, "min_steps": 200}
    if quick:
        conf |= {"task": {**task, "test": subsample(task["test"], 32)}, "sizes": [8, 16], "draws": {8: 2, 16: 1},
                 "augment_sizes": [8], "min_steps": 4,
                 "methods": [{**cm.BY_LABEL[label], "lrs": cm.BY_LABEL[label]["lrs"][1:3]}
                             for label in ("LoRA r=8", "BitFit")]}
    return conf


def run_job(conf, backbone, tokenizer, folder: Path, n: int, d: int, augmentation: str | None, label: str,
            progress: bool = True) -> str:
    """One method in one (size, draw, augmentation) cell: its search and final run, into a part file that resumes
    and reuses what the cell's file already holds; merge_part then moves it into the cell's file."""
    name = cell_name(n, d, augmentation)
    cell = folder / f"{name}.json"
    methods = [m for m in cell_methods(conf, folder, n, d, augmentation) if m["label"] == label]
    if not methods:
        raise ValueError(f"{name}, {label}: the plain cell {cell_name(n, d, None)} has no final run of {label} yet; "
                         f"an augmented run uses the learning rate that run chose, so run the plain cell first")
    batch = min(cm.SETTINGS["batch_size"], n)
    data = draw(conf["task"], n, d, augmentation)
    steps = budget(len(data["train"]), batch, min_steps=conf["min_steps"])  # augmented: as many steps, half the epochs
    compare(methods, data, ["text"],
            backbone, tokenizer, part_path(folder, name, label), search=steps, final=steps, seeds=1,
            batch_size=batch, max_length=cm.SETTINGS["max_length"], task="rotten_tomatoes", model="all-MiniLM-L6-v2",
            n=n, draw=d, augmentation=augmentation, threads=torch.get_num_threads(), progress=progress,
            reuse=cell if cell.exists() else None)
    return f"{name}, {label}: {steps}"


def part_path(folder: Path, name: str, label: str) -> Path:
    return folder / "parts" / f"{name}__{re.sub(r'[^A-Za-z0-9=.]+', '_', label)}.json"


def merge_part(conf, folder: Path, n: int, d: int, augmentation: str | None, label: str) -> None:
    """Move a job's runs from its part file into its cell's file (only the parent process writes cell files)."""
    cell = folder / f"{cell_name(n, d, augmentation)}.json"
    part = part_path(folder, cell.stem, label)
    new = json.loads(part.read_text())
    results = json.loads(cell.read_text()) if cell.exists() else {**new, "runs": []}
    merge(results, new)
    methods = cell_methods(conf, folder, n, d, augmentation)
    results["summary"] = summarize(methods, {r["key"]: r for r in results["runs"]}, 1, None)
    save(results, cell)
    part.unlink()


def jobs(conf, folder: Path, plan: list) -> list[tuple]:
    """(n, draw, augmentation, method) for every method not yet done in its cell, in the plan's order: the unit a
    worker trains."""
    done = set()
    for n, d, augmentation in plan:
        path = folder / f"{cell_name(n, d, augmentation)}.json"
        if path.exists():
            done |= {(n, d, augmentation, row["label"]) for row in json.loads(path.read_text())["summary"]
                     if row["seeds"]}
    return [(*cell, m["label"]) for cell in plan for m in conf["methods"] if (*cell, m["label"]) not in done]


_WORKER = {}


def _start_worker(quick: bool, folder: Path) -> None:
    """A --workers process: its data and encoder, loaded once."""
    torch.set_num_threads(threads())
    _WORKER.update(conf=setup(quick), folder=folder, model=load_encoder())


def _worker_job(job) -> str:
    backbone, tokenizer = _WORKER["model"]
    return run_job(_WORKER["conf"], backbone, tokenizer, _WORKER["folder"], *job, progress=False)


def next_ready(todo: list, running) -> tuple | None:
    """The first job of `todo` that can start now: a plain job, or an augmented one whose plain job (same size, draw
    and method) is neither waiting nor running."""
    waiting = {(n, d, label) for n, d, a, label in [*todo, *running] if a is None}
    return next((job for job in todo if job[2] is None or (job[0], job[1], job[3]) not in waiting), None)


def run_plan(plan, conf, quick: bool, workers: int, folder: Path, out: Path, sizes=None) -> None:
    """Every method of every cell of `plan` (only the cells of `sizes`, if given), in this process or in `workers`
    processes (one job = one method in one cell, so that a GPU's many workers stay busy); each job is merged into
    its cell's file, then small_data.json, which counts the cells in against the whole plan, is written."""
    todo = [job for job in jobs(conf, folder, plan) if sizes is None or job[0] in sizes]
    if workers:
        def done(job, future):
            print(f"== {future.result()}", flush=True)
            merge_part(conf, folder, *job)
            save(summary(folder, conf, plan), out)  # partial until every cell is in: it says how much

        in_workers(todo, workers, _start_worker, (quick, folder), _worker_job, done, ready=next_ready)
    else:
        backbone, tokenizer = load_encoder()
        for job in todo:
            print(f"== {run_job(conf, backbone, tokenizer, folder, *job)}", flush=True)
            merge_part(conf, folder, *job)
            save(summary(folder, conf, plan), out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--plain", action="store_true", help="the learning curves only, no augmented runs")
    parser.add_argument("--workers", type=int, default=0,
                        help="run this many (size, draw) cells at once, one process each (a GPU, or many cores)")
    parser.add_argument("--sizes", type=int, nargs="+", metavar="N",
                        help="train only the cells of these sizes (e.g. --sizes 64 256: more draws where the "
                             "augmentations are measured); small_data.json still counts against the whole plan")
    parser.add_argument("--summarize", action="store_true",
                        help="train nothing: write small_data.json from the cells' files (saying how many are in)")
    args = parser.parse_args(argv)
    torch.set_num_threads(threads())
    conf = setup(args.quick)
    folder = Path(tempfile.mkdtemp()) if args.quick else FOLDER
    out = folder / "small_data.json" if args.quick else cm.ROOT / "data" / "results" / "small_data.json"
    plan = ordered(conf["sizes"], conf["draws"], [] if args.plain else conf["augment_sizes"])
    if args.sizes and not set(args.sizes) <= set(conf["sizes"]):
        parser.error(f"--sizes: the plan's sizes are {conf['sizes']}, not {sorted(set(args.sizes))}")
    if not args.summarize:
        run_plan(plan, conf, args.quick, args.workers, folder, out, args.sizes)
    save(summary(folder, conf, plan), out)
    for row in curves(folder):
        print(f"{row['label']:<24} n={row['n']:<5} {row['augmentation'] or '':<15} "
              f"{100 * row['mean']:.1f} ± {100 * row['std']:.1f} ({len(row['test'])} draws)")
    for row in augmentation_effects(folder):
        print(f"{row['label']:<24} n={row['n']:<5} {row['augmentation']:<15} {100 * row['mean']:+.1f} points "
              f"({len(row['gains'])} draws)")
    return out


if __name__ == "__main__":
    main()
