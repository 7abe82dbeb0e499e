"""Plots for comparing methods: accuracy against trainable parameters, training curves, time and memory, and a
map of *where* in the model a method trains.

    accuracy ┤            ●──────●          the Pareto frontier: the methods no other method beats on both
             │      ●────╯  ○                counts (fewer parameters AND higher accuracy). Everything under
             │  ●──╯    ○        ○           it is dominated: some method is as good for fewer parameters.
             └──┬─────┬─────┬─────┬──▶ trainable parameters (log scale)
               1e3   1e4   1e5   1e7

Every function takes plain data (compare.py's summary rows, train.py's histories) or a model, draws on a given
matplotlib Axes (or a new figure) and returns it; nothing is shown, so it works headless (Agg) as well.
"""
import math
import re

import matplotlib.pyplot as plt
import numpy as np

MEMORY_PARTS = ("weights", "gradients", "optimizer", "activations")


def pareto_frontier(points) -> list:
    """The (parameters, accuracy) points no other point dominates (≤ parameters and ≥ accuracy, better in
    one), sorted by parameters. Walking from the fewest parameters, a point is kept only if it is more accurate
    than every point before it."""
    frontier = []
    for params, accuracy in sorted(points, key=lambda p: (p[0], -p[1])):
        if not frontier or accuracy > frontier[-1][1]:
            frontier.append((params, accuracy))
    return frontier


def new_axes(ax, size=(7, 4.5)):
    return ax if ax is not None else plt.subplots(figsize=size, layout="constrained")[1]


def plot_accuracy_vs_params(summary, ax=None):
    """Test accuracy (mean ± std over seeds) against trainable parameters, the frontier drawn through."""
    ax = new_axes(ax)
    for row in summary:
        ax.errorbar(row["trainable_params"], row["test_mean"], yerr=row["test_std"], fmt="o", capsize=3)
        ax.annotate(row["label"], (row["trainable_params"], row["test_mean"]), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
    front = pareto_frontier([(r["trainable_params"], r["test_mean"]) for r in summary])
    ax.step(*zip(*front), where="post", color="black", linestyle="--", linewidth=1, marker="o", markersize=11,
            markerfacecolor="none", label="Pareto frontier")
    ax.set(xscale="log", xlabel="trainable parameters (log)", ylabel="test accuracy", title="Accuracy vs. size")
    ax.legend(loc="lower right")
    return ax


def plot_histories(histories: dict, key="metric", ax=None):
    """One curve per {label: history}: validation accuracy ("metric") or training loss ("loss") by step."""
    ax = new_axes(ax)
    for label, history in histories.items():
        ax.plot([h["step"] for h in history], [h[key] for h in history], marker=".", label=label)
    ax.set(xlabel="step", ylabel="validation accuracy" if key == "metric" else "training loss", title="Training")
    ax.legend(fontsize=7, ncol=2)
    return ax


def plot_costs(summary, axes=None):
    """Two bar charts: seconds per training step, and memory split into weights, gradients, AdamW's state and
    saved activations (see measure.py)."""
    axes = axes if axes is not None else plt.subplots(1, 2, figsize=(11, 0.3 * len(summary) + 1.5),
                                                      layout="constrained")[1]
    y = np.arange(len(summary))
    axes[0].barh(y, [r["seconds_per_step"] for r in summary], color="tab:blue")
    axes[0].set(xlabel="seconds per step (median)", title="Time")
    left = np.zeros(len(summary))
    for part in MEMORY_PARTS:
        sizes = np.array([r["memory_mb"][part] for r in summary])
        axes[1].barh(y, sizes, left=left, label=part)
        left += sizes
    axes[1].set(xlabel="MB", title="Training memory")
    axes[1].legend(fontsize=7)
    for ax in axes:
        ax.set_yticks(y, [r["label"] for r in summary], fontsize=7)
        ax.invert_yaxis()  # the first method on top
    return axes


def plot_comparison(results: dict, path=None):
    """compare.py's results on one page: accuracy vs. size, curves of seed 0 at the chosen lr, time, memory."""
    fig, axes = plt.subplots(2, 2, figsize=(14, 10), layout="constrained")
    summary = results["summary"]
    plot_accuracy_vs_params(summary, axes[0, 0])
    chosen = {(r["label"], r["lr"]) for r in summary}
    plot_histories({r["label"]: r["history"] for r in results["runs"]
                     if r["seed"] == 0 and (r["label"], r["lr"]) in chosen}, ax=axes[0, 1])
    plot_costs(summary, axes[1])
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


# ---------------------------------------------------------------- where a method trains
def parameter_cell(name: str) -> tuple:
    """(row, column) of a parameter: ("layer 0", "attention.self.query"), ("embeddings", "word_embeddings"),
    ("head", "head"). An adapter's tensors count for the module they adapt; a wrapped module (`.base`) keeps
    its own name; the Classifier's `backbone.` and Llama's `model.` prefixes are dropped."""
    module, _, adapter = name.partition(".adapters.")
    module = module if adapter else name.rsplit(".", 1)[0]  # drop the .weight / .bias
    module = re.sub(r"^(backbone\.)?(model\.)?", "", re.sub(r"\.base(?=\.|$)", "", module))
    layered = re.match(r"^(?:.*\.)?layers?\.(\d+)\.(.+)$", module)
    if layered:
        return f"layer {layered[1]}", layered[2]
    first, _, rest = module.partition(".")
    return first, rest or first


def parameter_map_matrix(model):
    """(row labels, column labels, matrix): the number of trained parameters of each (layer, module type)
    cell; 0 where a cell's parameters are all frozen, NaN where the model has no such cell."""
    cells = {}
    for name, p in model.named_parameters():  # in model order: embeddings, layers, head
        cell = cells.setdefault(parameter_cell(name), [0, 0])
        cell[0] += p.numel() if p.requires_grad else 0
        cell[1] += p.numel()
    rows = list(dict.fromkeys(r for r, _ in cells))
    columns = list(dict.fromkeys(c for _, c in cells))
    matrix = np.full((len(rows), len(columns)), np.nan)
    for (r, c), (trained, _) in cells.items():
        matrix[rows.index(r), columns.index(c)] = trained
    return rows, columns, matrix


def parameter_map(model, ax=None, title="What trains"):
    """Heatmap of parameter_map_matrix: grey = frozen, colour = trained (log of the count, written in the cell),
    white = no such module in that row."""
    rows, columns, matrix = parameter_map_matrix(model)
    ax = new_axes(ax, size=(0.55 * len(columns) + 2.5, 0.3 * len(rows) + 2))
    ax.imshow(np.where(matrix == 0, 1.0, np.nan), cmap="Greys", vmin=0, vmax=4, aspect="auto")
    trained = np.where(matrix > 0, np.log10(np.where(matrix > 0, matrix, 1)), np.nan)
    ax.imshow(trained, cmap="YlOrRd", aspect="auto", vmin=-1, vmax=np.nanmax(trained, initial=0) + 2)
    for (i, j), count in np.ndenumerate(matrix):
        if count > 0:
            ax.text(j, i, human(count), ha="center", va="center", fontsize=6)
    ax.set_xticks(range(len(columns)), columns, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    ax.set_title(title)
    return ax


def human(count: float) -> str:
    """1234 → '1.2k', 2_500_000 → '2.5M'."""
    exponent = min(int(math.log10(count)) // 3, 3) if count >= 1 else 0
    return f"{count / 10 ** (3 * exponent):.3g}{['', 'k', 'M', 'G'][exponent]}"
