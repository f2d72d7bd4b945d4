# Two commands do all set-up on a fresh machine with only Python:
#   make demo   - create .venv, install, run a Magpie job on the embedded model
#   make test   - create/update .venv, lint, run the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.forgekit-installed

.PHONY: demo test lint format bench clean system-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Re-install only when the dependencies change. llama-cpp-python compiles from source the
# first time (several minutes on 2 cores); pip caches the wheel after that.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/forge magpie -n 5 --model local --out demo-output/magpie.jsonl

# Debian programs some tests drive: chromium for the browser test (tests/test_browser.py,
# through Playwright's Python driver shipped in the wheel: no browser download) and
# redis-server for the MinHash LSH index in Redis (tests/test_evaluate_minhash.py).
SYSTEM_PROGRAMS := /usr/bin/chromium:chromium /usr/bin/redis-server:redis-server
MISSING_PACKAGES := $(foreach p,$(SYSTEM_PROGRAMS),$(if $(wildcard $(firstword $(subst :, ,$(p)))),,$(lastword $(subst :, ,$(p)))))
SYSTEM_DEPS := $(if $(strip $(MISSING_PACKAGES)),system-deps,)

system-deps:
	@if [ -z "$(strip $(MISSING_PACKAGES))" ]; then echo "system programs present"; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq $(MISSING_PACKAGES); \
	else echo "tests need: sudo apt-get install -y $(MISSING_PACKAGES)" >&2; exit 1; fi

test: $(STAMP) $(SYSTEM_DEPS)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python benchmarks/engine.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache demo-output test-artifacts
