# Set-up and the two entry points. `make run` and `make test` create .venv on first use.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
ROOT   ?= workspace

.PHONY: install run test test-fast clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	# torch first, pinned: a CPU wheel (a bare `torch` resolves to a multi-GB CUDA build)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## The nightly pipeline once, end to end, on the offline synthetic source.
run: $(STAMP)
	$(VENV)/bin/spywatch run --source synthetic --root $(ROOT)

## The layers (import-linter's contracts in pyproject.toml), then the whole test suite, offline, CPU only.
test: $(STAMP)
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

## Everything but the slow tests (real training, real Prefect server).
test-fast: $(STAMP)
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -m "not slow and not integration"

clean:
	rm -rf $(VENV) $(ROOT) .pytest_cache
