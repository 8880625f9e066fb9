# Segment Bridge — make targets a newcomer can guess.
PYTHON      ?= python3.11
VENV        := .venv
TOOLS       := .venv-tools
SCAN        := .venv-scan
# segment-analytics-python 2.3 (write key in the body) cannot be installed next to 2.4: the e2e tests
# run it from a venv of its own.
SDK23       := .venv-sdk23
PY          := $(VENV)/bin/python
REGION      ?= us-east-1
# sam build needs a python3.13 on PATH (the Lambda runtime); pyenv provides one here.
SAM_PYENV   ?= 3.11.7:3.13.0
export SAM_CLI_TELEMETRY := 0

.PHONY: setup tools scanners dev test fuzz soak lint format typecheck validate security build arm64 events bench deploy clean

$(VENV)/.installed: requirements-dev.txt requirements-cli.txt layers/bridge/requirements.txt pyproject.toml
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

$(SDK23)/.installed:
	$(PYTHON) -m venv $(SDK23)
	$(SDK23)/bin/python -m pip install -q segment-analytics-python==2.3.6
	touch $@

$(SCAN)/.installed: requirements-scan.txt
	$(PYTHON) -m venv $(SCAN)
	$(SCAN)/bin/python -m pip install -q --upgrade pip
	$(SCAN)/bin/python -m pip install -q -r requirements-scan.txt
	touch $@

setup: $(VENV)/.installed $(SDK23)/.installed  ## create the app venv (.venv) and the 2.3 SDK's (.venv-sdk23)

tools: $(TOOLS)/.installed           ## create the template tools venv (.venv-tools)

scanners: $(SCAN)/.installed         ## create the security scanners venv (.venv-scan)

dev: setup                           ## run the pipeline locally (embedded AWS + API on 127.0.0.1:3000)
	$(PY) -m bridge_dev.local $(ARGS)

test: setup                          ## run every test (pytest options in ARGS, e.g. ARGS="-x -k privacy")
	$(PY) -m pytest --durations=10 $(ARGS)

fuzz: setup                          ## hostile-input, every-event-accounted and lenient-field properties, 20x the examples (opt-in)
	HYPOTHESIS_PROFILE=long $(PY) -m pytest tests/functional/test_hostile_input.py tests/functional/test_every_event_accounted.py tests/unit/test_lenient_ingest.py --hypothesis-show-statistics

lint: setup                          ## ruff lint + format check, mypy, import contracts (pyproject.toml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy layers/bridge/segment_bridge functions bridge_dev benchmarks
	$(VENV)/bin/lint-imports --no-cache

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

validate: tools                      ## sam validate --lint, cfn-lint on the SAM-translated template
	AWS_DEFAULT_REGION=$(REGION) $(TOOLS)/bin/sam validate --lint --region $(REGION)
	AWS_DEFAULT_REGION=$(REGION) $(TOOLS)/bin/python .ci/translate.py template.yaml > .aws-sam-translated.json
	$(TOOLS)/bin/cfn-lint --regions $(REGION) -- .aws-sam-translated.json
	rm -f .aws-sam-translated.json

security: tools scanners             ## checkov on the SAM-translated template, bandit, pip-audit
	AWS_DEFAULT_REGION=$(REGION) $(TOOLS)/bin/python .ci/translate.py template.yaml > .aws-sam-translated.json
	$(SCAN)/bin/checkov --quiet --compact --skip-download --framework cloudformation \
		-f .aws-sam-translated.json; status=$$?; rm -f .aws-sam-translated.json; exit $$status
	$(SCAN)/bin/bandit -q -r layers/bridge/segment_bridge functions bridge_dev
	$(SCAN)/bin/python .ci/audit.py

build: tools                         ## sam build (needs python3.13)
	PYENV_VERSION=$(SAM_PYENV) $(TOOLS)/bin/sam build

arm64: setup build                   ## the built layer and handlers, imported and run under aarch64 CPython 3.13 (qemu)
	.ci/arm64

events: setup                        ## write events/*.json and env.json again (from the code and the template)
	$(PY) -m bridge_dev.events

bench: setup                         ## benchmarks, each against a baseline measured in the same run
	$(PY) benchmarks/bench_ingest.py
	$(PY) benchmarks/bench_processor.py
	$(PY) benchmarks/bench_throughput.py
	$(PY) benchmarks/bench_emitter.py
	$(PY) benchmarks/bench_outage.py
	$(PY) benchmarks/bench_cost.py
	$(PY) benchmarks/bench_latency.py
	$(PY) benchmarks/bench_load.py
	$(PY) benchmarks/bench_coldstart.py
	$(PY) benchmarks/bench_archive.py
	$(PY) benchmarks/bench_archive_fleet.py --workers 1,2,4

soak: setup                          ## 5 minutes of sustained load on the local stack: nothing lost, memory flat
	$(PY) benchmarks/bench_load.py --soak --seconds 300 --rate 150

.PHONY: burst
burst: setup                         ## 100,000 events from 20 workspaces on the local stack, 5 ms per AWS call
	$(PY) benchmarks/bench_burst.py $(ARGS)

deploy: build                        ## sam deploy (uses samconfig.toml; CONFIG_ENV=prod for prod)
	$(TOOLS)/bin/sam deploy --config-env $${CONFIG_ENV:-default}

clean:
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache
