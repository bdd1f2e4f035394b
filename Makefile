# The README's commands. Each target creates .venv on first use and installs into it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: demo test lint synth bench clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt -e ".[all]"
	@touch $@

demo: $(STAMP)
	$(VENV)/bin/saga demo

test: $(STAMP) lint
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .

synth: $(STAMP)
	CDK_OUTDIR=cdk.out $(PY) app.py
	@echo "wrote cdk.out/"

bench: $(STAMP)
	$(PY) bench/run.py

clean:
	rm -rf cdk.out .pytest_cache .ruff_cache
