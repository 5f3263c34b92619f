# `make demo` and `make test` create .venv on first use and install clutune into it, at the exact versions of
# constraints.txt (pyproject.toml itself states ranges, for installing into an existing environment).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER := 0
export RAY_AUTH_MODE := disabled
export RAY_USAGE_STATS_ENABLED := 0
export RAY_CHDIR_TO_TRIAL_DIR := 0
export TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S := 0
export NO_MKDOCS_2_WARNING := 1

.PHONY: demo test lint bench docs

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# 8 UG-CLU trials on digits-agnostic-class, optimising kl_oracle_all and avg_gap together, on local Ray, with
# MLflow in ./mlflow.db. Each demo gets its own sweep folder so it can be run again.
demo: $(STAMP)
	$(BIN)/clutune sweep --config digits-agnostic-class --method ugclu --trials 8 --concurrency 2 \
		--set 'sweep.objectives=[kl_oracle_all, avg_gap]' --set sweep.storage_path=runs/demo/$$(date +%Y%m%d-%H%M%S)

test: $(STAMP)
	$(BIN)/ruff check clutune tests bench
	$(MAKE) docs
	$(BIN)/python -m pytest

# The documentation site into site/; --strict turns every warning (a broken link, an unknown page in nav, a
# reference mkdocstrings cannot resolve) into a failure. `$(BIN)/mkdocs serve` previews it while editing.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

bench: $(STAMP)
	$(BIN)/python bench/ablation.py
	$(BIN)/python bench/sweep_overhead.py

lint: $(STAMP)
	$(BIN)/ruff check clutune tests bench
