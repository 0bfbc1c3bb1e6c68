"""Every service has the same skeleton (docs/architecture.md, ADR 0024): a newcomer finds the
same thing in the same place in each, and a new service cannot start a third dialect."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVICES = sorted(p.parent.name for p in (REPO / "services").glob("*/pyproject.toml"))

REQUIRED = [
    "README.md", "pyproject.toml", "migrations/env.py",
    "src/{s}/__init__.py", "src/{s}/__main__.py", "src/{s}/app.py", "src/{s}/settings.py",
    "src/{s}/domain/__init__.py", "src/{s}/service_layer/__init__.py",
    "src/{s}/adapters/__init__.py", "src/{s}/adapters/repository.py",
    "src/{s}/entrypoints/__init__.py", "src/{s}/entrypoints/deps.py",
]
# What may sit at the top of a service's package: the four above, and the metrics the
# service adds to the chassis catalogue. Beside the layers, a web UI keeps its templates/
# and static/.
TOP_LEVEL = {"__init__", "__main__", "app", "settings", "metrics"}
PACKAGES = {"domain", "service_layer", "adapters", "entrypoints"}
# How work reaches a service: a JSON API (api, with its schemas), HTML pages (pages), GraphQL
# (graphql), messages (consumers), periodic work on the chassis runner (background), its
# command line (cli); deps holds the FastAPI dependencies. A module may be named after its
# kind with a detail (`pages_admin`, `graphql_cost`).
ENTRYPOINT_KINDS = {"api", "pages", "graphql", "schemas", "consumers", "background", "cli",
                    "deps"}
HTTP_KINDS = {"api", "pages", "graphql"}
# Inner layers never reach outwards.
INWARD = {"domain": {"service_layer", "adapters", "entrypoints", "app"},
          "service_layer": {"entrypoints", "app"},
          "adapters": {"entrypoints", "app"}}


@pytest.mark.parametrize("service", SERVICES)
def test_the_service_has_the_skeleton(service: str) -> None:
    root = REPO / "services" / service
    missing = [p.format(s=service) for p in REQUIRED if not (root / p.format(s=service)).exists()]
    assert not missing, f"{service} lacks {missing} (docs/architecture.md, A service)"
    package = root / "src" / service
    modules = {p.stem for p in package.glob("*.py")}
    assert modules <= TOP_LEVEL, f"{service}: {sorted(modules - TOP_LEVEL)} belong in a layer"
    dirs = {p.name for p in package.iterdir() if p.is_dir() and p.name != "__pycache__"}
    extra = dirs - PACKAGES - {"templates", "static"}
    assert not extra, f"{service}: {sorted(extra)} is not a layer of the skeleton"
    entry = {p.stem for p in (package / "entrypoints").glob("*.py")} - {"__init__"}
    kinds = {name.split("_", 1)[0] for name in entry}
    assert kinds <= ENTRYPOINT_KINDS, (
        f"{service}: entry points {sorted(n for n in entry if n.split('_')[0] not in ENTRYPOINT_KINDS)}; "
        "periodic work goes in entrypoints/background.py, commands in entrypoints/cli.py")
    assert kinds & HTTP_KINDS, f"{service}: no HTTP entry point (api.py or pages.py)"


@pytest.mark.parametrize("service", SERVICES)
def test_inner_layers_never_import_outer_ones(service: str) -> None:
    package = REPO / "services" / service / "src" / service
    wrong = []
    for layer, forbidden in INWARD.items():
        for path in (package / layer).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                for name in names:
                    parts = name.split(".")
                    if parts[0] == service and len(parts) > 1 and parts[1] in forbidden:
                        wrong.append(f"{path.relative_to(package)} imports {name}")
    assert not wrong, f"{service}: {wrong}"
