"""The course's small helpers: the thread count, QUICK mode, the kernel and trust that setup installs."""
import json
import os
import sys

import pytest

from minipeft.lab import course


def test_threads_follow_minipeft_threads(monkeypatch):
    monkeypatch.setenv("MINIPEFT_THREADS", "3")
    assert course.threads() == 3
    monkeypatch.setenv("MINIPEFT_THREADS", " 1 ")
    assert course.threads() == 1
    for bad in ["0", "-2", "two", "1.5"]:
        monkeypatch.setenv("MINIPEFT_THREADS", bad)
        with pytest.raises(ValueError, match="MINIPEFT_THREADS"):
            course.threads()


def test_threads_default_to_the_usable_physical_cores(monkeypatch):
    import psutil
    monkeypatch.delenv("MINIPEFT_THREADS", raising=False)
    n = course.threads()
    assert 1 <= n <= len(os.sched_getaffinity(0)) and n <= (psutil.cpu_count(logical=False) or n)
    monkeypatch.setattr(psutil, "cpu_count", lambda logical=True: 8 if not logical else 16)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})  # a container allowed 2 of 16 CPUs
    assert course.threads() == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    assert course.threads() == 8  # not the 16 hyperthreads


def test_setup_installs_the_kernel_and_trusts_the_notebooks(tmp_path, monkeypatch):
    """What `python -m minipeft.lab` (make setup) leaves behind, in a scratch Jupyter data folder and prefix."""
    import nbformat
    from nbformat.sign import NotebookNotary

    from minipeft.lab.__main__ import main
    from minipeft.lab.kernel import KERNEL_DISPLAY_NAME, KERNEL_NAME

    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "user"))
    line = main(prefix=str(tmp_path / "env"))
    assert "\n" not in line and line.startswith("minipeft ready")
    for folder in [tmp_path / "user" / "kernels", tmp_path / "env" / "share" / "jupyter" / "kernels"]:
        spec = json.loads((folder / KERNEL_NAME / "kernel.json").read_text())
        assert spec["argv"][0] == sys.executable and "ipykernel_launcher" in spec["argv"]
        assert spec["display_name"] == KERNEL_DISPLAY_NAME and spec["env"] == {"OMP_WAIT_POLICY": "PASSIVE"}
    notary = NotebookNotary(data_dir=str(tmp_path / "user"))
    notebooks = sorted((course.ROOT / "notebooks").glob("*.ipynb"))
    assert notebooks and all(notary.check_signature(nbformat.read(p, as_version=4)) for p in notebooks)
