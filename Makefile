# The README's commands. Each target creates .venv on first use and installs into it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: demo test lint synth bench clean promtool

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt -e ".[all]"
	@touch $@

demo: $(STAMP)
	$(VENV)/bin/saga demo

# The 500-saga soak takes as long as the rest of the suite: it runs in a pytest process of its
# own, beside the rest, which pytest-xdist spreads over $(WORKERS) workers, a test file each at a
# time. Much of a saga test is waiting (task timeouts, callback heartbeats, a Prometheus scrape),
# so more workers than cores still shortens the run (plain `pytest` still runs everything).
WORKERS ?= 3
# The local cloud's self-tests start and stop clouds of their own: they need a process where no
# session cloud runs yet, so they run first in the soak's.
SELFTEST := tests/local_cloud_selftest
SOAK := tests/test_soak.py
SOAK_LOG := $(VENV)/soak.log

# promtool checks and unit-tests the generated Prometheus alert rules in the suite. Debian's
# prometheus package has it (and the server); elsewhere install Prometheus yourself, see
# docs/prometheus.md (macOS: brew install prometheus).
promtool:
	@{ command -v promtool && command -v prometheus; } >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1; then \
	    if [ "$$(id -u)" -eq 0 ]; then sudo=; else sudo=sudo; fi; \
	    echo "promtool is missing: installing Debian's prometheus package"; \
	    $$sudo apt-get update -qq && \
	    $$sudo apt-get install -y --no-install-recommends prometheus; \
	  else \
	    echo "promtool is missing and this system has no apt-get: install Prometheus" \
	         "(macOS: brew install prometheus; elsewhere the release tarball of" \
	         "https://prometheus.io/download/ with promtool on the PATH), see docs/prometheus.md" >&2; \
	    exit 1; \
	  fi; }

test: $(STAMP) lint promtool
	@$(PY) -m pytest -q -p no:cacheprovider $(SELFTEST) $(SOAK) >$(SOAK_LOG) 2>&1 & soak=$$!; \
	$(PY) -m pytest -n $(WORKERS) --dist loadfile --ignore=$(SOAK) --ignore=$(SELFTEST); rest=$$?; \
	wait $$soak; soak_rc=$$?; \
	echo "--- $(SELFTEST) and $(SOAK) (second process) ---"; grep -v "^b'" $(SOAK_LOG) | tail -n 40; \
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
