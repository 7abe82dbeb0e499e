"""Every course notebook runs top to bottom in QUICK mode (what CI checks)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "notebooks"))
import run_notebooks  # noqa: E402

NOTEBOOKS = run_notebooks.notebooks()


def test_there_are_notebooks():
    assert any(p.name.startswith("00_setup") for p in NOTEBOOKS)


@pytest.mark.slow
@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_quick_mode(path, monkeypatch):
    monkeypatch.setenv("MINIPEFT_QUICK", "1")
    run_notebooks.run(path, quick=True, save=False)
