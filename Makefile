# Two entry points: `make demo` and `make test`. Both create or reuse .venv with pip.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_DIR ?= ./demo-data
# pytest workers: all cores by default; CI machines have 2.
PYTEST_WORKERS ?= auto

.PHONY: demo test lint typecheck unit venv clean bench

venv: $(STAMP)

# Debian packages: libturbojpeg0 for wsidicomizer (DICOM-WSI conversion); dcmtk, the DICOM
# network peer the tests talk to.
DEBIAN_PACKAGES := libturbojpeg0 dcmtk chromium

$(STAMP): pyproject.toml
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then apt-get update -qq && apt-get install -y -qq $$missing; fi
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,ai]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/oncofed demo $(DEMO_DIR)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -n $(PYTEST_WORKERS) tests

test: lint typecheck unit

# Peers the benchmarks measure against: Orthanc (node server), dcmtk (C-STORE client), wrk
# (QIDO-RS load generator).
BENCH_DEBIAN_PACKAGES := orthanc orthanc-dicomweb dcmtk wrk

bench: $(STAMP)
	@missing=$$(for p in $(BENCH_DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then apt-get update -qq && apt-get install -y -qq $$missing; fi
	$(BIN)/pip install --quiet -e '.[dev,ai,bench]'
	for script in benchmarks/[a-z]*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache
