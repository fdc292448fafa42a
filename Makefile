# Everything runs in ./venv, created on first use from the pinned requirements.
VENV   ?= venv
PYTHON := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
STACK  ?= dev

# The policy pack has its own venv (the one `pulumi preview --policy-pack policy` uses):
# pulumi-policy pins its own protobuf, which must not meet the stack's.
POLICY_VENV  := policy/venv
POLICY_STAMP := $(POLICY_VENV)/.installed

.PHONY: render check schema test lint bench policy-test docs

# The bootstrap is silent on stdout (its progress goes to stderr), and so is `render` but for
# the YAML: `make render | kubectl apply --dry-run=client -f -` gets objects only.
$(STAMP): requirements.txt requirements-dev.txt
	@echo "creating $(VENV) from requirements-dev.txt" >&2
	@python3 -m venv $(VENV) >&2
	@$(PYTHON) -m pip install --quiet --upgrade pip >&2
	@$(PYTHON) -m pip install --quiet -r requirements-dev.txt >&2
	@touch $(STAMP)

render: $(STAMP)  ## print the objects of a stack (STACK=dev) as YAML on stdout, no cluster needed
	@$(PYTHON) -m mesh render $(STACK)

check: $(STAMP)  ## run the mesh analyzers on a stack (STACK=dev); exit 1 on errors
	$(PYTHON) -m mesh check $(STACK)

schema: $(STAMP)  ## write ml-mesh.schema.json, the JSON Schema of Pulumi.<stack>.yaml files
	$(PYTHON) -m mesh schema > ml-mesh.schema.json

test: $(STAMP) $(POLICY_STAMP)  ## every test: the stack's (Pulumi mocks), then the policy pack's
	$(PYTHON) -m pytest -q
	cd policy && venv/bin/python -m pytest -q

docs: $(STAMP)  ## rerun every command whose output README.md and docs/ show, rewrite the blocks
	$(PYTHON) -m docs

bench: $(STAMP)  ## scale benchmark: program and render for 10/100/300 models against a floor
	$(PYTHON) bench/bench.py

lint: $(STAMP)
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

$(POLICY_STAMP): policy/requirements.txt policy/requirements-dev.txt
	python3 -m venv $(POLICY_VENV)
	$(POLICY_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(POLICY_VENV)/bin/python -m pip install --quiet -r policy/requirements-dev.txt
	touch $(POLICY_STAMP)

policy-test: $(POLICY_STAMP)  ## the policy pack's tests, in the pack's own venv
	cd policy && venv/bin/python -m pytest -q
