"""Checks for 08_comparison. Each answer comes paired with the summary rows it was computed from
(the committed results, or a QUICK run), so the checks hold for whatever numbers the notebook shows."""
from minipeft.lab.course import ExerciseCheck
from minipeft.lab.plots import pareto_frontier

FULL_MODEL_MB = 22_713_216 * 4 / 2**20  # MiniLM in fp32


def _smallest_within_2_points(summary):
    full = next(r for r in summary if r["label"] == "full fine-tuning")["test_mean"]
    close = [r for r in summary if r["test_mean"] >= full - 0.02]
    return min(close, key=lambda r: r["trainable_params"])["label"]


def _storage(summary):
    lora = next(r for r in summary if r["label"] == "LoRA r=8")["adapter_bytes"]
    return 1000 * FULL_MODEL_MB, FULL_MODEL_MB + 1000 * lora / 2**20


def _frontier(summary):
    by_point = {(r["trainable_params"], r["test_mean"]): r["label"] for r in summary}
    return {by_point[p] for p in pareto_frontier(by_point)}


def _close(a, b):
    return all(abs(x - y) <= 0.01 * max(1.0, abs(y)) for x, y in zip(a, b))


CHECKS = {
    "smallest_within_2_points": ExerciseCheck(
        lambda a: a[0] == _smallest_within_2_points(a[1]),
        "filter rows with test_mean ≥ full's − 0.02, then take the min of trainable_params"),
    "storage": ExerciseCheck(
        lambda a: _close(a[0], _storage(a[1])),
        "full: 1000 × (22,713,216 × 4 bytes); LoRA: one base + 1000 × adapter_bytes, in MB (2**20)"),
    "frontier_labels": ExerciseCheck(
        lambda a: set(a[0]) == _frontier(a[1]),
        "plots.pareto_frontier on (trainable_params, test_mean) pairs, mapped back to labels"),
}
_EXAMPLE = [{"label": "full fine-tuning", "trainable_params": 22_713_986, "test_mean": 0.80,
             "adapter_bytes": 90_000_000},
            {"label": "LoRA r=8", "trainable_params": 74_498, "test_mean": 0.795, "adapter_bytes": 300_000},
            {"label": "BitFit", "trainable_params": 26_882, "test_mean": 0.77, "adapter_bytes": 110_000},
            {"label": "linear probe (mean)", "trainable_params": 770, "test_mean": 0.72, "adapter_bytes": 3_224}]
WRONG = {"smallest_within_2_points": ("BitFit", _EXAMPLE),
         "storage": ((1000 * FULL_MODEL_MB, 1000 * 300_000 / 2**20), _EXAMPLE),
         "frontier_labels": ({"LoRA r=8", "full fine-tuning"}, _EXAMPLE)}
