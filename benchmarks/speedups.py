"""What each of minipeft's three training defaults saves in time, and that it costs no accuracy.

    python benchmarks/speedups.py          → data/results/speedups.json (after compare_methods.py; resumes)
    python benchmarks/speedups.py --quick  tiny data, a few steps, into a temporary folder (a smoke test)

The defaults (minipeft.train): length-grouped batches, bf16 autocast where the CPU has bf16 units, no dropout in a
frozen base. Two measurements, MiniLM on Rotten Tomatoes, LoRA r = 8 (query, value) and full fine-tuning:

    time      seconds per training step of every combination, side by side in one process (the set-ups take
              turns over their own 8 batches, 4 rounds, the first a warm-up; batch 32, snippets cut at 64
              tokens): random batches fp32 with dropout (what a plain loop does) → + length grouping → + bf16 →
              + no dropout in the frozen base (LoRA only: fine-tuning trains the base, so its dropout stays on).
    accuracy  the comparison's final runs (3 seeds, compare_methods.py's budget and learning rates) with one
              default switched back: fp32 instead of bf16 (both methods), dropout on in LoRA's frozen base,
              dropout off in fine-tuning's base; for LoRA also random batches instead of length-grouped ones and
              no warm-up instead of 10 %. With fp32 and dropout on, these are the four ways Trainer's recipe
              differs from minipeft's in time_to_accuracy.py: which of them, if any, explains why it learned more
              per step. The runs with every default are made on this CPU too: seed 0 is compare_methods.json's
              CPU run, seeds 1 and 2 are trained here (the comparison's own seeds 1 and 2 ran on a GPU, and a
              device changes a run about as much as a seed does: a switch is compared on one device). Each switch
              is reported as the paired difference in test accuracy on the same 1,265 snippets with its 95 %
              bootstrap interval (over snippets and seeds).
    --seeds 2 --out F trains one seed into another file (a second process); --summarize --merge F merges it.
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

from minipeft.lab import load_encoder, load_task, subsample  # noqa: E402
from minipeft.lab.compare import build, compare, merge, paired_difference, run_key, save, text_to_hits  # noqa: E402
from minipeft.lab.course import threads  # noqa: E402
from minipeft.lab.measure import time_steps_side_by_side  # noqa: E402
from minipeft.batching import make_loader  # noqa: E402

PAIR = ("full fine-tuning", "LoRA r=8")
SWITCHES = {"fp32": {"precision": "fp32"}, "dropout on": {"base_dropout": True}, "dropout off": {"base_dropout": False},
            "random batches": {"group_by_length": False}, "no warm-up": {"warmup": 0.0}}
ABLATIONS = {"full fine-tuning": ["fp32", "dropout off"],
             "LoRA r=8": ["fp32", "dropout on", "random batches", "no warm-up"]}


def timing(data, backbone, tokenizer, settings, rounds=4, n_batches=8, progress=True) -> dict:
    """Seconds per step of each combination of the levers, side by side."""
    loaders = {grouped: make_loader(data["train"], tokenizer, ["text"], settings["batch_size"], settings["max_length"],
                                    shuffle=True, seed=0, group_by_length=grouped) for grouped in (False, True)}
    batches = {grouped: [b for b, _ in zip(loader, range(n_batches))] for grouped, loader in loaders.items()}
    levels = [("random batches, fp32, dropout on", False, "fp32", True), ("+ length grouping", True, "fp32", True),
              ("+ bf16 autocast", True, "bf16", True), ("+ no dropout in the frozen base", True, "bf16", False)]
    setups = {}
    for label in PAIR:
        torch.manual_seed(0)
        model = build(cm.BY_LABEL[label], backbone)
        for level, grouped, precision, dropout in levels:
            if label == "full fine-tuning" and not dropout:
                continue  # fine-tuning trains the base: its dropout is a regulariser, not noise on a frozen model
            setups[f"{label} | {level}"] = {"model": model, "batches": batches[grouped], "precision": precision,
                                            "base_dropout": dropout}
    load = os.getloadavg()[0]
    seconds = time_steps_side_by_side(setups, rounds=rounds, progress=progress)
    rows = {name: {"seconds_per_step": statistics.median(times), "steps_timed": len(times),
                   "tokens_per_batch": statistics.fmean(b["input_ids"].shape[1] for b in setups[name]["batches"])}
            for name, times in seconds.items()}
    for name, row in rows.items():
        row["speedup_vs_plain"] = rows[f"{name.split(' | ')[0]} | {levels[0][0]}"]["seconds_per_step"] / row[
            "seconds_per_step"]
    return {"rows": rows, "rounds": rounds, "load_average_before": load, "load_average_after": os.getloadavg()[0],
            "utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "threads": torch.get_num_threads()}


def ablation_methods(chosen: dict[str, float]) -> list[dict]:
    """The default runs (copied from compare_methods.json) and the runs with one default switched back."""
    methods = []
    for label in PAIR:
        config = {k: v for k, v in cm.BY_LABEL[label].items() if k != "lrs"} | {"lr": chosen[label]}
        methods.append(config)
        methods += [{**config, "label": f"{label}, {switch}", "train": SWITCHES[switch]} for switch in ABLATIONS[label]]
    return methods


def differences(results: dict, methods: list[dict], seeds: int, defaults=()) -> dict:
    """{"LoRA r=8, fp32": paired difference (switched − default)} over the seeds both have; `defaults`: more runs
    (compare_methods.json's) to find the default runs in."""
    runs = {r["key"]: r for r in [*defaults, *results["runs"]]}

    def hits(config):
        keys = [run_key(config, config["lr"], s, "final") for s in range(seeds)]
        return [text_to_hits(runs[k]["test_hits"]) for k in keys if k in runs]

    out = {}
    for config in methods:
        if "train" in config:
            default = next(m for m in methods if m["label"] == config["label"].split(", ")[0])
            switched, base = hits(config), hits(default)
            if switched and base:
                out[config["label"]] = paired_difference(switched, base)
    return out


def cpu_runs(path: Path) -> Path:
    """A temporary copy of the comparison file `path` holding only its runs made on a CPU (its main runs and its
    device_check): the default runs an ablation made on this CPU is paired with, so that a difference measures the
    switch, not the device (a GPU run of the same seed is another run: compare_methods.json's device_check)."""
    results = json.loads(path.read_text())
    runs = [*results["runs"], *results.get("device_check", {}).get("runs", [])]
    results["runs"] = [r for r in runs if r.get("device", "cpu").startswith("cpu")]
    copy_path = Path(tempfile.mkdtemp()) / path.name
    copy_path.write_text(json.dumps(results))
    return copy_path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--timing-only", action="store_true",
                        help="measure the step times only (minutes), not the accuracy ablations (hours)")
    parser.add_argument("--only", nargs="+", metavar="LABEL", default=[],
                        help="train only these runs (e.g. 'LoRA r=8, dropout on', or 'LoRA r=8': the default); "
                             "default runs made on the CPU are copied from compare_methods.json")
    parser.add_argument("--seeds", nargs="+", type=int, metavar="SEED",
                        help="train only these seeds' runs (e.g. one seed per process, merged afterwards)")
    parser.add_argument("--out", type=Path, help="JSON file (default: data/results/speedups.json)")
    parser.add_argument("--summarize", action="store_true",
                        help="train nothing: merge the --merge files into the results and recompute the differences")
    parser.add_argument("--merge", nargs="+", type=Path, default=[],
                        help="with --summarize: files written by other processes (--seeds ... --out ...)")
    args = parser.parse_args(argv)
    torch.set_num_threads(threads())
    task = load_task("rotten_tomatoes")
    settings, search, final, data = dict(cm.SETTINGS), cm.SEARCH, cm.FINAL, dict(task)
    earlier = cm.ROOT / "data" / "results" / "compare_methods.json"
    out = cm.ROOT / "data" / "results" / "speedups.json"
    if args.quick:
        chosen, earlier, out = {label: 1e-3 for label in PAIR}, None, Path(tempfile.mkdtemp()) / "speedups.json"
        data = {"train": subsample(task["train"], 64), "validation": subsample(task["validation"], 32),
                "test": subsample(task["test"], 32)}
        settings.update(seeds=1)
        search, final = {"epochs": 1, "eval_every": 1}, {"epochs": 1, "eval_every": 1, "patience": 2}
    else:
        chosen = {row["label"]: row["lr"] for row in json.loads(earlier.read_text())["summary"]}
        earlier = cpu_runs(earlier)
    backbone, tokenizer = load_encoder()
    methods = ablation_methods(chosen)
    unknown = set(args.only) - {m["label"] for m in methods}
    if unknown:
        raise SystemExit(f"--only: no run labelled {sorted(unknown)}; the labels are {[m['label'] for m in methods]}")
    out = args.out or out
    previous = json.loads(out.read_text()) if out.exists() else {}
    if args.summarize:  # train nothing: merge other processes' files, then recompute the differences
        results = previous
        for path in args.merge:
            merge(results, json.loads(path.read_text()))
    elif args.timing_only:
        results = previous or {"settings": settings, "runs": []}
    else:
        trained = [m for m in methods if m["label"] in args.only] if args.only else methods
        results = compare(trained, data, ["text"], backbone, tokenizer, out, search=search, final=final,
                          reference=None, task="rotten_tomatoes", model="all-MiniLM-L6-v2",
                          threads=torch.get_num_threads(), reuse=earlier, train_seeds=args.seeds, **settings)
    defaults = json.loads(earlier.read_text())["runs"] if earlier else []
    results["differences"] = differences(results, methods, settings["seeds"], defaults)
    results["planned"] = [m["label"] for m in methods if "train" in m]  # the report names what is still missing
    if "timing" not in results:
        results["timing"] = timing(data, copy.deepcopy(backbone), tokenizer, settings, rounds=2 if args.quick else 4,
                                   n_batches=1 if args.quick else 8)
    save(results, out)
    for name, row in results["timing"]["rows"].items():
        print(f"{name:<60} {row['seconds_per_step']:.3f} s/step  ×{row['speedup_vs_plain']:.2f}")
    for name, gap in results["differences"].items():
        print(f"{name:<30} {100 * gap['difference']:+.2f} points [{100 * gap['low']:+.2f}, {100 * gap['high']:+.2f}]")
    return out


if __name__ == "__main__":
    main()
