"""Plots: the Pareto frontier, the map of what trains, and that every figure draws headless from real results."""
import math

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from minipeft.lab import parameter_maps, plots  # noqa: E402
from minipeft.lab.compare import build  # noqa: E402
from minipeft.methods.lora import apply_lora  # noqa: E402


def test_pareto_frontier_keeps_the_undominated_points():
    points = [(10, 0.70), (100, 0.80), (50, 0.60), (1000, 0.80), (5, 0.50), (100, 0.75), (2000, 0.90), (5, 0.40)]
    assert plots.pareto_frontier(points) == [(5, 0.50), (10, 0.70), (100, 0.80), (2000, 0.90)]
    assert plots.pareto_frontier([(3, 0.5), (3, 0.5)]) == [(3, 0.5)]
    assert plots.pareto_frontier([]) == []


def test_parameter_cells_name_layer_and_module():
    cell = parameter_maps.parameter_cell
    query = ("layer 3", "attention.self.query")
    assert cell("backbone.encoder.layer.3.attention.self.query.adapters.default.A") == query
    assert cell("backbone.encoder.layer.3.attention.self.query.base.weight") == ("layer 3", "attention.self.query")
    assert cell("model.layers.12.mlp.down_proj.weight") == ("layer 12", "mlp.down_proj")
    assert cell("backbone.embeddings.word_embeddings.weight") == ("embeddings", "word_embeddings")
    assert cell("backbone.model.prompts.adapters.default.weight") == ("prompts", "prompts")
    assert cell("head.bias") == ("head", "head")


def test_parameter_map_colours_exactly_the_lora_targets(tiny_bert):
    apply_lora(tiny_bert, ["query", "value"], r=2)
    rows, columns, matrix = parameter_maps.parameter_map_matrix(tiny_bert)
    assert rows == ["embeddings", "layer 0", "layer 1"]
    trained = {(rows[i], columns[j]) for i, j in zip(*np.nonzero(matrix > 0))}
    assert trained == {(f"layer {i}", f"attention.self.{m}") for i in (0, 1) for m in ("query", "value")}
    assert matrix[rows.index("layer 0"), columns.index("attention.self.query")] == 2 * (32 + 32)
    assert matrix[rows.index("layer 1"), columns.index("intermediate.dense")] == 0  # frozen, not missing
    assert math.isnan(matrix[rows.index("embeddings"), columns.index("attention.self.query")])  # no such cell
    assert np.nansum(matrix) == sum(p.numel() for p in tiny_bert.parameters() if p.requires_grad)


def test_parameter_map_of_a_classifier_and_of_top_layer_fine_tuning(tiny_bert):
    top_layer = build({"method": "finetune", "kwargs": {"top_k": 1}}, tiny_bert)
    rows, columns, matrix = parameter_maps.parameter_map_matrix(top_layer)
    layer = {r: matrix[rows.index(r)] for r in rows}
    assert rows == ["embeddings", "layer 0", "layer 1", "head"]
    assert np.all(layer["layer 1"][~np.isnan(layer["layer 1"])] > 0)
    assert np.all(layer["layer 0"][~np.isnan(layer["layer 0"])] == 0)
    assert np.nansum(layer["embeddings"]) == 0 and layer["head"][columns.index("head")] == 32 * 2 + 2


def test_every_figure_draws_headless(tiny_bert, tmp_path):
    methods = ["finetune", "lora", "probe"]
    summary = [{"label": f"m{i}", "method": methods[i], "trainable_params": 10 ** (i + 2), "test_mean": 0.6 + 0.05 * i,
                "test_std": 0.01, "lr": 1e-3, "seeds": 3,
                "vs_reference": {"difference": -0.01 * i, "low": -0.01 * i - 0.01, "high": -0.01 * i + 0.01}}
               for i in range(3)]
    history = [{"step": s, "epoch": s / 3, "loss": 1 / s, "metric": 0.5 + 0.01 * s} for s in (1, 2, 3)]
    runs = [{"label": r["label"], "lr": 1e-3, "seed": 0, "phase": "final", "history": history} for r in summary]
    costs = {"methods": {r["label"]: {"seconds_per_step": 0.1 * (i + 1)} for i, r in enumerate(summary)}}
    results = {"summary": summary, "runs": runs, "settings": {"reference": "m0"}, "costs": costs}
    fig = plots.plot_comparison(results, tmp_path / "comparison.png", curves=("m0", "m1"))
    assert (tmp_path / "comparison.png").stat().st_size > 10_000
    accuracy_axes = fig.axes[0]
    assert accuracy_axes.get_xscale() == "log"
    frontier = [line for line in accuracy_axes.get_lines() if line.get_label() == "Pareto frontier"][0]
    assert list(frontier.get_xdata()) == [100, 1000, 10000]
    assert [t.get_text() for t in fig.axes[1].get_yticklabels()] == ["m2", "m1", "m0"]  # sorted by the difference
    assert [bar.get_width() for bar in fig.axes[3].patches] == pytest.approx([1.0, 2.0, 3.0])  # ÷ the reference
    ax = plots.parameter_map(build({"method": "lora", "kwargs": {"r": 2}}, tiny_bert))
    assert [t.get_text() for t in ax.texts] == ["128", "128", "128", "128", "66"]  # 4 LoRA pairs and the head
    assert plots.human(1234) == "1.23k" and plots.human(22_700_000) == "22.7M" and plots.human(66) == "66"
    matplotlib.pyplot.close("all")


def test_point_labels_do_not_collide():
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    xs, ys = [1e4, 1.1e4, 1.2e4, 1e5, 1.05e5], [76.6, 76.7, 76.5, 77.0, 77.1]  # crowded, as LoRA r=1 and (IA)³ were
    ax.scatter(xs, ys)
    ax.set_xscale("log")
    texts = plots.place_labels(ax, xs, ys, ["LoRA r=1", "(IA)³", "BitFit", "Houlsby r=8", "Pfeiffer r=64"])
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in texts]
    assert len(boxes) == 5
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def test_point_labels_keep_off_the_points_and_their_error_bars():
    import matplotlib.pyplot as plt
    from matplotlib.transforms import Bbox
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [1e4, 1.15e4, 1.3e4, 1.5e4, 1.7e4, 2e4, 2.3e4]  # seven methods crowded into a factor of 2.3
    ys, errs = [80.0, 80.3, 79.8, 80.5, 80.1, 79.9, 80.4], [0.8, 0.5, 1.0, 0.6, 0.9, 0.7, 0.5]
    ax.errorbar(xs, ys, yerr=errs, fmt="o")
    ax.set(xscale="log", ylim=(70, 84))  # the comparison's range: room above and below the crowd, none inside it
    texts = plots.place_labels(ax, xs, ys, [f"method number {i}" for i in range(7)], yerr=errs)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [matplotlib.text.Text.get_window_extent(t, renderer) for t in texts]  # the words, not the leader line
    low, high = ax.transData.transform(np.c_[xs, np.subtract(ys, errs)]), ax.transData.transform(
        np.c_[xs, np.add(ys, errs)])
    bars = [Bbox.from_extents(a[0] - 2, a[1], a[0] + 2, b[1]) for a, b in zip(low, high)]
    assert not any(box.overlaps(bar) for box in boxes for bar in bars)
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    assert any(t.arrow_patch is not None for t in texts)  # a crowd this dense needs leader lines


def test_short_module_names_drop_what_all_share_and_stay_apart():
    columns = ["word_embeddings", "LayerNorm", "attention.self.query", "attention.output.dense",
               "attention.output.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm", "dense", "head"]
    assert parameter_maps.short_module_names(columns) == [
        "word_emb", "LayerNorm", "query", "attn.output.dense", "attn.output.LayerNorm", "intermediate.dense",
        "output.dense", "output.LayerNorm", "dense", "head"]
    assert parameter_maps.short_module_names(["self_attn.q_proj", "mlp.down_proj"]) == ["q_proj", "down_proj"]


def meta_model(kind):
    """A model of MiniLM's or SmolLM2's shapes on the meta device (no memory, no weights): what the maps draw."""
    import torch
    from transformers import BertConfig, BertModel, LlamaConfig, LlamaForCausalLM

    from minipeft.methods.probing import Classifier
    with torch.device("meta"):
        if kind == "minilm":
            return Classifier(BertModel(BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                                                   intermediate_size=1536)), 2)
        return LlamaForCausalLM(LlamaConfig(vocab_size=49152, hidden_size=576, num_hidden_layers=30,
                                            num_attention_heads=9, num_key_value_heads=3, intermediate_size=1536))


def assert_readable(fig):
    """The figure fits a notebook (≤ 900 px at 100 dpi); no label, title or cell number is cut by the figure's edge;
    every number sits inside its cell; no type under 7 pt."""
    fig.set_dpi(100)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    assert fig.bbox.width <= 900 + 1e-6, f"{fig.bbox.width:.0f} px wide"
    for ax in fig.axes:
        labels = ax.get_xticklabels() + ax.get_yticklabels() + [ax.title]
        for text in labels + ax.texts:
            box = text.get_window_extent(renderer)
            assert fig.bbox.x0 - 0.5 <= box.x0 and box.x1 <= fig.bbox.x1 + 0.5, f"{text.get_text()!r} cut at a side"
            assert fig.bbox.y0 - 0.5 <= box.y0 and box.y1 <= fig.bbox.y1 + 0.5, f"{text.get_text()!r} cut at an end"
            assert text.get_fontsize() >= 7, f"{text.get_text()!r} in {text.get_fontsize()} pt"
        for text in ax.texts:  # the numbers in the cells
            x, y = text.get_position()
            (left, bottom), (right, top) = ax.transData.transform([(x - 0.5, y + 0.5), (x + 0.5, y - 0.5)])
            box = text.get_window_extent(renderer)
            assert left <= box.x0 and box.x1 <= right and bottom <= box.y0 and box.y1 <= top, \
                f"{text.get_text()!r} spills out of its cell"


def test_parameter_maps_fit_a_notebook_and_cut_no_label():
    minilm = meta_model("minilm")
    full = build({"method": "finetune"}, minilm)  # 11.7M in the word embeddings: the widest number
    assert_readable(plots.parameter_map(full, title="full fine-tuning").figure)
    lora = {f"LoRA {label}": build({"method": "lora", "kwargs": {"targets": targets, "r": 4}}, minilm)
            for label, targets in [("q,v", ["query", "value"]), ("FFN", ["intermediate.dense", "output.dense"]),
                                   ("q,k,v,o", ["query", "key", "value", "attention.output.dense"])]}
    assert_readable(plots.parameter_maps(lora))
    smollm2 = meta_model("smollm2")
    assert_readable(plots.parameter_maps({"SmolLM2, LoRA": apply_lora(smollm2, ["q_proj", "v_proj"], r=8)}))


@pytest.fixture(autouse=True)
def close_figures():
    yield
    matplotlib.pyplot.close("all")
