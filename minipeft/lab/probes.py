"""Probes on frozen features, and Hewitt & Liang's control tasks (2019, "Designing and interpreting probes with
control tasks").

    features   word_features(backbone, tokenizer, sentences)   every layer's hidden state at each word's first
                                                               sub-token, computed once: (layers + 1, words, d)
    probe      fit_probe(X, y, hidden=None | h)                a linear map d → C, or an MLP d → h → C (ReLU),
                                                               trained full-batch in a few seconds
    control    control_tags(sentences, tags, seed)             each word TYPE gets one random tag, drawn from the
                                                               real tags' distribution: only memorising the word
                                                               solves it, nothing in the sentence helps
    selectivity = accuracy on the task − accuracy on the control task (high: the probe reads, not memorises)
"""
from collections import Counter

import numpy as np
import torch
from torch import nn

from ..batching import align_labels


def control_tags(sentences: list[list[str]], tags: list[list[int]], seed: int = 0) -> list[list[int]]:
    """The control task: every word type (the exact string) gets one tag drawn at random from the distribution
    of the real `tags` over all words; returned per sentence, like `tags`. Fixed by `seed`."""
    counts = Counter(t for row in tags for t in row)
    values = sorted(counts)
    shares = np.array([counts[v] for v in values], dtype=float) / sum(counts.values())
    types = sorted({w for row in sentences for w in row})
    drawn = np.random.default_rng(seed).choice(values, size=len(types), p=shares)
    table = dict(zip(types, drawn.tolist()))
    return [[table[w] for w in row] for row in sentences]


@torch.no_grad()
def word_features(backbone, tokenizer, sentences: list[list[str]], batch_size: int = 32) -> torch.Tensor:
    """(layers + 1, words, d): the hidden states at each word's first sub-token, at every layer (0 = embeddings),
    words in sentence order. Needs a fast tokenizer; raises ValueError if truncation would drop words."""
    backbone.eval()
    out = []
    for start in range(0, len(sentences), batch_size):
        rows = [list(s) for s in sentences[start:start + batch_size]]
        enc = tokenizer(rows, is_split_into_words=True, padding=True, truncation=True, return_tensors="pt")
        first = torch.tensor([align_labels(enc.word_ids(i), list(range(len(r)))) for i, r in enumerate(rows)])
        if (first != -100).sum() != sum(map(len, rows)):
            raise ValueError("some words were cut off by the tokenizer's max_length")
        inputs = {k: v.to(backbone.device) for k, v in enc.items()}
        hidden = torch.stack(backbone(**inputs, output_hidden_states=True).hidden_states)  # (L+1, batch, n, d)
        out.append(hidden[:, first != -100].float().cpu())  # row by row, word by word
    return torch.cat(out, dim=1)


def fit_probe(X: torch.Tensor, y: torch.Tensor, num_labels: int, hidden: int | None = None, steps: int = 300,
              lr: float = 1e-2, weight_decay: float = 0.0, seed: int = 0) -> nn.Module:
    """A probe trained on features X (n, d) for labels y (n,): linear (hidden=None) or an MLP with `hidden` ReLU
    units; full-batch AdamW for `steps` steps. Returned in eval mode."""
    torch.manual_seed(seed)
    d = X.shape[1]
    probe = nn.Linear(d, num_labels) if hidden is None else nn.Sequential(
        nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, num_labels))
    optimizer = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(steps):
        loss = nn.functional.cross_entropy(probe(X), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return probe.eval()


@torch.no_grad()
def accuracy(probe: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    """The share of rows whose argmax is the label."""
    return (probe(X).argmax(-1) == y).float().mean().item()
