"""Execute every numbered notebook top to bottom, in place, and record how long each took.

    python notebooks/run_notebooks.py            # full run: outputs are saved into the notebooks
    python notebooks/run_notebooks.py --quick    # MINIPEFT_QUICK=1: small data and few steps (what CI runs)
    python notebooks/run_notebooks.py 02 05      # only the notebooks whose names start with 02 or 05
    python notebooks/run_notebooks.py --note "a benchmark ran alongside"   # stored with the times (README: †)

The kernel is this interpreter's (the course's "Python (minipeft)" kernelspec written to a temporary folder), so a
run does not depend on which kernels the user has installed. A saved notebook holds the widgets' state (sliders,
progress bars), names the minipeft kernel and is signed (trusted) here: JupyterLab opens it without marking it
modified, and shows its widgets as widgets once it is trusted (`make setup` trusts the notebooks).
"""
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

from minipeft.lab.kernel import KERNEL_NAME, set_kernelspec, trust_notebooks, write_kernelspec

HERE = Path(__file__).resolve().parent


def notebooks(prefixes=()):
    """The numbered notebooks (NN_name.ipynb), those whose names start with one of `prefixes` if given."""
    found = sorted(p for p in HERE.glob("[0-9][0-9]_*.ipynb"))
    return [p for p in found if not prefixes or p.name.startswith(tuple(prefixes))]


def execute(nb, folder: Path, timeout: int = 1200):
    """Run an nbformat notebook top to bottom in this interpreter's kernel, in `folder`; the widget state of its
    outputs is stored in nb.metadata.widgets. Returns nb."""
    with tempfile.TemporaryDirectory() as kernels:
        write_kernelspec(kernels)
        manager = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=KernelSpecManager(kernel_dirs=[kernels]))
        NotebookClient(nb, km=manager, timeout=timeout, store_widget_state=True,
                       resources={"metadata": {"path": str(folder)}}).execute()
    return nb


def write_notebook(nb, path: Path) -> None:
    """Write an executed notebook as JupyterLab would keep it: the minipeft kernelspec (language_info is the
    kernel's already), nbformat 4.5 with cell ids; then trust it in this user's trust database."""
    set_kernelspec(nb)
    nbformat.validate(nb)
    nbformat.write(nb, path)
    trust_notebooks([path])


def run(path: Path, quick: bool, save: bool, timeout: int = 1200) -> float:
    """Execute one notebook file (QUICK mode or full), save it if asked; the seconds it took."""
    os.environ["MINIPEFT_QUICK"] = "1" if quick else "0"
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    execute(nb, path.parent, timeout)
    seconds = time.perf_counter() - start
    if save:
        write_notebook(nb, path)
    return seconds


if __name__ == "__main__":
    args = sys.argv[1:]
    quick = "--quick" in args
    note = args[args.index("--note") + 1] if "--note" in args else ""
    chosen = notebooks([a for a in args if not a.startswith("--") and a != note])
    times = {}
    for path in chosen:
        load = os.getloadavg()[0]  # for the record; the notebook before it raises it too
        times[path.name] = {"seconds": round(run(path, quick, save=not quick), 1),
                            "load_average_at_start": load, "utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
                            **({"note": note} if note else {})}
        print(f"{path.name}: {times[path.name]['seconds']} s", flush=True)
    if not quick:
        record = HERE.parent / "data" / "results" / "notebook_times.json"
        old = json.loads(record.read_text()) if record.exists() else {}
        record.write_text(json.dumps({**old, **times}, indent=2))
