"""What a student sees in JupyterLab, checked in a headless Chromium (tests/jupyterlab_browser.py).

JupyterLab starts from this environment on a free local port with a token, with MINIPEFT_QUICK=1 and its own Jupyter
folders (the course's kernelspec in them), serving copies of the notebooks in a temporary folder:
- notebooks 06 and 07, Run All (QUICK): the size sliders render as sliders, sit where the code put them, move with
  the arrow keys to the trainable count, share and file size the closed form gives, clear the last run's output,
  and the train button trains the chosen size (disabled meanwhile) and reports its accuracy;
- the committed notebooks, trusted as setup trusts them: their saved widgets (sliders, progress bars) show as
  widgets, and opening one does not mark it modified.
Screenshots of every check go to $MINIPEFT_SCREENSHOTS (default: a temporary folder, printed at the end).

Without Chromium, chromedriver or selenium these tests skip, unless MINIPEFT_BROWSER_TESTS=required (CI), where they
fail instead.
"""
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import nbformat
import pytest

from jupyterlab_browser import JupyterLab, Page, missing_browser

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
REQUIRED = os.environ.get("MINIPEFT_BROWSER_TESTS", "") == "required"
RUN_ALL_TIMEOUT = 480  # both notebooks at once, QUICK, on 2 busy cores: about 3 minutes
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def minilm_shapes():
    """(layers, d, parameters) of MiniLM, from its config (a model on the meta device: no weights are read)."""
    import torch
    from transformers import AutoConfig, BertModel

    from minipeft.lab.models import encoder_path
    config = AutoConfig.from_pretrained(encoder_path())
    with torch.device("meta"):
        total = sum(p.numel() for p in BertModel(config).parameters())
    return config.num_hidden_layers, config.hidden_size, total


def closed_form(notebook: str):
    """size -> trainable parameters (head included) of the slider in notebook 06 or 07, from the method's closed
    form, and the frozen base model's parameters."""
    from minipeft.methods.bottleneck import bottleneck_parameter_count
    from minipeft.methods.lora import lora_parameter_count
    from minipeft.methods.probing import probe_parameter_count
    layers, d, total = minilm_shapes()
    head = probe_parameter_count(d, 2)
    if notebook == "06":
        return (lambda r: bottleneck_parameter_count(layers, d, r, "pfeiffer") + head), total
    return (lambda r: lora_parameter_count([(d, d)] * (2 * layers), r) + head), total


EXPLORERS = {  # notebook -> (file, the slider's name, its sizes)
    "06": ("06_adapter_tuning.ipynb", "bottleneck r", [1, 2, 4, 8, 16, 32, 64, 128]),
    "07": ("07_lora_bitfit_ia3.ipynb", "rank r", [1, 2, 4, 8, 16, 32, 64]),
}


@pytest.fixture(scope="module")
def screenshots(request, tmp_path_factory):
    folder = Path(os.environ.get("MINIPEFT_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    yield folder
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter and capture:
        with capture.global_and_fixture_disabled():  # past pytest's output capture, onto the terminal
            reporter.write_line(f"\nbrowser test screenshots: {folder}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab serving run/ (copies of 06 and 07, to execute) and committed/ (copies of every notebook as
    committed, trusted), with the course's kernel, MINIPEFT_QUICK=1 and this checkout first on the path."""
    why = missing_browser()
    if why:
        if REQUIRED:
            pytest.fail(f"the browser tests are required here (MINIPEFT_BROWSER_TESTS=required), but {why}")
        pytest.skip(f"browser tests skipped: {why}")
    from minipeft.lab.kernel import set_kernelspec, write_kernelspec

    base = tmp_path_factory.mktemp("jupyterlab")
    root, state = base / "root", base / "state"
    for folder in ["run", "committed"]:
        (root / folder).mkdir(parents=True)
        for helper in ["exercises", "solutions"]:  # the notebooks import them from their own folder
            shutil.copytree(NOTEBOOKS / helper, root / folder / helper, ignore=shutil.ignore_patterns("__pycache__"))
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        shutil.copy(path, root / "committed" / path.name)
    for name, _, _ in EXPLORERS.values():
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        set_kernelspec(nb)  # as run_notebooks.py saves them
        nbformat.write(nb, root / "run" / name)
    write_kernelspec(state / "data" / "kernels")
    settings = state / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    settings.parent.mkdir(parents=True)
    settings.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))  # no news prompt
    env = {"MINIPEFT_QUICK": "1", "MINIPEFT_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
    server = JupyterLab(root, state, env)
    server.jupyter("trust", *[str(p) for p in sorted((root / "committed").glob("*.ipynb"))])  # as setup does
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def page(lab, screenshots):
    browser = Page(lab, screenshots)
    browser.load()
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def ran(page):
    """Notebooks 06 and 07 after Run All, both at once (two kernels); {notebook: seconds until done}."""
    started = time.monotonic()
    for name, _, _ in EXPLORERS.values():
        page.open(f"run/{name}")
        page.run_all()
    seconds = {}
    for key, (name, _, _) in EXPLORERS.items():
        page.activate(f"run/{name}")
        page.wait_until_run(RUN_ALL_TIMEOUT - (time.monotonic() - started))
        seconds[key] = round(time.monotonic() - started)
    return seconds


def explorer_cell(page) -> int:
    return next(i for i in range(page.cell_count()) if "SizeExplorer(" in page.cell_source(i)
                and page.cell_source(i).rstrip().endswith("explorer"))


def slider_set_by_the_code(page, cell: int) -> int:
    """Where the notebook's code leaves the slider: the explorer's value=, or the last `explorer.slider.value = …`
    of a later cell."""
    value = int(re.search(r"value=(\d+)", page.cell_source(cell))[1])
    for i in range(cell + 1, page.cell_count()):
        for moved in re.findall(r"^explorer\.slider\.value\s*=\s*(\d+)", page.cell_source(i), re.M):
            value = int(moved)
    return value


def shown(page, cell: int) -> dict:
    """What the explorer in `cell` shows: slider readout, info text, training output, the button."""
    out = page.outputs(cell)
    return page.js(
        "const o = arguments[0]; const b = o.querySelector('button.jupyter-button');"
        "const text = s => { const e = o.querySelector(s); return e ? e.innerText.trim() : null; };"
        "return {handles: o.querySelectorAll('.noUi-handle').length, readout: text('.widget-readout'),"
        " info: text('.widget-html'), output: text('.widget-output'), all: o.innerText,"
        " button: b ? b.innerText.trim() : null, button_cut: b ? b.scrollWidth > b.clientWidth + 1 : null,"
        " disabled: b ? b.disabled : null};", out)


def numbers_text(count, frozen, size) -> list[str]:
    """The trainable count, share and file size the explorer must write for `size`, as it writes them."""
    n = count(size)
    return [f"trainable {n:,}", f"{100 * n / (frozen + n):.3f} % of the model", f"≈ {4 * n / 1024:,.1f} kB"]


@pytest.mark.parametrize("notebook", sorted(EXPLORERS))
def test_size_slider_after_run_all_moves_with_the_keyboard_and_trains(page, ran, notebook):
    name, label, sizes = EXPLORERS[notebook]
    count, frozen = closed_form(notebook)
    page.activate(f"run/{name}")
    cell = explorer_cell(page)
    errors = [i for i in page.errors() if i <= cell]
    assert not errors, f"{name}: cells {errors} failed before the slider (see {page.screenshot(notebook + '-error')})"
    now = shown(page, cell)
    page.screenshot(f"{notebook}-1-after-run-all", page.outputs(cell))
    assert now["handles"] == 1 and "Error displaying widget" not in now["all"], f"{name}: no slider: {now['all']!r}"
    size = slider_set_by_the_code(page, cell)
    assert now["readout"] == str(size) and f"{label} = {size}" in now["info"], now
    for text in numbers_text(count, frozen, size):
        assert text in now["info"], (text, now["info"])

    handle = page.js("return arguments[0].querySelector('.noUi-handle')", page.outputs(cell))
    from selenium.webdriver.common.keys import Keys
    for key, step in [(Keys.ARROW_LEFT, -1), (Keys.ARROW_RIGHT, 1), (Keys.ARROW_RIGHT, 1)]:
        page.js("arguments[0].focus()", handle)
        handle.send_keys(key)
        size = sizes[sizes.index(size) + step]
        page.wait(lambda: shown(page, cell)["readout"] == str(size), 20, f"the slider to reach {size}")
        page.wait(lambda: all(t in (shown(page, cell)["info"] or "") for t in numbers_text(count, frozen, size)),
                  20, f"the numbers of {label} = {size}")
        now = shown(page, cell)
        assert not now["output"], f"the last run's output stayed under the slider: {now['output']!r}"
    page.screenshot(f"{notebook}-2-moved-with-arrow-keys", page.outputs(cell))

    assert now["button"] == f"Train {label} = {size} live" and not now["button_cut"], now["button"]
    page.js("arguments[0].click()", page.js("return arguments[0].querySelector('button.jupyter-button')",
                                            page.outputs(cell)))
    page.wait(lambda: shown(page, cell)["disabled"], 30, "the button to be disabled while training")
    page.screenshot(f"{notebook}-3-training", page.outputs(cell))
    done = f"{label} = {size}: live accuracy "
    page.wait(lambda: done in (shown(page, cell)["output"] or ""), 180, f"the live run of {label} = {size}")
    page.wait(lambda: not shown(page, cell)["disabled"], 30, "the button to come back")
    now = shown(page, cell)
    page.screenshot(f"{notebook}-4-trained", page.outputs(cell))
    accuracy = re.search(re.escape(done) + r"([01]\.\d{3})", now["output"])[1]
    assert f"training {label} = {size} …" in now["output"] and f"live run {accuracy}" in now["info"], now


def test_a_notebook_saved_by_run_notebooks_opens_unmodified_with_its_widgets(page, lab, monkeypatch):
    """The whole chain on a small notebook (a progress bar, a SizeExplorer): run_notebooks.py runs and saves it,
    signing it in this JupyterLab's trust database as setup would; opened, it shows its saved widgets as widgets
    (the bar full, the slider where it was) and its tab is not marked modified."""
    from test_notebooks import SMALL_NOTEBOOK, run_notebooks

    monkeypatch.setenv("JUPYTER_DATA_DIR", str(lab.state / "data"))
    path = lab.root / "committed" / "small_saved_by_run_notebooks.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in SMALL_NOTEBOOK]), path)
    run_notebooks.run(path, quick=True, save=True, timeout=300)
    page.open(f"committed/{path.name}")
    time.sleep(3)  # JupyterLab writes the kernel's metadata just after the kernel is ready
    bar, explorer = page.outputs(1), page.outputs(2)
    page.wait(lambda: page.js("return arguments[0].querySelectorAll('.jupyter-widgets').length", explorer), 20,
              "the saved widgets")
    page.screenshot("saved-by-run-notebooks", explorer)
    assert page.js("return arguments[0].querySelectorAll('.noUi-handle').length", explorer) == 1
    assert page.js("return arguments[0].querySelector('.widget-readout').innerText", explorer) == "2"
    button = page.js("return arguments[0].querySelector('button.jupyter-button')", explorer)
    assert button.text == "Train rank r = 2 live", button.text  # the whole label, not "Train rank r…"
    assert page.js("return arguments[0].scrollWidth <= arguments[0].clientWidth + 1", button), "the label is cut"
    assert "3/3" in page.js("return arguments[0].innerText", bar)  # the bar as it ended, drawn as a widget
    assert page.js("return arguments[0].querySelectorAll('.progress-bar, .widget-progress').length", bar)
    assert not page.is_dirty(), "a notebook saved by run_notebooks.py is marked modified on opening"


def widget_cells(nb) -> list[int]:
    """The cells whose saved outputs show widgets."""
    return [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
            and any(WIDGET_VIEW in out.get("data", {}) for out in cell.outputs)]


COMMITTED = ["04_prompt_tuning.ipynb", "06_adapter_tuning.ipynb", "07_lora_bitfit_ia3.ipynb"]


@pytest.mark.parametrize("name", COMMITTED)
def test_committed_notebook_shows_its_saved_widgets(page, name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    cells = widget_cells(nb)
    assert cells, f"{name} shows no widgets"
    page.open(f"committed/{name}")
    for i in cells:
        out = page.outputs(i)
        page.wait(lambda: page.js("return arguments[0].querySelectorAll('.jupyter-widgets').length", out), 20,
                  f"cell {i}'s widgets")
        text = page.js("return arguments[0].innerText", out)
        assert "Error displaying widget" not in text, f"{name} cell {i}: {text!r}"
        assert not re.search(r"[HV]Box\(children=|\d+%\|", text), f"{name} cell {i} shows widgets as text: {text!r}"
        if "SizeExplorer(" in nb.cells[i].source:
            assert page.js("return arguments[0].querySelectorAll('.noUi-handle').length", out) == 1
            page.screenshot(f"committed-{name[:2]}-explorer", out)


def test_every_committed_notebook_names_the_course_kernel():
    """JupyterLab marks a notebook modified when the kernel it starts has another name than the saved kernelspec."""
    for name in COMMITTED:
        spec = nbformat.read(NOTEBOOKS / name, as_version=4).metadata.get("kernelspec", {})
        assert spec.get("name") == "minipeft", f"{name}: re-run it with notebooks/run_notebooks.py"


@pytest.mark.parametrize("name", COMMITTED)
def test_opening_a_committed_notebook_does_not_mark_it_modified(page, name):
    """JupyterLab writes the running kernel's name and language_info into the notebook when the kernel is ready:
    if they differ from the saved ones, the tab is marked modified. Only a different Python patch version (the
    student's 3.11.x) may still change language_info."""
    page.open(f"committed/{name}")
    time.sleep(3)  # the metadata is written just after the kernel is ready
    page.screenshot(f"committed-{name[:2]}-opened")
    saved = json.loads((NOTEBOOKS / name).read_text())["metadata"]
    now = page.js("return window.jupyterapp.shell.currentWidget.context.model.toJSON().metadata")
    changed = {key for key in set(saved) | set(now) if saved.get(key) != now.get(key)}
    same_python = saved.get("language_info", {}).get("version") == "{}.{}.{}".format(*sys.version_info[:3])
    assert changed <= (set() if same_python else {"language_info"}), {k: (saved.get(k), now.get(k)) for k in changed}
    if same_python:
        assert not page.is_dirty(), f"{name} is marked modified on opening"

