"""Compare methods fairly: the same data and budget for every method, a learning rate searched per method until the
best lies inside the grid, several seeds at the chosen rate, and paired intervals on the same test examples.

    1. search   seed 0 at every learning rate of the method's grid, on the search budget; while the best
                validation accuracy sits at an end of the grid (strictly better than its neighbour), try one more
                rate beyond that end (× the grid's ratio). Every rate tried is recorded. Test is never looked at.
    2. final    seeds 0 .. N-1 at the chosen rate, on the final budget: validation every `eval_every` steps,
                the best weights kept, early stopping after `patience` evaluations without improvement.
    3. report   test accuracy, mean ± std over seeds; against a reference method (full fine-tuning): the
                difference on the same test examples with a 95 % bootstrap interval (paired_difference).

A method is a dict: {"label": "LoRA r=8", "method": "lora", "kwargs": {"r": 8}, "lrs": [3e-4, 1e-3, 3e-3, 1e-2]} (or
a fixed "lr": 1e-3 instead of "lrs": no search) and optionally "classifier": {"pooling": "cls", "head": "mlp"} and
"train": {"precision": "fp32"} (options of minipeft.train.train that override the comparison's). "method" is a key
of minipeft.METHODS; the method is applied to Classifier(copy of the backbone, **classifier). A budget is {"epochs":
..., "eval_every": ..., "patience": ...}. Every run is appended to the JSON file as soon as it ends; running again
skips the runs already there, so an interrupted comparison resumes where it stopped, and `summary[...]["complete"]`
says whether a method has all its runs.
"""
import copy
import json
import math
import statistics
from pathlib import Path

import torch

from ..methods import Classifier, method
from ..train import model_device, predictions, train
from ..batching import make_loader
from .bootstrap import hits_to_text, paired_difference, text_to_hits

MAX_EXTENSIONS = 4  # a search that would extend its grid further stops and is flagged "at_edge"


def build(config: dict, backbone, num_labels: int = 2):
    """A Classifier over a deep copy of `backbone` (left untouched) with the config's method applied."""
    model = Classifier(copy.deepcopy(backbone), num_labels, **(config.get("classifier") or {}))
    method(config["method"]).apply(model, **config.get("kwargs", {}))
    return model


def run_key(config: dict, lr: float, seed: int, phase: str) -> str:
    """What makes two runs the same run (so that a changed configuration is run again): label, method, kwargs,
    classifier, lr, seed, phase, and the config's training overrides if it has any."""
    fields = [config["label"], config["method"], config.get("kwargs", {}), config.get("classifier"), lr, seed, phase]
    return json.dumps(fields + ([config["train"]] if config.get("train") else []), sort_keys=True)


def next_rate(tried: dict[float, float], ratio: float) -> float | None:
    """The learning rate to try next, given {lr: validation accuracy} so far: one step beyond an end of the grid
    whose rate beats its neighbour, or None when the best lies inside (or ties its neighbour)."""
    rates = sorted(tried)
    if len(rates) < 2:
        return None
    best = max(rates, key=lambda lr: (tried[lr], -lr))  # the lowest of equals
    if best == rates[0] and tried[rates[0]] > tried[rates[1]]:
        return rates[0] / ratio
    if best == rates[-1] and tried[rates[-1]] > tried[rates[-2]]:
        return rates[-1] * ratio
    return None


def compare(methods, data, fields, backbone, tokenizer, out, *, search: dict, final: dict, seeds=3, batch_size=32,
            max_length=64, precision="auto", group_by_length=True, base_dropout=None, reference=None,
            progress=True, reuse=None, extra_tests=None, train_seeds=None, **notes) -> dict:
    """Search a learning rate for every method, then train `seeds` seeds at it; `data` holds train / validation /
    test. Writes and returns {"settings", "runs", "summary"}; extra `notes` go into the settings. `reference`: the
    label of the method the others are compared with (paired_difference). `reuse`: the JSON file of another
    comparison with the same data and budgets; a run it holds is copied instead of trained again. `extra_tests`:
    {name: (dataset, max_length)} that every final run trained here also predicts (robustness, other domains),
    kept in the run as "extra" {name: {"accuracy", "hits"}}; they are not settings, so a comparison can add them
    midway (the runs made before have none). `train_seeds`: which of the seeds' final runs this call trains (all by
    default; e.g. [1] in one of several processes that share the work, see merge). A config's "train" dict
    overrides train()'s options for that method (e.g. {"precision": "fp32"}, {"warmup": 0.0}) and may set
    "group_by_length" for its training batches; the overrides are part of its run keys."""
    out = Path(out)
    settings = {"search": search, "final": final, "seeds": seeds, "batch_size": batch_size, "max_length": max_length,
                "precision": precision, "group_by_length": group_by_length, "base_dropout": base_dropout,
                "fields": list(fields), "sizes": {split: len(ds) for split, ds in data.items()},
                "reference": reference, **notes}
    settings = json.loads(json.dumps(settings))  # as it reads back from the file (tuples become lists)
    results = json.loads(out.read_text()) if out.exists() else {"settings": settings, "runs": []}
    if not results["runs"]:  # no runs yet (e.g. only a timing): the file takes these settings, keeps its other keys
        results["settings"] = settings
    if results["settings"] != settings:
        raise ValueError(f"{out} holds runs made with other settings ({results['settings']}); "
                         f"delete it or write to another file")
    done = {run["key"]: run for run in results["runs"]}
    earlier = {run["key"]: run for run in reusable_runs(reuse, settings)}
    num_labels = max(data["train"]["label"]) + 1
    loaders = {split: make_loader(data[split], tokenizer, fields, batch_size, max_length, shuffle=split == "train",
                                  group_by_length=group_by_length) for split in ("train", "validation", "test")}
    extra = {name: make_loader(ds, tokenizer, fields, batch_size, length) for name, (ds, length) in
             (extra_tests or {}).items()}
    if extra:
        results["extra_tests"] = {name: {"examples": len(ds), "max_length": length}
                                  for name, (ds, length) in extra_tests.items()}

    def train_run(config, lr, seed, phase, key):
        if progress:
            print(f"{config['label']}: {phase}, lr {lr:g}, seed {seed}", flush=True)
        budget = search if phase == "search" else final
        torch.manual_seed(seed)  # the head's and the adapters' initial values
        model = build(config, backbone, num_labels)
        options = {"precision": precision, "base_dropout": base_dropout, **config.get("train", {})}
        grouped = options.pop("group_by_length", group_by_length)  # an override of the training batches' order
        train_loader = loaders["train"] if grouped == group_by_length else make_loader(
            data["train"], tokenizer, fields, batch_size, max_length, shuffle=True, group_by_length=grouped)
        history, stats = train(model, train_loader, loaders["validation"], lr=lr, seed=seed,
                               epochs=budget["epochs"], eval_every=budget.get("eval_every"),
                               patience=budget.get("patience"), progress=progress, **options)
        run = {"key": key, "phase": phase, "label": config["label"], "method": config["method"], "lr": lr,
               "seed": seed, "validation": stats["best_metric"], "history": history,
               "stats": {k: v for k, v in stats.items() if k != "step_seconds"} | {
                   "train_seconds": sum(stats["step_seconds"]),
                   "total_params": sum(p.numel() for p in model.parameters())}, "device": device_name(model)}
        if phase == "final":  # the test split is read only by final runs
            hits = predictions(model, loaders["test"])
            run |= {"test": hits.float().mean().item(), "test_hits": hits_to_text(hits)}
            if extra:
                run["extra"] = {name: {"accuracy": (h := predictions(model, loader)).float().mean().item(),
                                       "hits": hits_to_text(h)} for name, loader in extra.items()}
        return run

    def run(config, lr, seed, phase):
        key = run_key(config, lr, seed, phase)
        if key not in done:
            done[key] = earlier.get(key) or train_run(config, lr, seed, phase, key)
            results["runs"].append(done[key])
            results["summary"] = summarize(methods, done, seeds, reference)  # a partial file reads like a whole one
            save(results, out)
        return done[key]

    for config in methods:  # phase 1 for every method first: its results decide what phase 2 runs
        if "lr" not in config:
            search_rates(config, lambda lr, config=config: run(config, lr, 0, "search")["validation"])
    # phase 2 seed by seed: an interrupted comparison has every method at the first seeds
    for seed in range(seeds) if train_seeds is None else train_seeds:
        for config in methods:
            run(config, chosen_rate(config, done), seed, "final")
    results["summary"] = summarize(methods, done, seeds, reference)
    save(results, out)
    return results


def device_name(model) -> str:
    """Where a run trained, as the results file records it: "NVIDIA H200" or "cpu, 2 threads"."""
    device = model_device(model)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    threads = torch.get_num_threads()
    return f"cpu, {threads} thread{'s' if threads != 1 else ''}"


def merge(results: dict, other: dict) -> int:
    """Add to `results` the runs of `other` (a results file written by another process with the same settings)
    that it does not hold yet; return how many were added. Raises ValueError if the settings differ."""
    if other["settings"] != results["settings"]:
        differ = {k: (results["settings"].get(k), v) for k, v in other["settings"].items()
                  if results["settings"].get(k) != v}
        raise ValueError(f"cannot merge runs made with other settings: {differ}")
    have = {run["key"] for run in results["runs"]}
    new = [run for run in other["runs"] if run["key"] not in have]
    results["runs"] += new
    for name, spec in other.get("extra_tests", {}).items():
        results.setdefault("extra_tests", {})[name] = spec
    return len(new)


def search_rates(config: dict, validate) -> dict[float, float]:
    """{lr: validation accuracy} of the search: the grid, extended past an end while the best sits there."""
    grid = sorted(config["lrs"])
    step = round(math.log10(grid[-1] / grid[0]) / (len(grid) - 1), 3) if len(grid) > 1 else 0.5  # log10 of the ratio
    tried = {lr: validate(lr) for lr in grid}
    for _ in range(MAX_EXTENSIONS):
        lr = next_rate(tried, 10 ** step)
        if lr is None:
            break
        lr = float(f"{10 ** (round(math.log10(lr) / step) * step):.3g}")  # on the grid's lattice: 1e-5, not 9.99e-6
        tried[lr] = validate(lr)
    return tried


def search_runs(config: dict, done: dict) -> list[dict]:
    """The search runs of a method that are in `done`, in order of learning rate."""
    runs = [r for r in done.values() if r.get("phase") == "search" and json.loads(r["key"])[:4] == json.loads(
        run_key(config, 0, 0, "search"))[:4]]
    return sorted(runs, key=lambda r: r["lr"])


def chosen_rate(config: dict, done: dict) -> float:
    """The config's fixed "lr", or the learning rate with the best search validation accuracy (lowest of equals);
    None before its search has run."""
    if "lr" in config:
        return config["lr"]
    runs = search_runs(config, done)
    return max(runs, key=lambda r: (r["validation"], -r["lr"]))["lr"] if runs else None


def summarize(methods, done: dict, seeds: int, reference: str | None) -> list[dict]:
    """One row per method: the search, the chosen rate, test mean ± std over seeds, the paired difference to the
    reference, and the figures of seed 0's run (trainable parameters, steps, best step). A method whose runs are not
    all there yet (an interrupted comparison) has "complete" false and as many seeds as it has final runs."""
    rows, finals = [], {}
    for config in methods:
        lr = chosen_rate(config, done)
        runs = [done[k] for s in range(seeds) if (k := run_key(config, lr, s, "final")) in done]
        finals[config["label"]] = runs
        tried = {r["lr"]: r["validation"] for r in search_runs(config, done)}
        test = [r["test"] for r in runs]
        rows.append({"label": config["label"], "method": config["method"], "lr": lr,
                     "search": [[rate, accuracy] for rate, accuracy in sorted(tried.items())],
                     "at_edge": next_rate(tried, 1.0) is not None, "seeds": len(runs), "complete": len(runs) == seeds,
                     "test_mean": statistics.fmean(test) if test else math.nan,
                     "test_std": statistics.stdev(test) if len(test) > 1 else 0.0,
                     "validation_mean": statistics.fmean(r["validation"] for r in runs) if runs else math.nan,
                     "trainable_params": runs[0]["stats"]["trainable_params"] if runs else None,
                     "total_params": runs[0]["stats"]["total_params"] if runs else None,
                     "best_epoch": [r["stats"]["best_step"] / r["stats"]["steps_per_epoch"] for r in runs]})
    if reference in finals and finals[reference]:
        ref = [text_to_hits(r["test_hits"]) for r in finals[reference]]
        for row in rows:
            if finals[row["label"]] and row["label"] != reference:
                hits = [text_to_hits(r["test_hits"]) for r in finals[row["label"]]]
                row["vs_reference"] = paired_difference(hits, ref)
    return rows


def reusable_runs(path, settings: dict) -> list[dict]:
    """The runs in the results file `path` if they were made on the same data with the same budgets."""
    if path is None or not Path(path).exists():
        return []
    other = json.loads(Path(path).read_text())
    same = ("search", "final", "batch_size", "max_length", "precision", "group_by_length", "base_dropout", "fields",
            "sizes")
    differ = {k: (other["settings"].get(k), settings[k]) for k in same if other["settings"].get(k) != settings[k]}
    if differ:
        raise ValueError(f"cannot reuse the runs of {path}: made with other settings {differ}")
    return other["runs"]


def save(results: dict, out: Path) -> None:
    """Write through a temporary file, so an interrupted write never leaves half a JSON behind."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(out)
