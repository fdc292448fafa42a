# Everything runs in ./venv, created on first use from the pinned requirements.
VENV   ?= venv
PYTHON := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
STACK  ?= dev

.PHONY: render test lint

$(STAMP): requirements.txt requirements-dev.txt
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

render: $(STAMP)  ## print the objects of a stack (STACK=dev), no cluster needed
	$(PYTHON) -m mesh render $(STACK)

test: $(STAMP)  ## the whole test suite, against Pulumi mocks
	$(PYTHON) -m pytest -q

lint: $(STAMP)
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
