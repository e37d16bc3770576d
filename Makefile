# Developer entry points. `make test` is what CI runs (via .ci/run).
PYTHON ?= python3
# No "Entering directory" lines on stdout, also when make runs inside another make (CI, a test).
MAKEFLAGS += --no-print-directory
VENV   := .venv
BIN    := $(VENV)/bin
VALIDATOR := tests/validator
BROWSER_NPM := tests/browser
CHROMIUM := /usr/bin/chromium
# Demo feed for `make demo` / `make send-demo`: an office R-CHOP day (HL7), a hospital paclitaxel/carboplatin day
# (HL7), an office FOLFOX + bevacizumab day with a pump (FHIR), and a held visit (no stop time).
DEMO := fixtures/scenarios/S09.hl7 fixtures/scenarios/S11.hl7 fixtures/scenarios/S20.json fixtures/scenarios/S25.hl7

.PHONY: install test lint typecheck pytest run demo send-demo bench crash-test crash-test-pg \
	pg-restart-test fuzz mappings hostile bench-ingest browser test-browser clean

# Recipes that build the environment are silent on stdout, so `make run > claims.json` holds
# only the Bundle; progress goes to stderr.
$(BIN)/python:
	@echo "creating $(VENV)" >&2
	@$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	@echo "installing charge-adapter and test tools into $(VENV)" >&2
	@$(BIN)/pip install --quiet --upgrade pip >&2
	@$(BIN)/pip install --quiet -e '.[test]' >&2
	@touch $@

$(VALIDATOR)/node_modules/.installed: $(VALIDATOR)/package.json
	@if command -v npm >/dev/null 2>&1; then \
	  cd $(VALIDATOR) && npm install --silent --no-audit --no-fund >&2 && touch node_modules/.installed; \
	else echo "npm not found: FHIR conformance tests will be skipped" >&2; fi

$(BROWSER_NPM)/node_modules/.installed: $(BROWSER_NPM)/package.json
	@if command -v npm >/dev/null 2>&1; then \
	  cd $(BROWSER_NPM) && npm install --silent --no-audit --no-fund >&2 && touch node_modules/.installed; \
	else echo "npm not found: axe-core missing, the browser tests will be SKIPPED (fail under CI)" >&2; fi

# The browser tests drive Debian's Chromium (Playwright's own download cannot work here).
# Installed when missing; if apt-get cannot, say so loudly: the tests then skip (fail under CI).
browser:
	@if [ ! -x $(CHROMIUM) ]; then \
	  echo "installing chromium for the browser tests (apt-get)" >&2; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >&2 \
	  || echo "*** chromium could not be installed: the browser tests will be SKIPPED (they fail when CI=true) ***" >&2; \
	fi

install: $(VENV)/.installed ## create .venv and install the package with test extras
	-@$(MAKE) -s --no-print-directory $(VALIDATOR)/node_modules/.installed >&2
	-@$(MAKE) -s --no-print-directory $(BROWSER_NPM)/node_modules/.installed >&2

# Only the test suite needs the browser: `make run` and `make demo` never wait for apt-get.
test-browser: install
	-@$(MAKE) -s --no-print-directory browser >&2

lint: install
	$(BIN)/ruff check adapter tests bench scripts deploy
	$(BIN)/ruff format --check adapter tests bench scripts deploy

typecheck: install
	$(BIN)/mypy

pytest: install test-browser
	$(BIN)/pytest -q

test: lint typecheck pytest ## ruff, mypy and the whole pytest suite

run: install ## start the service on SQLite (MLLP 2575, HTTP 8080; Ctrl-C stops it)
	@$(BIN)/charge-adapter serve

# The demo days are in January 2026: the crosswalk (2026 Q1) is in its period, the HCPCS and OPPS
# tables (2025 Q3/Q4, the newest CMS quarters in ../shared) are not, so D27 warns for those two.
demo: install ## code the bundled demo fixtures as a batch and print the FHIR Bundle of Claims
	@echo "demo: January 2026 visits; HCPCS and OPPS tables end 2025-12-31 (newest available), so D27 warns below" >&2
	@$(BIN)/charge-adapter code $(DEMO)

send-demo: install ## send the demo HL7 feed to a running service (make run) over MLLP
	@$(BIN)/charge-adapter send --host 127.0.0.1 --port 2575 $(filter %.hl7,$(DEMO))

bench: install ## every benchmark, ending with key=value lines (see bench/README.md); ~30 min
	$(BIN)/python bench/bench_coding.py
	$(BIN)/python bench/run_all.py $(BENCH_ARGS)
	$(BIN)/python bench/crash_test.py $(CRASH_ARGS)
	$(BIN)/python bench/hostile.py $(HOSTILE_ARGS)
	$(BIN)/python bench/ui_pages.py $(UI_ARGS)

# Issue 14's ingest figures alone (CPU per message, python-hl7 peer, limits, 2 workers):
# ~1.5 min quick (the default here), INGEST_ARGS= for the full ~5 min run.
INGEST_ARGS ?= --quick
bench-ingest: install ## ingest CPU/msg, the python-hl7 peer and the physical limits (bench/ingest_cpu.py)
	$(BIN)/python bench/ingest_cpu.py $(INGEST_ARGS)

hostile: install ## a live serve probed as a hostile peer would (2,000 partial frames, drips, fd limit); ~1 min
	$(BIN)/python bench/hostile.py $(HOSTILE_ARGS)

crash-test: install ## kill -9 the service 5 times under MLLP load (SQLite): nothing acked lost or billed twice
	$(BIN)/python bench/crash_test.py $(CRASH_ARGS)

crash-test-pg: install ## the same on PostgreSQL (a fresh schema on the local server, dropped after)
	$(BIN)/python bench/crash_test.py --store postgres $(CRASH_ARGS)

pg-restart-test: install ## restart PostgreSQL under load (needs root; not in CI): AE while down, recovers
	$(BIN)/python bench/pg_restart_test.py $(PG_RESTART_ARGS)

fuzz: install ## the hostile-input properties with large example counts (ADAPTER_FUZZ_EXAMPLES)
	ADAPTER_FUZZ=1 $(BIN)/pytest -q tests/test_fuzz_large.py

# `make mappings` rebuilds the generated tables from the copies in mappings/reference/ (a fresh
# clone needs nothing else); `make mappings SHARED=DIR` first takes in a new quarter's files from
# a directory laid out like the team's reference (DIR/drug-catalog-seed.csv, DIR/reference/).
mappings: install ## regenerate the CMS-derived tables in mappings/ from mappings/reference/
	$(BIN)/python scripts/build_mappings.py $(if $(SHARED),--shared $(SHARED))
	$(BIN)/python deploy/k8s/make_configmap.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache $(VALIDATOR)/node_modules \
	  $(BROWSER_NPM)/node_modules test-artifacts
