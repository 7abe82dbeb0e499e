"""The course's Jupyter kernel, and the notebooks' trust: what `make setup` installs and run_notebooks.py uses.

The notebooks name the kernelspec `minipeft` ("Python (minipeft)"): this environment's Python, with
OMP_WAIT_POLICY=PASSIVE set before torch loads (idle OpenMP threads sleep instead of spinning: with other processes
busy, a MiniLM training step on 2 threads took 0.4-1.0 s instead of 2.3-3.8 s; see course.threads). Setup
installs it for this environment's JupyterLab and for the user (VS Code or another Jupyter find it too), and trusts
the notebooks so that their saved widgets (sliders, progress bars) show as widgets, not as text.

A notebook whose metadata names exactly the kernel it runs in (name, display name, language_info) opens in
JupyterLab without being marked modified; `set_kernelspec` writes that metadata before a notebook is saved.
"""
import shutil
import sys
import tempfile
from pathlib import Path

KERNEL_NAME = "minipeft"
KERNEL_DISPLAY_NAME = "Python (minipeft)"
KERNEL_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}  # read by the OpenMP runtime when torch loads: it must come first


def write_kernelspec(folder) -> Path:
    """Write the course's kernelspec (this interpreter, KERNEL_ENV) as folder/minipeft/kernel.json; its path."""
    from ipykernel.kernelspec import write_kernel_spec

    path = Path(folder) / KERNEL_NAME
    shutil.rmtree(path, ignore_errors=True)
    write_kernel_spec(path, overrides={"display_name": KERNEL_DISPLAY_NAME, "env": dict(KERNEL_ENV)},
                      python_arguments=["-Xfrozen_modules=off"])  # as `ipykernel install` does (debugger)
    return path


def install_kernelspec(prefix: str = sys.prefix, user: bool = True) -> list[str]:
    """Install the kernelspec for this environment's Jupyter (under `prefix`) and, with `user`, for the user
    (~/.local/share/jupyter/kernels: other Jupyter front-ends and VS Code find it). The folders it went to."""
    from jupyter_client.kernelspec import KernelSpecManager

    manager = KernelSpecManager()
    with tempfile.TemporaryDirectory() as tmp:
        spec = write_kernelspec(tmp)
        places = [manager.install_kernel_spec(str(spec), KERNEL_NAME, prefix=prefix)]
        if user:
            places.append(manager.install_kernel_spec(str(spec), KERNEL_NAME, user=True))
    return places


def set_kernelspec(nb) -> None:
    """Name the course's kernel in a notebook's metadata (an nbformat node), as JupyterLab would write it."""
    nb.metadata["kernelspec"] = {"display_name": KERNEL_DISPLAY_NAME, "language": "python", "name": KERNEL_NAME}


def trust_notebooks(paths) -> int:
    """Sign notebooks in this user's Jupyter trust database (what `jupyter trust` does), so that JupyterLab
    shows their saved outputs as they are: widgets as widgets. How many were newly signed."""
    import nbformat
    from nbformat.sign import NotebookNotary

    notary, signed = NotebookNotary(), 0
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        if not notary.check_signature(nb):
            notary.sign(nb)
            signed += 1
    return signed
