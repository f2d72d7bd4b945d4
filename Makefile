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

# The embedded model's llama-cpp-python, compiled for this CPU with explicit flags
# (forgekit/models/llama_build.py: never llama.cpp's AMX kernels, whose first decode segfaults
# on our Xeons; AVX-512 only where the CPU has it). pip caches a built wheel by its source,
# not by CMAKE_ARGS, so pip's cache is bypassed; the wheel is kept in LLAMA_WHEELS under a
# name made of the version, the flags and the Python tag, and reused only for those.
LLAMA_BUILD   := forgekit/models/llama_build.py
LLAMA_VERSION := $(shell $(PYTHON) $(LLAMA_BUILD) version)
LLAMA_KEY     := $(shell $(PYTHON) $(LLAMA_BUILD) key)
LLAMA_WHEELS  ?= $(HOME)/.cache/forgekit/llama-wheels
LLAMA_STAMP   := $(VENV)/.llama-$(LLAMA_KEY)

$(LLAMA_STAMP): $(LLAMA_BUILD) | $(BIN)/python
	@args="$$($(PYTHON) $(LLAMA_BUILD) cmake-args)"; dir="$(LLAMA_WHEELS)/$(LLAMA_KEY)"; \
	if ! ls "$$dir"/llama_cpp_python-*.whl >/dev/null 2>&1; then \
	  echo "building llama-cpp-python $(LLAMA_VERSION) for this CPU (several minutes): $$args"; \
	  rm -rf "$$dir.tmp" && mkdir -p "$$dir.tmp" && \
	  CMAKE_ARGS="$$args" $(BIN)/python -m pip wheel --quiet --no-deps --no-cache-dir \
	    --no-binary llama-cpp-python -w "$$dir.tmp" "llama-cpp-python==$(LLAMA_VERSION)" && \
	  rm -rf "$$dir" && mv "$$dir.tmp" "$$dir" || exit 1; \
	else echo "llama-cpp-python $(LLAMA_VERSION) for this CPU: $$dir"; fi; \
	$(BIN)/python -m pip install --quiet --no-deps --force-reinstall "$$dir"/llama_cpp_python-*.whl
	rm -f $(VENV)/.llama-* && touch $@

# Re-install only when the dependencies or the C kernels (built by hatch_build.py) change.
$(STAMP): pyproject.toml hatch_build.py forgekit/evaluate/minhash/_kernels.c $(LLAMA_STAMP) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m forgekit.models.llama_build check
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
