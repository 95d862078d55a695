# scx developer commands. `make demo` and `make test` create the virtual environment on first use
# with the commands of the README's Install section.

VENV ?= .venv
PYTHON := $(VENV)/bin/python
LINT_PATHS := src tests benchmarks scripts docs tutorials
DEMO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: install demo test docs lint clean

install: $(VENV)/.installed

$(VENV)/.installed:
	python3 -m venv $(VENV) && . $(VENV)/bin/activate && \
	pip install torch==2.13.0 && \
	pip install -e ".[test,bench]"
	touch $@

demo: install
	$(PYTHON) scripts/demo.py $(DEMO_ARGS)

test: install
	$(PYTHON) -m pytest $(PYTEST_ARGS)

$(VENV)/.docs-installed: $(VENV)/.installed pyproject.toml
	$(PYTHON) -m pip install -e ".[docs]"
	touch $@

docs: $(VENV)/.docs-installed
	$(VENV)/bin/sphinx-build -W --keep-going -b html docs docs/_build/html
	@echo "Docs: docs/_build/html/index.html"

lint: install
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/ruff check $(LINT_PATHS)

clean:
	rm -rf docs/_build docs/api/generated results/demo build dist .pytest_cache .ruff_cache \
		lightning_logs .ci-venv .ci-wheel-venv src/*.egg-info
	find . -name __pycache__ -type d -not -path "./$(VENV)/*" -prune -exec rm -rf {} +
