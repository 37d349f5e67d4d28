# Two commands matter: `make demo` and `make test`. Both set up .venv from scratch when needed.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
# The Lambda runtime is python3.13: use it where pyenv has it, else python3.
PYTHON ?= $(shell p="$$(pyenv root 2>/dev/null)/versions/3.13.0/bin/python3.13"; \
	if [ -x "$$p" ]; then echo "$$p"; elif command -v python3.13 >/dev/null && python3.13 -V >/dev/null 2>&1; then echo python3.13; else echo python3; fi)

.PHONY: setup test lint typecheck unit demo bench bench-fleet clean

$(BIN)/.installed: requirements.txt requirements-dev.txt
	@echo "==> creating $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	@touch $@

setup: $(BIN)/.installed

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest

test: lint typecheck unit

demo: setup
	$(BIN)/python -m infra.demo $(ARGS)

bench: setup
	$(BIN)/python -m infra.bench

# N users rotated at once, IAM optionally limited: make bench-fleet ARGS="--users 200 --iam-rate 5"
bench-fleet: setup
	$(BIN)/python -m infra.bench_fleet $(ARGS)

clean:
	rm -rf $(VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache
