"""Compare methods fairly: the same data, the same step budget, the same seeds, a learning rate tuned per method.

    for each method:  seed 0 at every learning rate of its grid ─▶ keep the lr with the best validation accuracy
                      seeds 1 .. N-1 at that lr                  ─▶ test accuracy, mean ± std over the N seeds

A method is a dict: {"label": "LoRA r=8", "method": "lora", "kwargs": {"r": 8}, "lrs": [5e-4, 1e-3]} and
optionally "classifier": {"pooling": "cls", "head": "mlp"}. "method" is "probe" (kwargs = the Classifier's
options), or a key of saving.METHODS (kwargs = its apply function's), applied to Classifier(copy of the backbone).
Every run is appended to the JSON file as soon as it ends; running again skips the runs already there, so an
interrupted benchmark resumes where it stopped. The std is the sample standard deviation over seeds (0 for one).

    python -m minipeft.compare --task rotten_tomatoes --steps 200 --seeds 3 --out runs/compare.json
"""
import argparse
import copy
import importlib
import json
import statistics
from pathlib import Path

import torch

from .probing import Classifier, apply_probe
from .saving import METHODS
from .train import evaluate, make_loader, train

DEFAULT_METHODS = [
    {"label": "linear probe", "method": "probe", "kwargs": {}, "lrs": [1e-3, 3e-3]},
    {"label": "LoRA r=8", "method": "lora", "kwargs": {"r": 8, "alpha": 16}, "lrs": [5e-4, 1e-3]},
    {"label": "BitFit", "method": "bitfit", "kwargs": {}, "lrs": [1e-3, 3e-3]},
]


def build(method: str, kwargs: dict, backbone, num_labels: int = 2, classifier: dict | None = None):
    """A Classifier over a deep copy of `backbone` (left untouched), with `method` applied."""
    if method == "probe":
        return apply_probe(copy.deepcopy(backbone), num_labels, **kwargs)
    if method not in METHODS:
        raise KeyError(f"unknown method {method!r}; choose 'probe' or one of {sorted(METHODS)}")
    model = Classifier(copy.deepcopy(backbone), num_labels, **(classifier or {}))
    module, function = METHODS[method]
    getattr(importlib.import_module(module), function)(model, **kwargs)
    return model


def run_key(config: dict, lr: float, seed: int) -> str:
    """What makes two runs the same run (so that a changed configuration is run again)."""
    fields = [config["label"], config["method"], config.get("kwargs", {}), config.get("classifier"), lr, seed]
    return json.dumps(fields, sort_keys=True)


def compare(methods, data, fields, backbone, tokenizer, out, *, steps, seeds=3, batch_size=32, max_length=64,
            eval_every=None, patience=None, progress=True, reuse=None, **notes) -> dict:
    """Train every method under one budget; `data` is a DatasetDict with train/validation/test. Writes and
    returns {"settings", "runs", "summary"}; extra `notes` (e.g. the time budget) go into the settings.
    `reuse`: the JSON file of another comparison on the same data and budget (its number of seeds and notes may
    differ); a run it already holds (same method, learning rate and seed) is copied instead of trained again."""
    out = Path(out)
    settings = {"steps": steps, "seeds": seeds, "batch_size": batch_size, "max_length": max_length,
                "eval_every": eval_every, "patience": patience, "fields": list(fields),
                "sizes": {split: len(ds) for split, ds in data.items()}, **notes}
    settings = json.loads(json.dumps(settings))  # as it reads back from the file (tuples become lists)
    results = json.loads(out.read_text()) if out.exists() else {"settings": settings, "runs": []}
    if results["settings"] != settings:
        raise ValueError(f"{out} holds runs made with other settings ({results['settings']}); "
                         f"delete it or write to another file")
    done = {run["key"]: run for run in results["runs"]}
    earlier = {run["key"]: run for run in reusable_runs(reuse, settings)}
    num_labels = max(data["train"]["label"]) + 1
    loaders = {split: make_loader(data[split], tokenizer, fields, batch_size, max_length, shuffle=split == "train")
               for split in ("train", "validation", "test")}

    def train_run(config, lr, seed, key):
        if progress:
            print(f"{config['label']}: lr {lr:g}, seed {seed}")
        torch.manual_seed(seed)  # the head's and the adapters' initial values
        model = build(config["method"], config.get("kwargs", {}), backbone, num_labels, config.get("classifier"))
        history, stats = train(model, loaders["train"], loaders["validation"], lr=lr, steps=steps, seed=seed,
                               eval_every=eval_every, patience=patience, progress=progress)
        return {"key": key, "label": config["label"], "method": config["method"], "lr": lr, "seed": seed,
                "validation": stats["best_metric"], "test": evaluate(model, loaders["test"]),
                "history": history, "stats": stats}

    def run(config, lr, seed):
        key = run_key(config, lr, seed)
        if key not in done:
            done[key] = earlier.get(key) or train_run(config, lr, seed, key)  # copied if another comparison has it
            results["runs"].append(done[key])
            save(results, out)
        return done[key]

    results["summary"] = []
    for config in methods:
        tuned = [run(config, lr, 0) for lr in config["lrs"]]
        best = max(tuned, key=lambda r: r["validation"])  # the first of equals: grids go low to high
        chosen = [best] + [run(config, best["lr"], seed) for seed in range(1, seeds)]
        results["summary"].append(summary_row(best, chosen))
        save(results, out)
    return results


def reusable_runs(path, settings: dict) -> list:
    """The runs in the results file `path` if they were made on the same data with the same budget."""
    if path is None or not Path(path).exists():
        return []
    other = json.loads(Path(path).read_text())
    same = ("steps", "batch_size", "max_length", "eval_every", "patience", "fields", "sizes")
    differ = {k: (other["settings"].get(k), settings[k]) for k in same if other["settings"].get(k) != settings[k]}
    if differ:
        raise ValueError(f"cannot reuse the runs of {path}: made with other settings {differ}")
    return other["runs"]


def summary_row(best: dict, chosen: list) -> dict:
    """A method at its chosen learning rate: test mean ± std over the seeds, the cost figures of seed 0."""
    test = [r["test"] for r in chosen]
    costs = {k: best["stats"][k] for k in ("trainable_params", "seconds_per_step", "memory_mb", "adapter_bytes")}
    return {"label": best["label"], "method": best["method"], "lr": best["lr"], "seeds": len(chosen),
            "test_mean": statistics.fmean(test), "test_std": statistics.stdev(test) if len(test) > 1 else 0.0,
            "validation": best["validation"], **costs}


def save(results: dict, out: Path) -> None:
    """Write through a temporary file, so an interrupted write never leaves half a JSON behind."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(out)


def main(argv=None):
    from .data import TASKS, load_task, subsample
    from .models import load_encoder
    parser = argparse.ArgumentParser(description="Compare methods on one task (MiniLM encoder).")
    parser.add_argument("--task", default="rotten_tomatoes", choices=list(TASKS))
    parser.add_argument("--methods", help="JSON list of method dicts, or a path to such a file")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--n-train", type=int, default=4000)
    parser.add_argument("--n-eval", type=int, default=1000, help="validation and test rows")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--out", default="runs/compare.json")
    args = parser.parse_args(argv)
    methods = DEFAULT_METHODS if args.methods is None else json.loads(
        Path(args.methods).read_text() if Path(args.methods).exists() else args.methods)
    task = load_task(args.task)
    sizes = {"train": args.n_train, "validation": args.n_eval, "test": args.n_eval}
    data = {split: subsample(task[split], n) for split, n in sizes.items()}
    backbone, tokenizer = load_encoder()
    results = compare(methods, data, TASKS[args.task]["fields"], backbone, tokenizer, args.out, steps=args.steps,
                      seeds=args.seeds, batch_size=args.batch_size, max_length=args.max_length, task=args.task)
    for row in results["summary"]:
        print(f"{row['label']:<24} {row['trainable_params']:>12,} params  lr {row['lr']:<8g} "
              f"test {row['test_mean']:.3f} ± {row['test_std']:.3f}")


if __name__ == "__main__":
    main()
