# One setup path for a fresh machine: a venv in .venv, installed with constraints.txt.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo lint test clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev,ray]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/hf-probex demo

lint: setup
	$(VENV)/bin/ruff check hf_probex tests scripts spaces
	$(VENV)/bin/lint-imports --no-cache

test: lint
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -ra -n 2 --dist loadfile --no-loadscope-reorder

clean:
	rm -rf $(VENV) .pytest_cache
