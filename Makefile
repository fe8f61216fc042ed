# Two entry points for a fresh machine: `make app` (install + start the app) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: app test lint bench system-deps setup clean-state

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .   # the `law-explorer` command (= python -m engine), usable from any folder
	touch $(STAMP)

setup: system-deps $(STAMP)

# Debian chromium: static PNG/SVG export of plotly figures (kaleido) and the browser test.
system-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

app: setup
	$(BIN)/streamlit run app.py

test: setup
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	for script in bench/*.py; do $(BIN)/python $$script || exit 1; done
