"""A slider that turns a size knob (bottleneck r, LoRA rank r, prompt length k) into what that size costs.

    ┌ rank r ──●──────────── 16 ┐   trainable 50,690 · 0.22 % of the model · adapter file ≈ 198 kB
    │ [ Train r = 16 live ]     │   accuracy (committed sweep) 0.781 · live run 0.772

Moving the slider recomputes the numbers from the method's closed-form count at once (no model is built);
the accuracy comes from a committed sweep (data/results/rank_sweep.json), and the button trains the chosen size
live on a small subset (the notebook supplies the training function, so the progress bar shows in its output).
"""
import html
import json

import ipywidgets as W


class SizeExplorer:
    """sizes: the slider's values; count(size) -> trainable parameters (closed form, head included);
    frozen: the parameters that stay frozen (the base model, without the head); sweep: {size: accuracy} or None;
    train(size) -> accuracy, or None for no button."""

    def __init__(self, sizes, count, frozen: int, sweep=None, train=None, name="rank r", value=None):
        self.count, self.frozen, self.sweep, self.train = count, frozen, dict(sweep or {}), train
        self.live = {}
        sizes = list(sizes)
        self.slider = W.SelectionSlider(options=sizes, value=value if value in sizes else sizes[len(sizes) // 2],
                                        description=name, continuous_update=True,
                                        layout=W.Layout(width="420px"), style={"description_width": "initial"})
        self.info = W.HTML()
        self.button = W.Button(description="Train this size live", icon="play") if train else None
        self.output = W.Output()
        self.slider.observe(lambda change: self.refresh(), names="value")
        if self.button:
            self.button.on_click(self.train_live)
        self.refresh()

    def numbers(self, size=None) -> dict:
        """Everything the widget shows for one size, as numbers (what the tests check)."""
        size = self.slider.value if size is None else size
        params = self.count(size)
        return {"size": size, "trainable": params, "percent": 100.0 * params / (self.frozen + params),
                "file_bytes": 4 * params,  # fp32 tensors; safetensors adds a header of a few hundred bytes
                "sweep_accuracy": self.sweep.get(size), "live_accuracy": self.live.get(size)}

    def refresh(self) -> None:
        n = self.numbers()
        acc = lambda a: "not measured" if a is None else f"{a:.3f}"  # noqa: E731
        self.info.value = (f"<b>{html.escape(str(self.slider.description))} = {n['size']}</b>: "
                           f"trainable <b>{n['trainable']:,}</b> · {n['percent']:.3f} % of the model · "
                           f"adapter file ≈ {n['file_bytes'] / 1024:,.1f} kB<br>"
                           f"accuracy: committed sweep {acc(n['sweep_accuracy'])} · live run {acc(n['live_accuracy'])}")

    def train_live(self, _=None) -> float:
        size = self.slider.value
        with self.output:
            self.live[size] = float(self.train(size))
        self.refresh()
        return self.live[size]

    @property
    def widget(self):
        controls = [self.slider] + ([self.button] if self.button else [])
        return W.VBox([W.HBox(controls), self.info, self.output])

    def _ipython_display_(self):
        from IPython.display import display
        display(self.widget)


def sweep_accuracy(results: dict, method: str, size_key: str, **where) -> dict:
    """{size: test accuracy} from a compare.py results file, e.g. (rank_sweep, "lora", "r") → {1: 0.71, ...}.
    `where` keeps runs whose other kwargs match (placement="pfeiffer"); with several seeds, their mean. Only final
    runs have a test accuracy (a key without a phase is from before the search existed: all its runs are final)."""
    found = {}
    for run in results["runs"]:
        _, run_method, kwargs, _, _, _, *phase = json.loads(run["key"])
        if phase == ["search"]:
            continue
        if run_method == method and size_key in kwargs and all(kwargs.get(k) == v for k, v in where.items()):
            found.setdefault(kwargs[size_key], []).append(run["test"])
    return {size: sum(accs) / len(accs) for size, accs in sorted(found.items())}
