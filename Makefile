# Segment Bridge — make targets a newcomer can guess.
PYTHON      ?= python3.11
VENV        := .venv
TOOLS       := .venv-tools
PY          := $(VENV)/bin/python
REGION      ?= us-east-1
# sam build needs a python3.13 on PATH (the Lambda runtime); pyenv provides one here.
SAM_PYENV   ?= 3.11.7:3.13.0
export SAM_CLI_TELEMETRY := 0

.PHONY: setup tools dev test lint format typecheck validate build bench deploy clean

$(VENV)/.installed: requirements-dev.txt layers/bridge/requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r layers/bridge/requirements.txt -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

$(TOOLS)/.installed: requirements-tools.txt
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install -q --upgrade pip
	$(TOOLS)/bin/python -m pip install -q -r requirements-tools.txt
	touch $@

setup: $(VENV)/.installed            ## create the app venv (.venv)

tools: $(TOOLS)/.installed           ## create the template tools venv (.venv-tools)

dev: setup                           ## run the pipeline locally (embedded AWS + API on 127.0.0.1:3000)
	$(PY) -m bridge_dev.local $(ARGS)

test: setup                          ## run every test
	$(PY) -m pytest

lint: setup                          ## ruff lint + format check, mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy layers/bridge/segment_bridge functions bridge_dev benchmarks

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

validate: tools                      ## sam validate --lint, cfn-lint on the SAM-translated template
	AWS_DEFAULT_REGION=$(REGION) $(TOOLS)/bin/sam validate --lint --region $(REGION)
	AWS_DEFAULT_REGION=$(REGION) $(TOOLS)/bin/python .ci/translate.py template.yaml > .aws-sam-translated.json
	$(TOOLS)/bin/cfn-lint --regions $(REGION) -- .aws-sam-translated.json
	rm -f .aws-sam-translated.json

build: tools                         ## sam build (needs python3.13)
	PYENV_VERSION=$(SAM_PYENV) $(TOOLS)/bin/sam build

bench: setup                         ## benchmarks, each against a baseline measured in the same run
	$(PY) benchmarks/bench_ingest.py
	$(PY) benchmarks/bench_processor.py
	$(PY) benchmarks/bench_emitter.py
	$(PY) benchmarks/bench_coldstart.py

deploy: build                        ## sam deploy (uses samconfig.toml; CONFIG_ENV=prod for prod)
	$(TOOLS)/bin/sam deploy --config-env $${CONFIG_ENV:-default}

clean:
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache
