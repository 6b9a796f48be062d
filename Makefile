# Everything runs inside a project-local virtual environment made from python3.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Never reach the Hub at run time: everything gift_hf needs ships with it or is made locally.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1

.PHONY: install quickstart test docs benchmarks clean

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

docs: install  ## build the documentation site in strict mode
	$(OFFLINE) $(BIN)/mkdocs build --strict

benchmarks: install  ## run every benchmark script
	for f in benchmarks/*.py; do $(OFFLINE) $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) outputs site build *.egg-info
