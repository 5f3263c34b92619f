# `make demo` and `make test` create .venv on first use and install clutune into it, at the exact versions of
# constraints.txt (pyproject.toml itself states ranges, for installing into an existing environment).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Ray's, Tune's and MLflow's variables are set by clutune itself, from their one definition in
# clutune/platform/run/runtime.py: the commands and the Python API before Ray starts, tests/conftest.py for the
# suite, bench/sweep_overhead.py for its own Ray. This one is read by Material for MkDocs, which is not clutune, when
# mkdocs starts (it silences a banner about MkDocs 2), so only the shell can set it.
export NO_MKDOCS_2_WARNING := 1

.PHONY: demo test test-fast lint bench docs results

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

# Everything, the slowest 25 tests named at the end (docs/testing.md has the measured times).
test: $(STAMP)
	$(BIN)/ruff check clutune tests bench
	$(BIN)/ruff format --check clutune tests bench
	$(MAKE) docs
	$(BIN)/python -m pytest --durations=25

# The loop while editing, meant to stay under 5 minutes on 2 cores: every test but those marked slow (a cluster, a
# browser, a wheel, a kill and resume, a pip install, a sweep of more than a few trials). docs/testing.md says what
# it covers.
test-fast: $(STAMP)
	$(BIN)/ruff check clutune tests bench
	$(BIN)/ruff format --check clutune tests bench
	$(BIN)/python -m pytest -m "not slow" --durations=25

# The documentation site into site/; --strict turns every warning (a broken link, an unknown page in nav, a
# reference mkdocstrings cannot resolve) into a failure. `$(BIN)/mkdocs serve` previews it while editing.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

# Every table, figure and quoted number of README and docs/ rebuilt from the raw records in bench/results alone (no
# training; seconds): the derived files in place, then README's and the docs' generated blocks. `$(BIN)/python
# bench/make_results.py --check` changes nothing and lists what differs (tests/test_make_results.py runs it).
results: $(STAMP)
	$(BIN)/python bench/make_results.py

bench: $(STAMP)
	$(BIN)/python bench/ablation.py
	$(BIN)/python bench/sweep_overhead.py

lint: $(STAMP)
	$(BIN)/ruff check clutune tests bench
	$(BIN)/ruff format --check clutune tests bench
