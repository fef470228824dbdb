# svnr-jax: `make demo` and `make test` work on a fresh machine with Python >= 3.11.
# They create .venv if missing, install the project into it, then run.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
JOBS ?= 2

# Find a working interpreter by running it (pyenv shims exist but may fail): prefer 3.12
# (current jax needs >= 3.12), then 3.13, then any python3 >= 3.11.
define find_python
for c in "PYENV_VERSION=3.12.1 python3.12" python3.12 "PYENV_VERSION=3.13.0 python3.13" python3.13 python3.11 python3; do \
  if env $$c -c 'import sys; assert sys.version_info >= (3, 11)' >/dev/null 2>&1; then \
    env $$c -c 'import sys; print(sys.executable)'; exit 0; fi; \
done; echo "no Python >= 3.11 found" >&2; exit 1
endef

.PHONY: demo test test-all lint bench venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@if [ ! -x $(PY) ]; then \
	  base=$$($(find_python)) || exit 1; \
	  echo "creating $(VENV) with $$base"; \
	  "$$base" -m venv $(VENV); \
	fi
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	JAX_PLATFORMS=$${JAX_PLATFORMS:-cpu} $(PY) -m experiments.stress_tests --small --out outputs/demo

test: $(STAMP)
	JAX_PLATFORMS=cpu $(PY) -m pytest -n $(JOBS) -q -m "not slow" tests

test-all: $(STAMP)
	JAX_PLATFORMS=cpu $(PY) -m pytest -n $(JOBS) -q tests

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) -m benchmarks.negotiate

clean:
	rm -rf $(VENV) .pytest_cache outputs
