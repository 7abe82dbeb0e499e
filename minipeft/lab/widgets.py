"""A slider that turns a size knob (bottleneck r, LoRA rank r, prompt length k) into what that size costs.

    rank r ──●──────────── 16   [ ▶ Train rank r = 16 live ]
    rank r = 16: trainable 148,226 · 0.648 % of the model · adapter file ≈ 579.0 kB
    accuracy: committed sweep 0.781 · live run 0.772
    training rank r = 16 …  ████████ 40/40 [loss=0.52, best=0.772]      (the button's run, under the slider)

Moving the slider recomputes the numbers from the method's closed-form count at once (no model is built) and
clears the last run's output; the accuracy comes from a committed sweep (data/results/rank_sweep.json), and the
button trains the chosen size live on a small subset (the notebook supplies the training function, so its progress
bar shows under the slider). While it trains, the button and the slider are disabled; they come back afterwards,
also when training fails. The live accuracy is what the training function returns (train()'s best validation).
"""
import html
import json

import ipywidgets as W


class SizeExplorer:
    """sizes: the slider's values; count(size) -> trainable parameters (closed form, head included);
    frozen: the parameters that stay frozen (the base model, without the head); sweep: {size: accuracy} or None;
    train(size) -> accuracy, or None for no button; name: what the slider sets ("rank r"); value: where the slider
    starts (one of sizes; the middle one if not given). Training a size (the button, or train_live(size) in a cell)
    never moves the slider."""

    def __init__(self, sizes, count, frozen: int, sweep=None, train=None, name="rank r", value=None):
        self.count, self.frozen, self.sweep, self.train = count, frozen, dict(sweep or {}), train
        self.live = {}
        sizes = list(sizes)
        if value is not None and value not in sizes:
            raise ValueError(f"value={value!r} is not one of the slider's sizes {sizes}")
        self.slider = W.SelectionSlider(options=sizes, value=sizes[len(sizes) // 2] if value is None else value,
                                        description=name, continuous_update=True,
                                        layout=W.Layout(width="420px"), style={"description_width": "initial"})
        self.info = W.HTML()
        self.button = W.Button(icon="play", layout=W.Layout(width="max-content")) if train else None
        self.output = W.Output()
        self.slider.observe(self.moved, names="value")
        if self.button:
            self.button.on_click(lambda _: self.train_live())
        self.refresh()

    def numbers(self, size=None) -> dict:
        """Everything the widget shows for one size, as numbers (what the tests check)."""
        size = self.slider.value if size is None else size
        params = self.count(size)
        return {"size": size, "trainable": params, "percent": 100.0 * params / (self.frozen + params),
                "file_bytes": 4 * params,  # fp32 tensors; safetensors adds a header of a few hundred bytes
                "sweep_accuracy": self.sweep.get(size), "live_accuracy": self.live.get(size)}

    def refresh(self) -> None:
        """Write the numbers of the slider's size, and the button's label."""
        n = self.numbers()
        acc = lambda a: "not measured" if a is None else f"{a:.3f}"  # noqa: E731
        self.info.value = (f"<b>{html.escape(self.label(n['size']))}</b>: "
                           f"trainable <b>{n['trainable']:,}</b> · {n['percent']:.3f} % of the model · "
                           f"adapter file ≈ {n['file_bytes'] / 1024:,.1f} kB<br>"
                           f"accuracy: committed sweep {acc(n['sweep_accuracy'])} · live run {acc(n['live_accuracy'])}")
        if self.button:
            self.button.description = f"Train {self.label(n['size'])} live"

    def label(self, size) -> str:
        """The slider's name and a size, as the widget writes them: rank r = 16."""
        return f"{self.slider.description} = {size}"

    def moved(self, change=None) -> None:
        """The slider moved: new numbers, and the last run's output (progress bar, result) goes."""
        self.output.clear_output()
        self.refresh()

    def train_live(self, size=None) -> float:
        """Train `size` (the slider's by default) with the notebook's function; its progress bar and result show
        under the slider, the button and slider are disabled meanwhile. Returns the accuracy (also in `live`)."""
        size = self.slider.value if size is None else size
        controls = [self.slider] + ([self.button] if self.button else [])
        for control in controls:
            control.disabled = True
        self.output.clear_output()
        error = None
        try:
            with self.output:
                print(f"training {self.label(size)} …", flush=True)
                try:  # caught here: inside a kernel the Output widget would swallow the exception
                    self.live[size] = float(self.train(size))
                except Exception as caught:
                    error = caught
                    print(f"training {self.label(size)} failed: {type(caught).__name__}: {caught}", flush=True)
                else:
                    print(f"{self.label(size)}: live accuracy {self.live[size]:.3f}", flush=True)
        finally:
            for control in controls:
                control.disabled = False
        if error is not None:
            raise error
        self.refresh()
        return self.live[size]

    @property
    def widget(self):
        """The whole explorer as one ipywidgets box: slider and button, the numbers, the training output."""
        controls = [self.slider] + ([self.button] if self.button else [])
        return W.VBox([W.HBox(controls), self.info, self.output])

    def _ipython_display_(self):
        from IPython.display import display
        display(self.widget)


RENAMED = {"adapter": "bottleneck"}  # method names in results written before the registry's names (issue 8)


def sweep_accuracy(results: dict, method: str, size_key: str, **where) -> dict:
    """{size: test accuracy} from a compare.py results file, e.g. (rank_sweep, "lora", "r") → {1: 0.71, ...}.
    `where` keeps runs whose other kwargs match (placement="pfeiffer"); with several seeds, their mean. Only final
    runs have a test accuracy (a key without a phase is from before the search existed: all its runs are final)."""
    found = {}
    for run in results["runs"]:
        _, run_method, kwargs, _, _, _, *phase = json.loads(run["key"])
        run_method = RENAMED.get(run_method, run_method)
        if phase == ["search"]:
            continue
        if run_method == method and size_key in kwargs and all(kwargs.get(k) == v for k, v in where.items()):
            found.setdefault(kwargs[size_key], []).append(run["test"])
    return {size: sum(accs) / len(accs) for size, accs in sorted(found.items())}
