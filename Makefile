# mercato — the two set-up commands are `make up` and `make test` (see README).
# Everything is installed from the package registries into ./.venv; nothing global.
SHELL := /bin/bash
PYTHON ?= python3
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
export UV_COMPILE_BYTECODE := 1
export UV_LINK_MODE := copy
export UV_PYTHON_DOWNLOADS := never

.PHONY: up down status test lint bench install observability-tools clean

$(UV):
	@echo "==> bootstrapping uv into $(TOOLS)/ (one time)"
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "mercato needs Python 3.11 or newer")'
	@$(PYTHON) -m venv $(TOOLS)
	@$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv

$(VENV)/.synced: $(UV) uv.lock pyproject.toml $(wildcard libs/*/pyproject.toml services/*/pyproject.toml tools/*/pyproject.toml)
	@echo "==> installing mercato and its dependencies into $(VENV)/"
	@$(UV) sync --frozen --python $(PYTHON) --quiet
	@touch $@

install: $(VENV)/.synced

# promtool (and prometheus) for the alert rules' tests: Debian's build, pinned by hash in
# tools/mercato/src/mercato/toolfetch.py, unpacked into .tools/prometheus/ on first use.
observability-tools: install
	@$(VENV)/bin/python -m mercato.toolfetch prometheus >/dev/null

up: install
	@$(VENV)/bin/mercato up --detach

down: install
	@$(VENV)/bin/mercato down

status: install
	@$(VENV)/bin/mercato status

test: install observability-tools
	@$(VENV)/bin/lint-imports --no-cache >/dev/null || $(VENV)/bin/lint-imports --no-cache
	@$(VENV)/bin/pytest

lint: install
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/lint-imports --no-cache

bench: install
	@$(VENV)/bin/mercato bench gateway

clean:
	@rm -rf $(VENV) $(TOOLS)
