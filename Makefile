# The two set-up commands of the README, and the pieces they are made of.
#   make demo   install, then decide a handful of addresses on the embedded default data
#   make test   install (system packages too), then lint, type-check and run the whole suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Debian packages the tests start for real (proxies, databases, load generator), and the C
# compiler and Python headers that build the optional compiled decision path (setup.py).
SYSTEM_PACKAGES := nginx wrk postgresql chromium openjdk-17-jre-headless gcc python3-dev
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test install system-deps lint typecheck unit bench bench-judgement

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(BIN)/python
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test]'

system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

demo: install
	$(BIN)/geogate demo

lint:
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/ruff check src tests bench scripts

typecheck:
	$(BIN)/mypy

unit:
	$(BIN)/pytest -q

test: system-deps install lint typecheck unit

bench: install
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[bench]'  # chart (matplotlib)
	$(BIN)/python bench/bench_decide.py
	$(BIN)/python bench/bench_service.py
	$(BIN)/python bench/bench_accounts.py
	$(BIN)/python bench/bench_scan.py
	$(BIN)/python bench/bench_preview.py

# Labelled account traffic judged by the account engine (bench/judgement/README.md);
# exits non-zero when precision, recall or weak-decided blocks miss their targets.
bench-judgement: install
	$(BIN)/python -m bench.judgement.run
