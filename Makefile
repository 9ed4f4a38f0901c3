# mlops-reactor: every target installs what it needs on a fresh machine (Python 3.11+, node, npm).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP_PY := $(VENV)/.installed
STAMP_NODE := node_modules/.installed
# checkov pins packaging<24 and pytest needs >=24: it lives in a venv of its own, run as a command.
STAMP_CHECKOV := .venv-checkov/.installed

.PHONY: help setup browser test lint typecheck unit demo dev bench soak clean

help:
	@echo "make test   - install everything, lint, type-check and run the whole test suite"
	@echo "make demo   - install everything and run the end-to-end demo (stops by itself)"
	@echo "make dev    - install everything and run the local stack on http://127.0.0.1:7071 (Ctrl-C stops)"
	@echo "make bench  - performance figures (cold start, intake of events with and without work, table writes, alerts, burst, release, outage drain, collection, host RSS, local loop)"
	@echo "make soak   - long reliability runs: SIGKILL the host in SOAK_RUNS (50) release cycles; 10,000-event replay"

setup: $(STAMP_PY) $(STAMP_NODE) $(STAMP_CHECKOV)

$(STAMP_PY): requirements.txt requirements-dev.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

$(STAMP_CHECKOV): tests/infra/requirements-checkov.txt
	$(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/pip install --quiet --disable-pip-version-check -r tests/infra/requirements-checkov.txt
	touch $@

# --ignore-scripts: nothing is downloaded or built at install time; Azurite needs no install script.
$(STAMP_NODE): package.json package-lock.json
	npm ci --no-audit --no-fund --ignore-scripts
	touch $@

# The dashboard's screenshot test drives Debian's chromium; without root or apt it skips, saying so.
browser:
	@command -v chromium >/dev/null 2>&1 || { (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq chromium) >/dev/null 2>&1 || echo "chromium could not be installed: the dashboard \
		screenshot test will be skipped"; }

lint: $(STAMP_PY)
	$(VENV)/bin/ruff check .

typecheck: $(STAMP_PY)
	$(VENV)/bin/mypy .

test: setup browser lint typecheck
	$(VENV)/bin/pytest -q

demo: setup
	$(PY) -m embedded.demo

dev: setup
	@test -f local.settings.json || cp local.settings.sample.json local.settings.json
	$(PY) -m embedded.stack

bench: setup
	$(PY) bench/cold_start.py
	$(PY) bench/intake.py
	$(PY) bench/intake.py --data
	$(PY) bench/intake.py --clients 2 --batch 100 --events 3000
	$(PY) bench/store_writes.py
	$(PY) bench/table_rest.py
	$(PY) bench/alerts.py
	$(PY) bench/local_metrics.py
	$(PY) bench/burst.py --events 10000 --window 150
	$(PY) bench/release.py
	$(PY) bench/publish.py
	$(PY) bench/outage.py
	$(PY) bench/collect.py
	$(PY) bench/host_rss.py
	$(PY) bench/loop.py

# Not part of `make test`: the crash soak takes ~20 s per run, the replay ~10 min (2-core machine).
# The files are not named test_*, so only this target collects them. SOAK_RUNS, SOAK_SEED and
# SOAK_STREAM_EVENTS tune them.
SOAK_RUNS ?= 50
soak: setup
	SOAK_RUNS=$(SOAK_RUNS) $(VENV)/bin/pytest -q -s tests/soak/soak_crash.py tests/soak/soak_replay.py

clean:
	rm -rf $(VENV) .venv-checkov node_modules .azurite .pytest_cache .mypy_cache .ruff_cache
