# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# The venv is (re)installed only when pyproject.toml changes (stamp file), so a second run is quick.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CORES  ?= 2
# `make gpu-check` looks PYTHON up on the PATH the user had, not the one with the venv first.
USER_PATH := $(PATH)
# Rules call the `reid` and `pseudomasks` console scripts of this venv.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: demo test test-fast lint format venv clean gpu-check gpu-wheels

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

## Prove the GPU paths on a CUDA machine, offline, in minutes, with PYTHON (not the venv):
## installs this checkout into it (pip --no-deps --no-index; WHEELS=dir adds those wheels),
## runs the tests marked gpu and measures the figures; without a GPU each GPU part skips.
## Here: make gpu-check PYTHON=.venv/bin/python
GPU_CHECK_JSON ?= results/gpu_check.json
gpu-check:
	env PATH="$(USER_PATH)" $(PYTHON) tools/gpu_check.py --out $(GPU_CHECK_JSON) $(if $(WHEELS),--wheels $(WHEELS))

## The WHEELS folder for a GPU node without network, made here (tools/gpu_wheels.py): every
## package the check needs that the node lacks, for the node's Python. On the node first:
## python3 -m pip list --format=freeze > node-packages.txt
## Here: make gpu-wheels NODE_PACKAGES=node-packages.txt NODE_PYTHON=3.12 [WHEELS=wheels]
gpu-wheels: $(STAMP)
	$(if $(and $(NODE_PACKAGES),$(NODE_PYTHON)),,$(error make gpu-wheels needs NODE_PACKAGES=<file \
	  of the node's `python3 -m pip list --format=freeze`> and NODE_PYTHON=<its version, e.g. 3.12>))
	$(BIN)/python tools/gpu_wheels.py --node-packages $(NODE_PACKAGES) --python-version $(NODE_PYTHON) --out $(or $(WHEELS),wheels)

clean:
	rm -rf $(VENV)
