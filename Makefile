# Everything runs in ./venv, created on first use from the pinned requirements.
VENV   ?= venv
PYTHON := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
STACK  ?= dev

.PHONY: render check schema test lint bench

$(STAMP): requirements.txt requirements-dev.txt
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

render: $(STAMP)  ## print the objects of a stack (STACK=dev), no cluster needed
	$(PYTHON) -m mesh render $(STACK)

check: $(STAMP)  ## run the mesh analyzers on a stack (STACK=dev); exit 1 on errors
	$(PYTHON) -m mesh check $(STACK)

schema: $(STAMP)  ## write ml-mesh.schema.json, the JSON Schema of Pulumi.<stack>.yaml files
	$(PYTHON) -m mesh schema > ml-mesh.schema.json

test: $(STAMP)  ## the whole test suite, against Pulumi mocks
	$(PYTHON) -m pytest -q

bench: $(STAMP)  ## scale benchmark: program and render for 10/100/300 models against a floor
	$(PYTHON) bench/bench.py

lint: $(STAMP)
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
