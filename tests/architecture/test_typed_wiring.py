"""Typed wiring (issue 12 item 4, ADR 0025): a service reads its settings and dependencies
typed, through ``ServiceContext[Settings, Wiring]``, and its use cases take typed commands.
What this forbids in ``services/*/src`` is what the services did before:

- ``assert isinstance(settings, XSettings)``: a downcast of settings the context did not type;
- ``ctx.state["upstreams"]``: dependencies in a bag of strings, found (or not) at run time;
- ``def place_order(..., body: dict[str, Any])``: a use case reading a request's JSON by key.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVICES = sorted(p.parent.name for p in (REPO / "services").glob("*/pyproject.toml"))
MAPPINGS = {"dict", "Dict", "Mapping", "MutableMapping"}


def _name(node: ast.expr) -> str | None:
    """``x`` for ``x`` and for ``a.b.x``."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _is_context(node: ast.expr) -> bool:
    """``ctx``, ``self._ctx``, ``request.app.state.ctx``: what holds a ServiceContext."""
    name = _name(node)
    return name is not None and name.lstrip("_") == "ctx"


def settings_downcasts(tree: ast.AST) -> list[int]:
    """``assert isinstance(settings, X)``, ``assert isinstance(ctx.settings, X)`` and any
    assert that something is an ``...Settings``."""
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Assert) and isinstance(node.test, ast.Call)
                and _name(node.test.func) == "isinstance" and len(node.test.args) == 2):
            continue
        subject, cls = node.test.args
        classes = cls.elts if isinstance(cls, ast.Tuple) else [cls]
        if _name(subject) == "settings" or any(
                (_name(c) or "").endswith("Settings") for c in classes):
            found.append(node.lineno)
    return found


def state_lookups(tree: ast.AST) -> list[int]:
    """Any use of a context's ``state`` bag (``ctx.state[...]``, ``ctx.state.get(...)``,
    passing ``ctx.state`` on), and a string-keyed subscript of any ``.state``
    (``x.state["shop"]``, ``x.state[STATE_KEY]``)."""
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr == "state"
                and _is_context(node.value)):
            found.append(node.lineno)
        elif (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute)
              and node.value.attr == "state"):
            key = node.slice
            if ((isinstance(key, ast.Constant) and isinstance(key.value, str))
                    or (isinstance(key, ast.Name) and key.id.isupper())):
                found.append(node.lineno)
    return sorted(set(found))


def untyped_bodies(tree: ast.AST) -> list[int]:
    """A function taking ``body: dict[...]`` (or a bare ``dict``/``Mapping``)."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        a = node.args
        for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs]:
            ann = arg.annotation
            base = ann.value if isinstance(ann, ast.Subscript) else ann
            if arg.arg == "body" and base is not None and _name(base) in MAPPINGS:
                found.append(node.lineno)
    return found


def _scan(service: str, check: Callable[[ast.AST], list[int]], under: str = "") -> list[str]:
    package = REPO / "services" / service / "src" / service
    return [f"{path.relative_to(REPO)}:{line}"
            for path in sorted((package / under).rglob("*.py"))
            for line in check(ast.parse(path.read_text()))]


@pytest.mark.parametrize("service", SERVICES)
def test_settings_are_read_typed_not_downcast(service: str) -> None:
    hits = _scan(service, settings_downcasts)
    assert not hits, (f"{service} downcasts its settings at {hits}: type the context instead, "
                      f"ServiceContext[{service.title().replace('_', '')}Settings, ...] "
                      "(ADR 0025)")


@pytest.mark.parametrize("service", SERVICES)
def test_dependencies_come_from_the_typed_wiring_not_a_state_bag(service: str) -> None:
    hits = _scan(service, state_lookups)
    assert not hits, (f"{service} looks dependencies up by string at {hits}: declare them in "
                      "the service's wiring dataclass, set it with ctx.wire(...) in bootstrap "
                      "and read ctx.wiring in entrypoints/deps.py (ADR 0025)")


@pytest.mark.parametrize("service", SERVICES)
def test_use_cases_take_typed_commands_not_request_json(service: str) -> None:
    hits = _scan(service, untyped_bodies, "service_layer")
    assert not hits, (f"{service}'s use cases take body: dict at {hits}: take a frozen command "
                      "dataclass the entry point builds from its request model (ADR 0025)")


# The checks themselves: each finds what it names, and nothing of the look-alikes that
# are fine (a ctx's other attributes, NATS stream state, isinstance of non-settings).
CAUGHT = '''
assert isinstance(settings, CartSettings)
assert isinstance(ctx.settings, OrderHistorySettings)
assert isinstance(s, (ShopSettings, int))
up = ctx.state["upstreams"]
key = ctx.state.get("card_fingerprint_key")
shop = request.app.state.ctx.state["shop"]
keys = OwnKeys(self._ctx.state)
services = holder.state[STATE_KEY]
async def checkout(uow, *, body: dict[str, Any]): ...
def place(body: Mapping[str, object]): ...
def place_again(body: dict): ...
'''
FINE = '''
assert isinstance(exc, SignInRequired)
assert isinstance(order, Order)
settings = ctx.settings
waiting = stream.state.subjects
first = info.state.first_seq
ctx = request.app.state.ctx
shop = ctx.wiring
message.state = "acked"
phase = saga.state[0]
def place_order(uow, command: PlaceOrder, body_size: int): ...
def checkout(body: CheckoutIn, data: dict[str, Any]): ...
'''


def test_the_checks_find_the_old_forms_and_pass_the_fine_ones() -> None:
    caught, fine = ast.parse(CAUGHT), ast.parse(FINE)
    assert settings_downcasts(caught) == [2, 3, 4]
    assert state_lookups(caught) == [5, 6, 7, 8, 9]
    assert untyped_bodies(caught) == [10, 11, 12]
    assert (settings_downcasts(fine), state_lookups(fine), untyped_bodies(fine)) == ([], [], [])
