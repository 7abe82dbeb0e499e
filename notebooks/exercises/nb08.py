"""Checks for 08_comparison. Each answer comes paired with the rows it was computed from (the committed results,
or a QUICK run), so the checks hold for whatever numbers the notebook shows."""
from minipeft.lab.course import ExerciseCheck
from minipeft.lab.plots import pareto_frontier
from minipeft.lab.robustness import change_versus

FULL_MODEL_MB = 22_713_216 * 4 / 2**20  # MiniLM in fp32


def _smallest_within_2_points(summary):
    close = [r for r in summary if r["label"] == "full fine-tuning"
             or r.get("vs_reference") and r["vs_reference"]["low"] >= -0.02]
    return min(close, key=lambda r: r["trainable_params"])["label"]


def _storage(costs):
    lora = costs["LoRA r=8"]["adapter_bytes"]
    return 1000 * FULL_MODEL_MB, FULL_MODEL_MB + 1000 * lora / 2**20


def _frontier(summary):
    by_point = {(r["trainable_params"], r["test_mean"]): r["label"] for r in summary}
    return {by_point[p] for p in pareto_frontier(by_point)}


def _lose_more_to(results, name, reference="full fine-tuning"):
    labels = {r["label"] for r in results["runs"] if r["phase"] == "final" and "extra" in r} - {reference}
    return {label for label in labels if change_versus(results, label, reference, name, samples=2000)["high"] < 0}


def _close(a, b):
    return all(abs(x - y) <= 0.01 * max(1.0, abs(y)) for x, y in zip(a, b))


CHECKS = {
    "smallest_within_2_points": ExerciseCheck(
        lambda a: a[0] == _smallest_within_2_points(a[1]),
        "'within 2 points' is a claim about the interval, not about the mean: which end of it must clear the bar?",
        "a method qualifies when even the pessimistic end of its paired interval against full fine-tuning is no "
        "further than two points below; among those that qualify, the one that trains least wins"),
    "storage": ExerciseCheck(
        lambda a: _close(a[0], _storage(a[1])),
        "what must be stored once per user in each design, and what can be shared by all of them?",
        "fine-tuning keeps a whole model for every user; with LoRA every user shares one base model and keeps only "
        "their adapter file (read its size from the costs, in bytes, and convert to MiB)"),
    "frontier_labels": ExerciseCheck(
        lambda a: set(a[0]) == _frontier(a[1]),
        "a method is on the frontier when no other method beats it on both axes at once",
        "go through the methods from the fewest trainable parameters to the most, keeping each one that is more "
        "accurate than every method kept before it"),
    "lose_more_to_typos": ExerciseCheck(
        lambda a: set(a[0]) == _lose_more_to(a[1], "typos"),
        "compare each method's loss with full fine-tuning's loss on the same snippets, and trust only what the "
        "interval settles",
        "the exercise's function already gives, per method, its change minus full fine-tuning's with an interval; "
        "a method loses significantly more only when even the most favourable end of that interval is a loss"),
}


def _row(label, params, accuracy, low):
    return {"label": label, "trainable_params": params, "test_mean": accuracy,
            "vs_reference": {"difference": accuracy - 0.80, "low": low, "high": accuracy - 0.80 + 0.01}}


_EXAMPLE = [{"label": "full fine-tuning", "trainable_params": 22_713_986, "test_mean": 0.80},
            _row("LoRA r=8", 74_498, 0.795, -0.015), _row("BitFit", 26_882, 0.79, -0.025),
            _row("linear probe (mean)", 770, 0.72, -0.09)]
_COSTS = {"full fine-tuning": {"adapter_bytes": 90_000_000}, "LoRA r=8": {"adapter_bytes": 300_000}}
def _runs(label, test, typos):
    return {"label": label, "phase": "final", "seed": 0, "test_hits": test, "extra": {"typos": {"hits": typos}}}


_RESULTS = {"runs": [_runs("full fine-tuning", "1" * 90 + "0" * 10, "1" * 85 + "0" * 15),   # loses 5 points
                     _runs("prompt tuning", "1" * 90 + "0" * 10, "1" * 70 + "0" * 30),      # loses 20
                     _runs("LoRA r=8", "1" * 90 + "0" * 10, "1" * 86 + "0" * 14)]}         # loses 4
WRONG = {"smallest_within_2_points": ("BitFit", _EXAMPLE),
         "storage": ((1000 * FULL_MODEL_MB, 1000 * 300_000 / 2**20), _COSTS),
         "frontier_labels": ({"LoRA r=8", "full fine-tuning"}, _EXAMPLE),
         "lose_more_to_typos": ({"prompt tuning", "LoRA r=8"}, _RESULTS)}
