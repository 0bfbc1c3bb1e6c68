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

.PHONY: up down status test lint bench install browser observability-tools clean

$(UV):
	@echo "==> bootstrapping uv into $(TOOLS)/ (one time)"
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "mercato needs Python 3.11 or newer")'
	@$(PYTHON) -m venv $(TOOLS)
	@$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv

$(VENV)/.synced: $(UV) uv.lock pyproject.toml $(wildcard libs/*/pyproject.toml services/*/pyproject.toml tools/*/pyproject.toml) simulators/pyproject.toml legacy/pyproject.toml
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

# The API docs' browser test (tests/e2e/test_api_docs.py) drives Debian's chromium. CI runs
# as root on a fresh machine, so it is installed here; without root (or apt-get) the test
# is skipped, and says how to install it.
CHROMIUM := /usr/bin/chromium

browser:
	@if [ -x $(CHROMIUM) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "==> installing Debian's chromium for the API docs browser test (one time)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends chromium >/dev/null; \
	else echo "==> no $(CHROMIUM): the API docs browser test is skipped (apt-get install chromium)"; fi

test: install browser observability-tools
	@$(VENV)/bin/lint-imports --no-cache >/dev/null || $(VENV)/bin/lint-imports --no-cache
	@$(VENV)/bin/pytest

lint: install
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/lint-imports --no-cache

bench: install
	@$(VENV)/bin/mercato bench gateway

clean:
	@rm -rf $(VENV) $(TOOLS)
