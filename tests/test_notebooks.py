"""Every course notebook runs top to bottom in QUICK mode (what CI checks), and run_notebooks.py saves notebooks
that JupyterLab shows as they were run: widgets with their state, the minipeft kernel, trusted."""
import json
import re
import sys
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "notebooks"))
import run_notebooks  # noqa: E402

NOTEBOOKS = run_notebooks.notebooks()
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def test_there_are_notebooks():
    assert any(p.name.startswith("00_setup") for p in NOTEBOOKS)


@pytest.mark.slow
@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_quick_mode(path, monkeypatch):
    monkeypatch.setenv("MINIPEFT_QUICK", "1")
    run_notebooks.run(path, quick=True, save=False)


def widget_views(nb) -> list[str]:
    """The model ids of the widgets a notebook's outputs show."""
    return [out["data"][WIDGET_VIEW]["model_id"] for cell in nb.cells if cell.cell_type == "code"
            for out in cell.outputs if WIDGET_VIEW in out.get("data", {})]


def missing_widget_state(nb) -> list[str]:
    """The widget models a saved notebook needs to draw its widgets but does not hold: each view's model, and
    every model those refer to (a slider's layout and style, a box's children)."""
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    needed = set(widget_views(nb)) | set(re.findall(r"IPY_MODEL_([0-9a-f]+)", json.dumps(state)))
    return sorted(needed - set(state))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_notebooks_hold_the_state_of_every_widget_they_show(path):
    nb = nbformat.read(path, as_version=4)
    assert not missing_widget_state(nb), f"{path.name}: re-run it with notebooks/run_notebooks.py"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_notebooks_name_the_course_kernel(path):
    """JupyterLab marks a notebook modified on opening when its kernel's name differs from the saved kernelspec."""
    spec = nbformat.read(path, as_version=4).metadata.get("kernelspec", {})
    assert spec.get("name") == "minipeft", f"{path.name}: re-run it with notebooks/run_notebooks.py"


SMALL_NOTEBOOK = [
    "import os, sys\nprint(sys.executable)\nprint('OMP_WAIT_POLICY', os.environ.get('OMP_WAIT_POLICY'))\n"
    "print('MINIPEFT_QUICK', os.environ.get('MINIPEFT_QUICK'))",
    "from tqdm.auto import tqdm\nfor _ in tqdm(range(3), desc='steps'):\n    pass",
    "from minipeft.lab.widgets import SizeExplorer\nexplorer = SizeExplorer([1, 2, 4], lambda r: 10 * r, 1000,"
    " train=lambda r: 0.5, value=2)\nexplorer",
]


@pytest.mark.notebooks
def test_run_notebooks_saves_widget_state_kernel_and_trust(tmp_path, monkeypatch):
    """A small notebook run by run_notebooks in QUICK mode: its saved file holds the state of every widget its
    outputs show (a progress bar, a slider), names the minipeft kernel, ran in this interpreter with the kernel's
    environment, and is trusted (signed) here."""
    from nbformat.sign import NotebookNotary

    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter"))  # a scratch trust database
    monkeypatch.setenv("JUPYTER_PREFER_ENV_PATH", "0")  # ... whose kernelspecs come first
    for name in ["minipeft", "python3"]:  # a user's broken kernelspecs must not matter
        spec = tmp_path / "jupyter" / "kernels" / name / "kernel.json"
        spec.parent.mkdir(parents=True)
        spec.write_text(json.dumps({"argv": ["/nonexistent/python", "-m", "ipykernel_launcher", "-f",
                                             "{connection_file}"], "display_name": name, "language": "python"}))
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)  # only the course's kernelspec may set it
    path = tmp_path / "small.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in SMALL_NOTEBOOK])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    run_notebooks.run(path, quick=True, save=True, timeout=300)

    saved = nbformat.read(path, as_version=4)
    printed = "".join(out.get("text", "") for out in saved.cells[0].outputs)
    assert printed.splitlines() == [sys.executable, "OMP_WAIT_POLICY PASSIVE", "MINIPEFT_QUICK 1"]
    views = widget_views(saved)
    assert len(views) == 2  # the progress bar and the explorer
    assert not missing_widget_state(saved)
    state = saved.metadata["widgets"][WIDGET_STATE]["state"]
    slider = next(m["state"] for m in state.values() if m["model_name"] == "SelectionSliderModel")
    assert slider["_options_labels"][slider["index"]] == "2"  # where the explorer put it
    bar = next(m["state"] for m in state.values() if m["model_name"] == "FloatProgressModel")
    assert bar["value"] == bar["max"] == 3  # the bar as it ended, not 0 %
    assert saved.metadata["kernelspec"] == {"display_name": "Python (minipeft)", "language": "python",
                                            "name": "minipeft"}
    assert saved.metadata["language_info"]["version"] == "{}.{}.{}".format(*sys.version_info[:3])
    assert saved.nbformat == 4 and saved.nbformat_minor >= 5 and all(cell.get("id") for cell in saved.cells)
    assert NotebookNotary().check_signature(saved)
