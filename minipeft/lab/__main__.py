"""`python -m minipeft.lab`: get this machine ready for the course (what `make setup` runs, quietly).

Converts SmolLM2 once into its fp32 cache (about 25 s the first time, with a progress bar), installs the
"Python (minipeft)" kernel, trusts the notebooks of this checkout, and prints one line.
"""
import sys

from .course import ROOT
from .kernel import KERNEL_DISPLAY_NAME, install_kernelspec, trust_notebooks
from .models import causal_lm_cache, encoder_path


def main(prefix: str = sys.prefix) -> str:
    """Prepare everything (the kernelspec for the environment under `prefix`, and the user); the line to print."""
    encoder_path()  # the MiniLM wheel is installed (a clear error otherwise)
    cache = causal_lm_cache()
    install_kernelspec(prefix)
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    trust_notebooks(notebooks)
    return (f"minipeft ready: SmolLM2 cache in {cache.parent}, kernel \"{KERNEL_DISPLAY_NAME}\" installed, "
            f"{len(notebooks)} notebooks trusted")


if __name__ == "__main__":
    print(main())
