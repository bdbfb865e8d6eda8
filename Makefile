# The commands of the README and CONTRIBUTING.md. Each creates .venv when it is missing and installs the project
# (with the dev extra: pytest, xdist, ruff, mypy) into it; a changed pyproject.toml re-installs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 --dist loadfile

.PHONY: test test-quick demo install lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Re-install only when the project's metadata changed.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# The full run CI does: every test but the network ones (slow, subprocess, torchrun and browser included).
# A shared_data test that skips although ../shared/data exists fails the run (tests/conftest.py).
test: $(STAMP)
	RESNET_APPS_REQUIRE_SHARED_DATA=1 $(PYTEST) -m 'not network'

# The quick run (the same set as a bare `pytest`): no slow, network, subprocess, torchrun or browser test.
test-quick: $(STAMP)
	$(PYTEST)

demo: $(STAMP)
	$(BIN)/resnet-apps demo

# The gate CI runs before the tests: lint, format and types must all be clean.
lint: $(STAMP)
	$(BIN)/python -m ruff check resnet_apps tests
	$(BIN)/python -m ruff format --check resnet_apps tests
	$(BIN)/python -m mypy

# Apply what ruff can fix by itself (imports, formatting); mypy findings are fixed by hand.
format: $(STAMP)
	$(BIN)/python -m ruff check --fix resnet_apps tests
	$(BIN)/python -m ruff format resnet_apps tests

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
