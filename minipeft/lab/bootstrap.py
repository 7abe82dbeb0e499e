"""Paired bootstrap intervals on test examples, and 0/1 hit vectors stored compactly as text.

Two methods tested on the same examples are compared *paired*: every bootstrap draw resamples the examples once,
for both sides (and, independently, each side's seeds), so that what both get right or wrong cancels out.
"""
import numpy as np
import torch


def paired_difference(hits: list, reference: list, samples: int = 10_000, seed: int = 0) -> dict:
    """accuracy(method) − accuracy(reference) on the same test examples, each averaged over its seeds.

    hits, reference: one 0/1 vector per seed (1 = the example was classified right). The 95 % interval comes from a
    bootstrap that resamples the examples (the same draw for both: a paired comparison) and, independently, each
    side's seeds. Returns {"difference", "low", "high", "seeds", "reference_seeds", "examples"}."""
    a, b = np.asarray(hits, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"paired comparison needs the same test examples: {a.shape[1]} vs {b.shape[1]}")
    rng = np.random.default_rng(seed)
    rows = counts(rng, a.shape[1], samples)  # the same examples drawn for both sides: paired
    draws = means(a, counts(rng, len(a), samples), rows) - means(b, counts(rng, len(b), samples), rows)
    low, high = np.percentile(draws, [2.5, 97.5])
    return {"difference": float(a.mean() - b.mean()), "low": float(low), "high": float(high),
            "seeds": len(a), "reference_seeds": len(b), "examples": a.shape[1]}


def counts(rng, n: int, samples: int) -> np.ndarray:
    """Bootstrap draws as counts (samples × n): row i says how often each of n items was drawn, n with
    replacement. With means() this gives every draw's accuracy in one matrix product instead of a Python loop."""
    drawn = rng.integers(0, n, (samples, n)) + n * np.arange(samples)[:, None]  # item indices, offset per draw
    return np.bincount(drawn.ravel(), minlength=samples * n).reshape(samples, n).astype(np.float64)


def means(hits: np.ndarray, seed_counts: np.ndarray, row_counts: np.ndarray) -> np.ndarray:
    """The accuracy of every bootstrap draw: hits (seeds × examples) averaged over the drawn seeds and examples."""
    return ((seed_counts @ hits) * row_counts).sum(1) / (hits.shape[0] * hits.shape[1])


def hits_to_text(hits: torch.Tensor) -> str:
    """A 0/1 vector as a string of '0' and '1' (compact in JSON)."""
    return "".join(map(str, hits.tolist()))


def text_to_hits(text: str) -> np.ndarray:
    """The inverse of hits_to_text."""
    return np.frombuffer(text.encode(), dtype=np.uint8) - ord("0")
