"""Where a method trains: a map of the model, one row per layer (and embeddings, head), one column per module
type, each cell coloured by how many of its parameters train.

                 word_emb  query  key    value  ...  head          (LoRA r=8 on query and value)
    embeddings   ░░░░░
    layer 0                6.14k  ░░░░░  6.14k
    ...
    head                                             770

    ░░░░░ frozen (grey)    6.14k trained: the count, coloured by its log10    blank: no such module in that row

plots.py re-exports parameter_map, parameter_maps and human, so the notebooks draw every figure through plots.
"""
import math
import re

import matplotlib.pyplot as plt
import numpy as np


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


MAP_WIDTH = 9.0   # inches: a notebook's output is about 900 px wide at 100 dpi
MAP_CELL = 0.45   # inches per column: room for "11.7M" in 7 pt type
MAP_ROW = 0.3     # inches per row
MAP_FONT = 7      # points: the smallest type in the maps


def short_module_names(columns) -> list[str]:
    """Column labels a map can show: each module name cut to its shortest dotted ending no other column shares
    (attention.self.query → query; intermediate.dense and output.dense stay apart), "attention" written "attn"
    and "_embeddings" "_emb". Falls back to the full name where two labels would be the same."""
    def ending(name):
        parts = name.split(".")
        for k in range(1, len(parts) + 1):
            tail = ".".join(parts[-k:])
            if not any(other == tail or other.endswith("." + tail) for other in columns if other != name):
                return tail
        return name
    short = [ending(c).replace("attention", "attn").replace("_embeddings", "_emb") for c in columns]
    return [s if short.count(s) == 1 else c for s, c in zip(short, columns)]


def map_size(model) -> tuple[float, float]:
    """(width, height) in inches of one parameter map of `model` with its labels: at most MAP_WIDTH wide."""
    rows, columns, _ = parameter_map_matrix(model)
    return min(MAP_WIDTH, MAP_CELL * len(columns) + 1.6), MAP_ROW * len(rows) + 1.8


def parameter_map(model, ax=None, title="What trains"):
    """Heatmap of parameter_map_matrix: grey = frozen, colour = trained (log of the count, written in the cell),
    white = no such module in that row. Module names are shortened (short_module_names), type is at least 7 pt.
    On its own figure it is at most 9 inches wide; for several maps use parameter_maps, which keeps every cell
    wide enough for its number."""
    rows, columns, matrix = parameter_map_matrix(model)
    ax = ax if ax is not None else plt.subplots(figsize=map_size(model), layout="constrained")[1]
    ax.imshow(np.where(matrix == 0, 1.0, np.nan), cmap="Greys", vmin=0, vmax=4, aspect="auto")
    trained = np.where(matrix > 0, np.log10(np.where(matrix > 0, matrix, 1)), np.nan)
    ax.imshow(trained, cmap="YlOrRd", aspect="auto", vmin=-1, vmax=np.nanmax(trained, initial=0) + 2)
    for (i, j), count in np.ndenumerate(matrix):
        if count > 0:
            ax.text(j, i, human(count), ha="center", va="center", fontsize=MAP_FONT)
    ax.set_xticks(range(len(columns)), short_module_names(columns), rotation=45, ha="right",
                  rotation_mode="anchor", fontsize=MAP_FONT)
    ax.set_yticks(range(len(rows)), rows, fontsize=MAP_FONT)
    ax.set_title(title, fontsize=9)
    return ax


def parameter_maps(models: dict, title=None):
    """Several parameter maps ({title: model}) in one figure at most 9 inches wide: side by side when they fit,
    otherwise one under the other. Returns the figure."""
    sizes = [map_size(model) for model in models.values()]
    per_row = max(1, min(len(models), int(MAP_WIDTH // max(w for w, _ in sizes))))
    grid_rows = math.ceil(len(models) / per_row)
    height = sum(max(h for _, h in sizes[r * per_row:(r + 1) * per_row]) for r in range(grid_rows))
    fig, axes = plt.subplots(grid_rows, per_row, squeeze=False, layout="constrained",
                             figsize=(min(MAP_WIDTH, per_row * max(w for w, _ in sizes)), height))
    for ax, (label, model) in zip(axes.flat, models.items()):
        parameter_map(model, ax=ax, title=label)
    for ax in axes.flat[len(models):]:
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    return fig


def human(count: float) -> str:
    """1234 → '1.2k', 2_500_000 → '2.5M'."""
    exponent = min(int(math.log10(count)) // 3, 3) if count >= 1 else 0
    return f"{count / 10 ** (3 * exponent):.3g}{['', 'k', 'M', 'G'][exponent]}"
