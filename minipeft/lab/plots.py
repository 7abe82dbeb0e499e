"""Plots for comparing methods: accuracy against trainable parameters, training curves, time and memory (the map
of *where* in the model a method trains is parameter_maps.py's, drawn through here too).

    accuracy ┤            ●──────●          the Pareto frontier: the methods no other method beats on both
             │      ●────╯  ○                counts (fewer parameters AND higher accuracy). Everything under
             │  ●──╯    ○        ○           it is dominated: some method is as good for fewer parameters.
             └──┬─────┬─────┬─────┬──▶ trainable parameters (log scale)
               1e3   1e4   1e5   1e7

Every function takes plain data (compare.py's summary rows, train.py's histories) or a model, draws on a given
matplotlib Axes (or a new figure) and returns it; nothing is shown, so it works headless (Agg) as well.
"""
import matplotlib.pyplot as plt
from matplotlib.transforms import Bbox
import numpy as np

# the notebooks draw every figure through plots, the maps of where a method trains included
from .parameter_maps import human, parameter_map, parameter_maps  # noqa: F401

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


FAMILIES = {  # method → (family, colour, marker): one colour and one marker per family in every figure
    "probe": ("probes", "tab:gray", "o"), "finetune": ("fine-tuning", "black", "s"),
    "bitfit": ("BitFit", "tab:brown", "D"), "prompt_tuning": ("prompts and prefixes", "tab:purple", "^"),
    "p_tuning": ("prompts and prefixes", "tab:purple", "^"), "deep_prompt": ("prompts and prefixes", "tab:purple", "^"),
    "prefix_tuning": ("prompts and prefixes", "tab:purple", "^"),
    "bottleneck": ("bottleneck adapters", "tab:green", "v"), "lora": ("LoRA", "tab:blue", "P"),
    "dora": ("LoRA", "tab:blue", "P"), "ia3": ("(IA)³", "tab:orange", "X"),
}


def family(method: str) -> tuple[str, str, str]:
    """(family name, colour, marker) of a method (a key of minipeft.METHODS)."""
    return FAMILIES.get(method, (method, "tab:red", "*"))


def new_axes(ax, size=(7, 4.5)):
    """`ax`, or the axes of a new figure of `size` inches."""
    return ax if ax is not None else plt.subplots(figsize=size, layout="constrained")[1]


def family_legend(ax, methods, **where) -> None:
    """A legend with one entry per family among `methods`, outside the data (right of the axes by default)."""
    seen = {}
    for m in methods:
        name, colour, marker = family(m)
        seen.setdefault(name, plt.Line2D([], [], color=colour, marker=marker, linestyle="", label=name))
    ax.legend(handles=list(seen.values()), **({"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "fontsize": 8}
                                               | where))


def label_offsets() -> list[tuple[int, int]]:
    """Where place_labels tries a label, in points from its marker: 8 places beside it, then a grid further out
    (reached by a thin leader line), nearest first."""
    near = [(5, 3), (5, -9), (-5, 3), (-5, -9), (5, 10), (-5, 10), (5, -16), (-5, -16)]
    grid = [(dx, dy) for dx in (-120, -90, -60, -40, -20, -5, 5, 20, 40, 60, 90, 120) for dy in range(-88, 72, 8)]
    return near + sorted((o for o in grid if o not in near), key=lambda o: o[0] ** 2 + (1.5 * o[1]) ** 2)


def place_labels(ax, xs, ys, labels, fontsize=7, yerr=None) -> list:
    """Write each label next to its point where it overlaps no label already written, no point and no error bar
    (`yerr`, in data units), and stays inside the axes (greedy: the places of label_offsets, nearest first; a
    label set further out gets a leader line). Returns the text objects."""
    ax.figure.canvas.draw()  # sizes in pixels need a rendered figure
    renderer, texts = ax.figure.canvas.get_renderer(), []
    frame = ax.get_window_extent(renderer)
    marks = [Bbox.from_bounds(px - 4, py - 4, 8, 8) for px, py in ax.transData.transform(np.c_[xs, ys])]
    if yerr is not None:  # each error bar as a thin box from y − err to y + err
        low, high = ax.transData.transform(np.c_[xs, np.subtract(ys, yerr)]), ax.transData.transform(
            np.c_[xs, np.add(ys, yerr)])
        marks += [Bbox.from_extents(a[0] - 3, a[1], a[0] + 3, b[1]) for a, b in zip(low, high)]
    placed, offsets = [], label_offsets()

    def clash(box):  # how much of the box lies outside the axes or on other labels, points and bars
        outside = box.width * box.height - overlap_area(box, frame)
        return outside + sum(overlap_area(box, other) for other in placed + marks)

    for x, y, label in sorted(zip(xs, ys, labels), key=lambda t: (t[0], t[1])):
        best = None
        for dx, dy in offsets:
            far = (dx, dy) not in offsets[:8]
            text = ax.annotate(label, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                               ha="left" if dx > 0 else "right", va="bottom")  # measured without its leader line
            box = text.get_window_extent(renderer).expanded(1.05, 1.1)
            cost = clash(box)
            text.remove()
            if best is None or cost < best[0]:
                best = (cost, dx, dy, far, box)
            if cost == 0:
                break
        _, dx, dy, far, box = best  # the first place without a clash, else the place with the least
        texts.append(ax.annotate(label, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                                 ha="left" if dx > 0 else "right", va="bottom",
                                 arrowprops={"arrowstyle": "-", "color": "0.4", "lw": 0.7} if far else None))
        placed.append(box)
    return texts


def overlap_area(a, b) -> float:
    """The area two boxes share (0 if they do not overlap)."""
    return max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0)) * max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))


def plot_accuracy_vs_params(summary, ax=None):
    """Test accuracy (mean ± std over seeds, %) against trainable parameters, one colour and marker per family,
    the Pareto frontier drawn through, labels placed so they do not collide."""
    ax = new_axes(ax)
    rows = [r for r in summary if r.get("trainable_params")]
    for row in rows:
        _, colour, marker = family(row["method"])
        ax.errorbar(row["trainable_params"], 100 * row["test_mean"], yerr=100 * row["test_std"], fmt=marker,
                    color=colour, capsize=2, markersize=6)
    front = pareto_frontier([(r["trainable_params"], 100 * r["test_mean"]) for r in rows])
    if front:
        ax.step(*zip(*front), where="post", color="black", linestyle="--", linewidth=0.8, label="Pareto frontier")
    ax.set(xscale="log", xlabel="trainable parameters (log scale)", ylabel="test accuracy (%)",
           title="Accuracy vs. trainable parameters")
    ax.grid(alpha=0.3)
    family_legend(ax, [r["method"] for r in rows])
    place_labels(ax, [r["trainable_params"] for r in rows], [100 * r["test_mean"] for r in rows],
                 [r["label"] for r in rows], yerr=[100 * r["test_std"] for r in rows])
    return ax


def plot_paired_differences(summary, ax=None, reference="full fine-tuning", margins=(-0.3, -2.0)):
    """Each method's test accuracy minus the reference's on the same test examples (points) with the 95 % paired
    bootstrap interval (bars), in points; dotted lines at the target margins."""
    rows = sorted((r for r in summary if r.get("vs_reference")), key=lambda r: r["vs_reference"]["difference"])
    ax = new_axes(ax, size=(7, 0.28 * len(rows) + 1.2))
    for i, row in enumerate(rows):
        gap, (_, colour, marker) = row["vs_reference"], family(row["method"])
        ax.errorbar(100 * gap["difference"], i, xerr=[[100 * (gap["difference"] - gap["low"])],
                                                        [100 * (gap["high"] - gap["difference"])]],
                    fmt=marker, color=colour, capsize=2)
    ax.axvline(0, color="black", linewidth=0.8)
    for margin in margins:
        ax.axvline(margin, color="tab:red", linestyle=":", linewidth=0.8)
    ax.set_yticks(range(len(rows)), [r["label"] for r in rows], fontsize=7)
    ax.set(xlabel=f"test accuracy − {reference} (points, 95 % paired interval)", title=f"Against {reference}")
    ax.grid(axis="x", alpha=0.3)
    return ax


def plot_histories(histories: dict, key="metric", ax=None, x="step"):
    """One curve per {label: history}: validation accuracy ("metric") or training loss ("loss") against the
    step (or the epoch, x="epoch"); the legend outside the data."""
    ax = new_axes(ax)
    for label, history in histories.items():
        ax.plot([h[x] for h in history], [h[key] for h in history], marker=".", label=label)
    ax.set(xlabel=x, ylabel="validation accuracy" if key == "metric" else "training loss", title="Training")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return ax


def plot_costs(summary, axes=None):
    """Two bar charts: seconds per training step, and memory split into weights, gradients, AdamW's state and
    saved activations (see measure.py). Rows need label, seconds_per_step and memory_mb."""
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
    axes[1].legend(fontsize=7, loc="lower right")
    for ax in axes:
        ax.set_yticks(y, [r["label"] for r in summary], fontsize=7)
        ax.invert_yaxis()  # the first method on top
    return axes


def plot_comparison(results: dict, path=None, curves=("full fine-tuning", "LoRA r=8", "Pfeiffer adapters r=8",
                                                      "prompt tuning k=20", "linear probe (mean)")):
    """compare.py's results on one page: accuracy vs. size, differences to the reference with their intervals,
    validation curves of seed 0 at the chosen rate (a few methods), seconds per step relative to the reference."""
    fig, axes = plt.subplots(2, 2, figsize=(14, 10), layout="constrained")
    summary = [r for r in results["summary"] if r["seeds"]]
    plot_accuracy_vs_params(summary, axes[0, 0])
    plot_paired_differences(summary, axes[0, 1], results["settings"].get("reference") or "the reference")
    chosen = {(r["label"], r["lr"]) for r in summary}
    finals = {r["label"]: r["history"] for r in results["runs"] if r.get("phase") == "final" and r["seed"] == 0
              and (r["label"], r["lr"]) in chosen and r["label"] in curves}
    plot_histories({label: [{**h, "metric": 100 * h["metric"]} for h in finals[label]] for label in curves
                    if label in finals}, ax=axes[1, 0], x="epoch")
    axes[1, 0].set(ylabel="validation accuracy (%)", title="Training curves (seed 0)")
    costs = results.get("costs", {}).get("methods", {})
    reference = costs.get(results["settings"].get("reference"), {}).get("seconds_per_step")
    if costs and reference:
        labels = [r["label"] for r in summary if r["label"] in costs]
        ratios = [costs[label]["seconds_per_step"] / reference for label in labels]
        axes[1, 1].barh(range(len(labels)), ratios, color=[family(r["method"])[1] for r in summary
                                                            if r["label"] in costs])
        axes[1, 1].axvline(1, color="black", linewidth=0.8)
        axes[1, 1].set_yticks(range(len(labels)), labels, fontsize=7)
        axes[1, 1].invert_yaxis()
        axes[1, 1].set(xlabel=f"seconds per step ÷ {results['settings'].get('reference')}'s (measured side by side)",
                       title="Time per training step")
    else:
        axes[1, 1].set_axis_off()
        axes[1, 1].text(0.5, 0.5, "time per step: not measured yet\n(the benchmark measures it after its last run)",
                        transform=axes[1, 1].transAxes, ha="center", va="center", color="grey")
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
