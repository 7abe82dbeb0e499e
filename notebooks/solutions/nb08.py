"""Solutions for 08_comparison, computed from the rows (here: the example rows the checks are tested on; in the
notebook, pass the notebook's `measured` rows and `costs`)."""
from exercises.nb08 import _COSTS, _EXAMPLE, FULL_MODEL_MB

from minipeft.lab.plots import pareto_frontier

summary, costs = _EXAMPLE, _COSTS
close = [r for r in summary if r["label"] == "full fine-tuning" or r["vs_reference"]["low"] >= -0.02]
smallest = min(close, key=lambda r: r["trainable_params"])["label"]
lora_bytes = costs["LoRA r=8"]["adapter_bytes"]
points = {(r["trainable_params"], r["test_mean"]): r["label"] for r in summary}
ANSWERS = {
    "smallest_within_2_points": (smallest, summary),
    "storage": ((1000 * FULL_MODEL_MB, FULL_MODEL_MB + 1000 * lora_bytes / 2**20), costs),
    "frontier_labels": ({points[p] for p in pareto_frontier(points)}, summary),
}
