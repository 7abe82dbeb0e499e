"""Execute every numbered notebook top to bottom, in place, and record how long each took.

    python notebooks/run_notebooks.py            # full run: outputs are saved into the notebooks
    python notebooks/run_notebooks.py --quick    # MINIPEFT_QUICK=1: small data and few steps (what CI runs)
    python notebooks/run_notebooks.py 02 05      # only the notebooks whose names start with 02 or 05
    python notebooks/run_notebooks.py --note "a benchmark ran alongside"   # stored with the times (README: †)
"""
import json
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent


def notebooks(prefixes=()):
    found = sorted(p for p in HERE.glob("[0-9][0-9]_*.ipynb"))
    return [p for p in found if not prefixes or p.name.startswith(tuple(prefixes))]


def run(path: Path, quick: bool, save: bool, timeout: int = 1200) -> float:
    os.environ["MINIPEFT_QUICK"] = "1" if quick else "0"
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()
    seconds = time.perf_counter() - start
    if save:
        nbformat.write(nb, path)
    return seconds


if __name__ == "__main__":
    args = sys.argv[1:]
    quick = "--quick" in args
    note = args[args.index("--note") + 1] if "--note" in args else ""
    chosen = notebooks([a for a in args if not a.startswith("--") and a != note])
    times = {}
    for path in chosen:
        load = os.getloadavg()[0]  # for the record; the notebook before it raises it too
        times[path.name] = {"seconds": round(run(path, quick, save=not quick), 1), "load_average_at_start": load,
                            "utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
                            **({"note": note} if note else {})}
        print(f"{path.name}: {times[path.name]['seconds']} s", flush=True)
    if not quick:
        record = HERE.parent / "data" / "results" / "notebook_times.json"
        old = json.loads(record.read_text()) if record.exists() else {}
        record.write_text(json.dumps({**old, **times}, indent=2))
