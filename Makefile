# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# The venv is (re)installed only when pyproject.toml changes (stamp file), so a second run is quick.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CORES  ?= 2
# Rules call the `reid` and `pseudomasks` console scripts of this venv.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: demo test test-fast lint format venv clean

venv: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check -e ".[all]"
	bash tools/install_mmpose.sh $(BIN)/python
	touch $@

## Run the embedded demo end to end: synthetic species -> part maps -> PAW-ViT -> metrics.
demo: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) results/demo/metrics.json results/demo/figures/README.md
	$(BIN)/snakemake --report results/demo/report.html results/demo/figures/README.md
	@echo "Metrics: results/demo/metrics.json"; cat results/demo/metrics.json
	@echo "Figures and report: results/demo/figures/README.md, results/demo/report.html"

## The whole test suite (slow end-to-end tests included, each kept small).
test: $(STAMP)
	$(BIN)/python -m pytest -q

## Everything but the tests marked slow.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake --lint

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(BIN)/snakefmt Snakefile workflow/rules

clean:
	rm -rf $(VENV)
