"""Every service's request dependencies are coroutines.

FastAPI runs a plain ``def`` dependency in its thread pool: a thread hand-off per dependency
per request, which under load cost more CPU than the dependency's own work. A ``def`` that
slips back in fails here, naming the service, the route and the function.
"""

from __future__ import annotations

import importlib
import inspect

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from mercato.runtime.services import SERVICES


def _sync_calls(dependant: Dependant) -> list[str]:
    found = []
    for sub in dependant.dependencies:
        call = sub.call
        if call is not None and not _is_coroutine(call):
            found.append(getattr(call, "__qualname__", repr(call)))
        found += _sync_calls(sub)
    return found


def _api_routes(routes: list[object]) -> list[tuple[APIRoute, list[object]]]:
    """Every APIRoute, through included routers, with the included routers' dependencies."""
    found: list[tuple[APIRoute, list[object]]] = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append((route, []))
        elif hasattr(route, "original_router"):  # FastAPI's included router
            extra = [d.dependency for d in
                     getattr(route.include_context, "dependencies", None) or []]
            found += [(r, [*extra, *more])
                      for r, more in _api_routes(route.original_router.routes)]
    return found


def _is_coroutine(call: object) -> bool:
    # A class instance used as a dependency counts by its async __call__.
    return inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(
        vars(type(call)).get("__call__"))


@pytest.mark.parametrize("service", SERVICES)
def test_no_request_dependency_runs_in_the_thread_pool(service: str) -> None:
    app = importlib.import_module(f"{service}.app").create_app()
    routes = _api_routes(app.routes)
    assert routes, f"{service} has no API routes"
    sync = {f"{r.path} {sorted(r.methods)}": calls for r, extra in routes
            if (calls := _sync_calls(r.dependant)
                + [getattr(c, "__qualname__", repr(c)) for c in extra
                   if c is not None and not _is_coroutine(c)])}
    assert sync == {}, f"{service}: plain def dependencies run in the thread pool: {sync}"
