"""Solutions for 08_comparison, computed from the rows (here: the example rows the checks are tested on; in the
notebook, pass the notebook's `measured` rows and `costs`)."""
from exercises.nb08 import _COSTS, _EXAMPLE, _RESULTS, FULL_MODEL_MB

from minipeft.lab.plots import pareto_frontier
from minipeft.lab.robustness import change_versus

summary, costs = _EXAMPLE, _COSTS
close = [r for r in summary if r["label"] == "full fine-tuning" or r["vs_reference"]["low"] >= -0.02]
smallest = min(close, key=lambda r: r["trainable_params"])["label"]
lora_bytes = costs["LoRA r=8"]["adapter_bytes"]
points = {(r["trainable_params"], r["test_mean"]): r["label"] for r in summary}
results = _RESULTS  # in the notebook: the committed results
labels = {r["label"] for r in results["runs"] if r["phase"] == "final" and "extra" in r} - {"full fine-tuning"}
lose_more = {label for label in labels
             if change_versus(results, label, "full fine-tuning", "typos", samples=2000)["high"] < 0}
ANSWERS = {
    "smallest_within_2_points": (smallest, summary),
    "storage": ((1000 * FULL_MODEL_MB, FULL_MODEL_MB + 1000 * lora_bytes / 2**20), costs),
    "frontier_labels": ({points[p] for p in pareto_frontier(points)}, summary),
    "lose_more_to_typos": (lose_more, results),
}
