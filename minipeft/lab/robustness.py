"""Reading a comparison's extra tests: how much accuracy each method keeps out of domain and under perturbations.

The runs come from minipeft.lab.compare (final runs with "extra" predictions); the perturbed test sets from
minipeft.lab.perturb.
"""
import numpy as np

from .compare import text_to_hits


def robustness(results: dict, samples: int = 10_000) -> list[dict]:
    """Per method, over its final runs that predicted the extra tests: test accuracy, and for each extra test its
    accuracy and the change from the test split with a 95 % bootstrap interval — paired over the same snippets for
    a perturbed copy of the test split, over both sets independently for another set (e.g. IMDB)."""
    rows = []
    for label in dict.fromkeys(r["label"] for r in results["runs"] if r["phase"] == "final" and "extra" in r):
        runs = sorted((r for r in results["runs"] if r["label"] == label and r["phase"] == "final" and "extra" in r),
                      key=lambda r: r["seed"])
        test = np.stack([text_to_hits(r["test_hits"]) for r in runs]).astype(np.float64)
        row = {"label": label, "seeds": [r["seed"] for r in runs], "test": float(test.mean()), "extra": {}}
        for name in runs[0]["extra"]:
            other = np.stack([text_to_hits(r["extra"][name]["hits"]) for r in runs]).astype(np.float64)
            paired = other.shape[1] == test.shape[1]
            row["extra"][name] = {"accuracy": float(other.mean()), "paired": paired,
                                  **change_interval(other, test, paired, samples)}
        rows.append(row)
    return rows


def change_interval(other: np.ndarray, test: np.ndarray, paired: bool, samples: int, seed: int = 0) -> dict:
    """mean(other) − mean(test) with a 95 % bootstrap interval: examples resampled once for both when `paired`
    (the same examples, changed), independently when not; the runs (rows, seeds) resampled together."""
    rng, draws = np.random.default_rng(seed), np.empty(samples)
    for i in range(samples):
        runs = rng.integers(0, len(test), len(test))
        rows_test = rng.integers(0, test.shape[1], test.shape[1])
        rows_other = rows_test if paired else rng.integers(0, other.shape[1], other.shape[1])
        draws[i] = other[runs][:, rows_other].mean() - test[runs][:, rows_test].mean()
    low, high = np.percentile(draws, [2.5, 97.5])
    return {"change": float(other.mean() - test.mean()), "low": float(low), "high": float(high)}
