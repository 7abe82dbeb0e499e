"""Checks for 11_small_data_and_expressivity. Each answer comes paired with the numbers it was computed from (the
notebook's own learning curves, or the committed results), so the checks hold for whatever numbers it shows."""
import statistics

from minipeft.lab.course import ExerciseCheck


def _mean(values):
    return statistics.fmean(values)


def _within(curve: dict, points: float) -> int:
    best = _mean(curve[max(curve)])
    return min(n for n in curve if _mean(curve[n]) >= best - points / 100)


def _few_against_many(curves: dict) -> float:
    pretrained, random_weights = curves["pretrained"], curves["random"]
    return 100 * (_mean(pretrained[min(pretrained)]) - _mean(random_weights[max(random_weights)]))


def _biggest_loss(gaps: dict) -> str:
    return max(gaps, key=lambda label: gaps[label]["pretrained"] - gaps[label]["random"])


CHECKS = {
    "within_2_points": ExerciseCheck(
        lambda a: a[0] == _within(a[1], 2.0),
        "read the curve from the left: where does it come close to where it ends?",
        "take the mean over draws at the largest size as the ceiling; the answer is the first size whose mean is "
        "no more than two points below that ceiling"),
    "few_against_many": ExerciseCheck(
        lambda a: abs(float(a[0]) - _few_against_many(a[1])) <= 0.05,
        "compare the left end of one curve with the right end of the other, as means over the draws",
        "average the pretrained probe's accuracies at its smallest size and the random-weights probe's at its "
        "largest size, subtract the second from the first, and give the result in points (× 100)"),
    "biggest_loss": ExerciseCheck(
        lambda a: a[0] == _biggest_loss(a[1]),
        "which method depended most on what the pretrained weights already compute?",
        "for each method subtract its validation accuracy on random weights from its accuracy on the pretrained "
        "model; the method with the largest drop is the answer"),
}

_CURVES = {"pretrained": {16: [0.60, 0.64], 64: [0.70, 0.72], 256: [0.74, 0.75], 1024: [0.76, 0.76]},
           "random": {16: [0.52, 0.54], 64: [0.55, 0.57], 256: [0.60, 0.62], 1024: [0.63, 0.64]}}
_GAPS = {"linear probe (mean)": {"pretrained": 0.75, "random": 0.61},
         "prompt tuning k=20": {"pretrained": 0.78, "random": 0.60},
         "full fine-tuning": {"pretrained": 0.83, "random": 0.70}}
WRONG = {"within_2_points": (1024, _CURVES["pretrained"]),
         "few_against_many": (1.5, _CURVES),  # the sign the wrong way round
         "biggest_loss": ("full fine-tuning", _GAPS)}
