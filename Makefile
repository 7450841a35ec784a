# Quick start: `make run` serves the dashboard, `make test` runs every test. Both set up .venv first.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
PORT    ?= 8501
STAMP   := $(VENV)/.installed
TSTAMP  := $(VENV)/.installed-test
CHROMIUM := /usr/bin/chromium

.PHONY: run test venv browser clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel 2>&1 | grep -v 'is ignored' || true

# Reinstall when the dependency list changes; pip's own noise about the local indexes is filtered.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e . 2>&1 | grep -v 'is ignored' || true
	$(BIN)/python -c "import core, dashboard, torch, tensorly, streamlit" && touch $@

$(TSTAMP): pyproject.toml $(STAMP)
	$(BIN)/pip install -q -e '.[test]' 2>&1 | grep -v 'is ignored' || true
	$(BIN)/python -c "import pytest, hypothesis, playwright" && touch $@

venv: $(STAMP)

# The browser test drives Debian's Chromium; install it when missing (needs root or sudo, as in CI).
browser:
	@test -x $(CHROMIUM) || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }
	@test -x $(CHROMIUM) || { echo "chromium could not be installed at $(CHROMIUM)"; exit 1; }

run: $(STAMP)
	$(BIN)/streamlit run dashboard/app.py --server.address 127.0.0.1 --server.port $(PORT) \
	  --server.headless true --browser.gatherUsageStats false

test: $(TSTAMP) browser
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
