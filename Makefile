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

# The 500-saga soak takes as long as the rest of the suite: it runs in a second pytest process,
# beside the rest, so the two cores share the work (plain `pytest` still runs everything).
SOAK := tests/test_soak.py
SOAK_LOG := $(VENV)/soak.log

test: $(STAMP) lint
	@$(PY) -m pytest -q -p no:cacheprovider $(SOAK) >$(SOAK_LOG) 2>&1 & soak=$$!; \
	$(PY) -m pytest --ignore=$(SOAK); rest=$$?; \
	wait $$soak; soak_rc=$$?; \
	echo "--- $(SOAK) (second process) ---"; grep -v "^b'" $(SOAK_LOG) | tail -n 40; \
	test $$rest -eq 0 -a $$soak_rc -eq 0

lint: $(STAMP)
	$(VENV)/bin/ruff check .

synth: $(STAMP)
	CDK_OUTDIR=cdk.out $(PY) app.py
	@echo "wrote cdk.out/"

bench: $(STAMP)
	$(PY) bench/run.py

clean:
	rm -rf cdk.out .pytest_cache .ruff_cache
