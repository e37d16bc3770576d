# Developer entry points. `make test` is what CI runs (via .ci/run).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
VALIDATOR := tests/validator
# Demo feed for `make run`: an office R-CHOP day (HL7), a hospital paclitaxel/carboplatin day
# (HL7), an office FOLFOX + bevacizumab day with a pump (FHIR), and a held visit (no stop time).
DEMO := fixtures/scenarios/S09.hl7 fixtures/scenarios/S11.hl7 fixtures/scenarios/S20.json fixtures/scenarios/S25.hl7

.PHONY: install test lint typecheck pytest run bench mappings clean

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

install: $(VENV)/.installed ## create .venv and install the package with test extras
	-@$(MAKE) --no-print-directory $(VALIDATOR)/node_modules/.installed

lint: install
	$(BIN)/ruff check adapter tests bench scripts
	$(BIN)/ruff format --check adapter tests bench scripts

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest -q

test: lint typecheck pytest ## ruff, mypy and the whole pytest suite

run: install ## code the bundled demo fixtures and print the FHIR Bundle of Claims
	@$(BIN)/charge-adapter code $(DEMO)

bench: install ## throughput and memory figures
	$(BIN)/python bench/bench_coding.py

mappings: install ## regenerate mappings/ from the CMS tables in ../shared/domain
	$(BIN)/python scripts/build_mappings.py --shared ../shared/domain

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache $(VALIDATOR)/node_modules
