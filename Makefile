# `make demo` and `make test` create .venv on first use and install clutune into it.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER := 0
export RAY_AUTH_MODE := disabled
export RAY_USAGE_STATS_ENABLED := 0
export RAY_CHDIR_TO_TRIAL_DIR := 0
export TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S := 0

.PHONY: demo test lint bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/clutune run --config configs/digits-agnostic-class.yaml --method finetune --out runs/demo

test: $(STAMP)
	$(BIN)/ruff check clutune tests bench
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check clutune tests bench
