# Everything runs inside a project-local virtual environment made from python3.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Never reach the Hub at run time: everything gift_hf needs ships with it or is made locally.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1

.PHONY: install quickstart test test-min lint docs benchmarks results clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

$(VENV)/.installed: $(BIN)/activate setup.cfg pyproject.toml
	$(BIN)/pip install -e ".[dev,docs]"
	touch $@

install: $(VENV)/.installed  ## create .venv and install gift_hf with its dev and docs extras

quickstart: install  ## the main job: teacher, random IPC=10 subset, CE vs KL vs GIFT students on digits
	$(OFFLINE) $(BIN)/gift-hf quickstart --output_dir outputs/quickstart

test: install  ## the test suite (offline, CPU)
	$(OFFLINE) $(BIN)/python -m pytest

# The oldest supported releases (constraints/minimum.txt, the lower bounds of setup.cfg) in a
# second environment, running the whole suite: the minimums setup.cfg declares are the ones CI proves.
MIN_VENV ?= .venv-min

$(MIN_VENV)/.installed: setup.cfg pyproject.toml constraints/minimum.txt
	$(PYTHON) -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/pip install --upgrade pip
	$(MIN_VENV)/bin/pip install -c constraints/minimum.txt -e ".[dev,docs]"
	touch $@

test-min: $(MIN_VENV)/.installed  ## the test suite on the minimum supported versions
	$(OFFLINE) $(MIN_VENV)/bin/python -m pytest -p no:cacheprovider

lint: install  ## ruff lint and format check (rules in pyproject.toml; .pre-commit-config.yaml runs the same)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

docs: install  ## build the documentation site in strict mode
	$(OFFLINE) $(BIN)/mkdocs build --strict

benchmarks: install  ## run every benchmark script
	for f in benchmarks/*.py; do $(OFFLINE) $(BIN)/python $$f || exit 1; done

# RESULTS_SIZE=ci: a smoke run of every step in a few minutes (its numbers mean nothing).
RESULTS_SIZE ?= full

results: install  ## regenerate every table and plot of docs/results.md and docs/when-gift-helps.md
	$(OFFLINE) OMP_NUM_THREADS=1 $(BIN)/gift-hf results --size $(RESULTS_SIZE)

clean:
	rm -rf $(VENV) $(MIN_VENV) outputs site build *.egg-info
