"""LoRA's scale α/r against rsLoRA's α/√r as the rank grows, at one learning rate: what each learns per rank.

    python benchmarks/rslora_sweep.py           → data/results/rslora_sweep.json (resumes if interrupted)
    python benchmarks/rslora_sweep.py --quick   → 2 configurations, a few steps, into a temporary folder

Kalajdzievski (2023, "A Rank Stabilization Scaling Factor for Fine-Tuning with LoRA") argued that with a fixed α the
usual scale α/r makes large ranks learn slower (the update, and B's gradient, shrink as r grows) and that α/√r keeps
them learning. The sweep: LoRA on query, value of MiniLM, ranks 1, 4, 16, 64, with a fixed α as people use LoRA —
α = 16 for α/r and α = 2√8 for α/√r, so that both have the scale 2 at r = 8, which is compare_methods.py's tuned
LoRA r = 8 (α = 2r = 16) and its run at r = 8 serves both. The learning rate is the one compare_methods.py chose for
LoRA r = 8, not searched again per rank: the paper's setting (one rate, the scale does the rest). Rotten Tomatoes
under compare_methods.py's final budget (up to 4 epochs, validation 4 times an epoch, early stopping), seeds 0 and 1.
Also written: the size of the update s·BA relative to W after the first 8 training steps, per rank and scale
(layer 0's query; the quantity the paper's argument is about).
"""
import copy
import json
import math
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare_methods as cm  # noqa: E402  (same settings, same data preparation)

from minipeft.batching import make_loader  # noqa: E402
from minipeft.lab import load_encoder  # noqa: E402
from minipeft.lab.compare import build, compare, save  # noqa: E402
from minipeft.train import train  # noqa: E402

RANKS, ANCHOR = [1, 4, 16, 64], 8
RS_ALPHA = 2 * math.sqrt(ANCHOR)  # α/√r = 2 at r = 8, as α/r = 16/8


def sweep(lr: float, ranks=RANKS) -> list[dict]:
    """LoRA α = 16 (scale 16/r) and rsLoRA α = 2√8 (scale 2√8/√r) at every rank, one learning rate; the two
    scales side by side, the end ranks first (a stopped sweep then has the widest comparison)."""
    order = sorted(ranks, key=lambda r: (r not in (min(ranks), max(ranks)), r))
    return [config for r in order for config in (
        {"label": f"LoRA α/r r={r}", "method": "lora", "lr": lr,
         "kwargs": {"targets": ["query", "value"], "r": r, "alpha": 16}},
        {"label": f"rsLoRA α/√r r={r}", "method": "lora", "lr": lr,
         "kwargs": {"targets": ["query", "value"], "r": r, "alpha": RS_ALPHA, "rslora": True}})]


def update_sizes(methods, data, backbone, tokenizer, settings, steps: int) -> dict:
    """‖s·BA‖ / ‖W‖ on layer 0's query after `steps` training steps, for every configuration (seed 0)."""
    loader = make_loader(data["train"], tokenizer, ["text"], settings["batch_size"], settings["max_length"],
                         shuffle=True, seed=0)
    sizes = {}
    for config in methods:
        torch.manual_seed(0)
        model = build(config, backbone)
        train(model, loader, lr=config["lr"], steps=steps, warmup=0.0, seed=0, progress=False)
        layer = model.backbone.encoder.layer[0].attention.self.query  # a LoRALinear
        (lora,) = layer.adapters.values()
        sizes[config["label"]] = (lora.delta_weight().norm() / layer.base.weight.norm()).item()
    return sizes


def main(argv=None):
    args, task = cm.start(__doc__, argv)
    settings, final, data = dict(cm.SETTINGS, seeds=2), cm.FINAL, dict(task)
    out = cm.ROOT / "data" / "results" / "rslora_sweep.json"
    earlier = cm.ROOT / "data" / "results" / "compare_methods.json"
    anchor = None
    if args.quick:
        lr, out, earlier, steps = 1e-3, Path(tempfile.mkdtemp()) / "rslora_sweep.json", None, 2
        methods = sweep(lr, ranks=[1, 4])
        data = cm.quick_data(task)
        final = {"epochs": 1, "eval_every": 1, "patience": 2}
    else:
        anchor = next(row for row in json.loads(earlier.read_text())["summary"] if row["label"] == "LoRA r=8")
        lr, methods, steps = anchor["lr"], sweep(anchor["lr"]), 8
    backbone, tokenizer = load_encoder()
    extras = json.loads(out.read_text()) if out.exists() else {}  # minutes: measured first, kept in the file
    if "update_size" not in extras:
        extras["update_size"] = {"steps": steps, "layer": "encoder.layer.0.attention.self.query",
                                 "relative": update_sizes(methods, data, copy.deepcopy(backbone), tokenizer,
                                                          settings, steps)}
    extras["anchor"] = anchor and {"label": anchor["label"], "lr": anchor["lr"], "test": anchor["test_mean"],
                                   "seeds": anchor["seeds"]}
    if not out.exists():
        save({"settings": None, "runs": [], **extras}, out)  # compare() gives a file without runs its settings
    else:
        save({**json.loads(out.read_text()), **extras}, out)
    results = compare(methods, data, ["text"], backbone, tokenizer, out, search=cm.SEARCH, final=final,
                      reference=None, task="rotten_tomatoes", model="all-MiniLM-L6-v2",
                      threads=torch.get_num_threads(), anchor_rank=ANCHOR, rs_alpha=RS_ALPHA, **settings)
    for row in results["summary"]:
        print(f"{row['label']:<22} {row['trainable_params']:>9,} params  test {100 * row['test_mean']:.1f} "
              f"({row['seeds']} seeds)  update {results['update_size']['relative'][row['label']]:.2e}")
    return out


if __name__ == "__main__":
    main()
