# Two commands matter: `make demo` and `make test`. Both set up .venv from scratch when needed,
# installing only from the hashed locks (requirements*.lock, requirements.txt): `make lock`
# regenerates them from the inputs (requirements.in, requirements-demo.txt, requirements-dev.txt,
# requirements-checkov.txt).
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
# The Lambda runtime is python3.13: use it where pyenv has it, else python3. The locks are
# resolved for Python 3.13.
PYTHON ?= $(shell p="$$(pyenv root 2>/dev/null)/versions/3.13.0/bin/python3.13"; \
	if [ -x "$$p" ]; then echo "$$p"; elif command -v python3.13 >/dev/null && python3.13 -V >/dev/null 2>&1; then echo python3.13; else echo python3; fi)
PIP_INSTALL := $(BIN)/pip install --quiet --require-hashes --no-deps
LOCK := $(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --no-emit-index-url --no-emit-find-links --strip-extras
# The Node consumer recipe's client libraries (tests/recipes/node/package-lock.json).
NODE_RECIPE := tests/recipes/node
# checkov, the scanner organisations run on templates, in a venv of its own: it pins boto3,
# packaging and networkx below what requirements-dev.lock needs (requirements-checkov.txt).
CHECKOV_VENV := .venv-checkov

.PHONY: setup demo-setup test lint scan typecheck unit demo bench bench-fleet build lock deployer-policy node-deps system-packages clean

$(BIN)/python:
	@echo "==> creating $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)

# The demo needs moto, the SES stand-in and the function's dependencies: about 135 MB.
$(VENV)/.demo-installed: requirements-demo.lock | $(BIN)/python
	$(PIP_INSTALL) -r requirements-demo.lock
	@touch $@

# Tests, linters, SAM CLI, the recipes' clients: everything.
$(VENV)/.dev-installed: requirements-dev.lock | $(BIN)/python
	$(PIP_INSTALL) -r requirements-dev.lock
	@touch $@

demo-setup: $(VENV)/.demo-installed
setup: $(VENV)/.dev-installed

$(CHECKOV_VENV)/bin/python:
	@echo "==> creating $(CHECKOV_VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(CHECKOV_VENV)

$(CHECKOV_VENV)/.installed: requirements-checkov.lock | $(CHECKOV_VENV)/bin/python
	$(CHECKOV_VENV)/bin/pip install --quiet --require-hashes --no-deps -r requirements-checkov.lock
	@touch $@

$(NODE_RECIPE)/node_modules/.package-lock.json: $(NODE_RECIPE)/package-lock.json
	@command -v npm >/dev/null || { echo "make test needs Node.js and npm (the Node recipe is tested with the real nodemailer): install them, then run make test again" >&2; exit 2; }
	npm ci --prefix $(NODE_RECIPE) --no-audit --no-fund --loglevel=error

node-deps: $(NODE_RECIPE)/node_modules/.package-lock.json

# swaks, jq and postfix for the operator recipes (Debian packages; installed when running as root).
system-packages:
	@bash .ci/system-packages

lint: setup scan
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# What an organisation's scanner sees: checkov fails on any finding the templates' resource
# Metadata does not skip with a reason (checkov: skip:). Offline: no platform download, no update
# check. Its warning "Failed to create a new template with enriched resources" means it could not
# merge Globals into the functions (it stops at the Fn::ForEach loops): see CKV_AWS_117's reason.
scan: $(CHECKOV_VENV)/.installed
	CKV_SKIP_PACKAGE_UPDATE_CHECK=true $(CHECKOV_VENV)/bin/checkov --quiet --compact --skip-download \
		--framework cloudformation -f template.yaml -f smtp-user.yaml

typecheck: setup
	$(BIN)/mypy

# Two workers (these machines have 2 cores); a file's tests stay on one worker, so each file's
# module fixtures start once. PYTEST_WORKERS=0 runs them in this process.
PYTEST_WORKERS ?= 2
# The demo's tests time compressed durations (seconds): they run alone, after the rest.
unit: setup node-deps system-packages
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile --ignore tests/test_demo.py
	$(BIN)/pytest tests/test_demo.py

test: lint typecheck unit

demo: demo-setup
	$(BIN)/python -m infra.demo $(ARGS)

bench: setup
	$(BIN)/python -m infra.bench

# N users rotated at once, IAM optionally limited: make bench-fleet ARGS="--users 200 --iam-rate 5"
bench-fleet: setup
	$(BIN)/python -m infra.bench_fleet $(ARGS)

# The way to build for deployment: checks the SAM CLI version, runs `sam build`, precompiles the
# bytecode that runs. Then `sam deploy` (see README).
build: setup
	$(BIN)/python -m infra.build

lock: setup
	$(LOCK) -o requirements-dev.lock requirements-dev.txt
	$(LOCK) -c requirements-dev.lock -o requirements-demo.lock requirements-demo.txt
	$(LOCK) -c requirements-dev.lock -o requirements.txt requirements.in
	$(LOCK) -o requirements-checkov.lock requirements-checkov.txt

# deployer-policy.json (and the service-role route's deployer-caller-policy.json and
# deployer-service-role-policy.json): what `sam deploy` of template.yaml needs for samconfig.toml's
# stack and parameters, and no more (a test fails when they are stale). Run it after every template
# change. Another deployment: make deployer-policy ARGS="--stack-name prod-mail --account
# 123456789012 --parameter-overrides SmtpUserNames=app,billing --output-dir /tmp/prod-mail"
deployer-policy: setup
	$(BIN)/python -m infra.deployer_policy $(ARGS)

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache $(NODE_RECIPE)/node_modules
