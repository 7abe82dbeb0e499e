"""Reading a comparison's extra tests: how much accuracy each method keeps out of domain and under perturbations.

The runs come from minipeft.lab.compare (final runs with "extra" predictions); the perturbed test sets from
minipeft.lab.perturb.
"""
import numpy as np

from .bootstrap import counts, means, text_to_hits


def robustness(results: dict, samples: int = 10_000) -> list[dict]:
    """Per method, over its final runs that predicted the extra tests: test accuracy, and for each extra test its
    accuracy and the change from the test split with a 95 % bootstrap interval — paired over the same snippets for
    a perturbed copy of the test split, over both sets independently for another set (e.g. IMDB)."""
    rows = []
    for label in dict.fromkeys(r["label"] for r in results["runs"] if r["phase"] == "final" and "extra" in r):
        runs = final_runs(results, label)
        test = final_hits(results, label)
        row = {"label": label, "seeds": [r["seed"] for r in runs], "test": float(test.mean()), "extra": {}}
        for name in runs[0]["extra"]:
            other = final_hits(results, label, name)
            paired = other.shape[1] == test.shape[1]
            row["extra"][name] = {"accuracy": float(other.mean()), "paired": paired,
                                  **change_interval(other, test, paired, samples)}
        rows.append(row)
    return rows


def final_runs(results: dict, label: str) -> list[dict]:
    """A method's final runs that predicted the extra tests, by seed."""
    return sorted((r for r in results["runs"] if r["label"] == label and r["phase"] == "final" and "extra" in r),
                  key=lambda r: r["seed"])


def final_hits(results: dict, label: str, name: str | None = None) -> np.ndarray:
    """The 0/1 predictions (seeds × examples) of a method's final runs that have extra tests: on the test split, or
    on the extra test `name`."""
    return np.stack([text_to_hits(r["test_hits"] if name is None else r["extra"][name]["hits"])
                     for r in final_runs(results, label)]).astype(np.float64)


def change_versus(results: dict, label: str, reference: str, name: str, samples: int = 10_000,
                  seed: int = 0) -> dict:
    """Does `label` keep more of its accuracy on the extra test `name` than `reference` does? The difference of
    the two changes, (name − test) of the method minus (name − test) of the reference, in points of accuracy, with
    a 95 % bootstrap interval: both sets' examples resampled once for both methods (the same examples; for a
    perturbed copy of the test split, the same draw for the copy as for the original), each method's seeds
    resampled on their own. Positive: the method loses less (or gains more) than the reference."""
    test, other = final_hits(results, label), final_hits(results, label, name)
    ref_test, ref_other = final_hits(results, reference), final_hits(results, reference, name)
    rng = np.random.default_rng(seed)
    rows_test = counts(rng, test.shape[1], samples)  # how often each example is drawn, one row per draw
    rows_other = rows_test if other.shape[1] == test.shape[1] else counts(rng, other.shape[1], samples)
    mine, theirs = counts(rng, len(test), samples), counts(rng, len(ref_test), samples)
    draws = (means(other, mine, rows_other) - means(test, mine, rows_test)
             - means(ref_other, theirs, rows_other) + means(ref_test, theirs, rows_test))
    low, high = np.percentile(draws, [2.5, 97.5])
    difference = (other.mean() - test.mean()) - (ref_other.mean() - ref_test.mean())
    return {"difference": float(difference), "low": float(low), "high": float(high)}


def change_interval(other: np.ndarray, test: np.ndarray, paired: bool, samples: int, seed: int = 0) -> dict:
    """mean(other) − mean(test) with a 95 % bootstrap interval: examples resampled once for both when `paired`
    (the same examples, changed), independently when not; the runs (rows, seeds) resampled together."""
    rng = np.random.default_rng(seed)
    rows_test = counts(rng, test.shape[1], samples)
    rows_other = rows_test if paired else counts(rng, other.shape[1], samples)
    runs = counts(rng, len(test), samples)  # a run's predictions on both sets stay together
    draws = means(other, runs, rows_other) - means(test, runs, rows_test)
    low, high = np.percentile(draws, [2.5, 97.5])
    return {"change": float(other.mean() - test.mean()), "low": float(low), "high": float(high)}
