"""`mercato release` on the running platform: a canary that fails is rolled back by itself,
a healthy one is promoted, and a blue-green switch under orders drops nothing.

The broken version is a copy of the catalog service with a fault written into its copy of
the code (`--source`), not a switch in the production code. The module runs its own
platform (without the console); short step windows keep it under two minutes here."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from edge_helpers import Platform, mercato, running_platform, scratch_home, wait_until
from mercato.runtime import commands
from shop import (
    APPROVE_CARD,
    all_terminal,
    bearer,
    customers,
    order_body,
    place_until_accepted,
    stocked_product,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def platform() -> Iterator[Platform]:
    """A platform of its own: a promotion replaces a service's instances (new names), which
    the shared platform's other tests (finding `orders-1`, `catalog-1`) must not meet. No
    console: nothing here reads it, and it would only take CPU from the instances."""
    with running_platform(scratch_home("mercato-release-"), "--no-telemetry",
                          "--scale", "catalog=2") as p:
        yield p

REPO = Path(__file__).resolve().parents[2]
PRODUCTS = "/api/catalog/products"
# Appended to the copy's app.py: a fifth of the product reads answer 500. Innermost (after
# the chassis's middleware), so the instance's own metrics count them, as a real bug's.
FAULT = '''

import random as _random

from starlette.middleware import Middleware as _Middleware
from starlette.responses import JSONResponse as _JSONResponse

_create_app = create_app


class _OneInFive:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if (scope["type"] == "http" and scope["path"].startswith("/api/catalog/products")
                and _random.random() < 0.2):
            await _JSONResponse({"title": "injected fault"}, status_code=500)(scope, receive,
                                                                               send)
            return
        await self.app(scope, receive, send)


def create_app(*args, **kwargs):
    app = _create_app(*args, **kwargs)
    app.user_middleware.append(_Middleware(_OneInFive))
    return app
'''


def broken_catalog(tmp: Path) -> Path:
    """A copy of services/catalog (its migrations too) with the fault; returns its src/."""
    copy = tmp / "catalog"
    shutil.copytree(REPO / "services" / "catalog", copy,
                    ignore=shutil.ignore_patterns("__pycache__", "tests", ".venv"))
    app = copy / "src" / "catalog" / "app.py"
    app.write_text(app.read_text() + FAULT)
    return copy / "src"


class Reader:
    """Product reads through the edge from two threads until stopped: (status, request id)
    of each, as a shop's visitors would make them during a release."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.results: list[tuple[int, str]] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(2)]

    def _run(self) -> None:
        with self.platform.client() as c:
            while not self.stop.is_set():
                try:
                    r = c.get(PRODUCTS, params={"page_size": "5"})
                    self.results.append((r.status_code, r.headers.get("x-request-id", "")))
                except httpx.TransportError:
                    self.results.append((0, ""))
                time.sleep(0.005)

    @contextmanager
    def running(self) -> Iterator[Reader]:
        for t in self.threads:
            t.start()
        try:
            yield self
        finally:
            self.stop.set()
            for t in self.threads:
                t.join(10)


def catalog_instances(platform: Platform) -> dict[str, dict[str, Any]]:
    return {n: p for n, p in platform.state()["processes"].items()
            if p.get("service") == "catalog"}


def release(platform: Platform, *args: str, timeout: float = 150) -> Any:
    return mercato(platform.home, "release", *args, timeout=timeout, check=False)


def test_a_failing_canary_is_rolled_back_by_itself(platform: Platform, tmp_path: Path) -> None:
    before = sorted(catalog_instances(platform))
    source = broken_catalog(tmp_path)
    with Reader(platform).running() as reader:
        time.sleep(1)  # the old side has a rate to compare with
        result = release(platform, "catalog", "--canary", "10", "--steps", "10,100", "--auto",
                         "--source", str(source), "--window", "15", "--poll", "1",
                         "--min-requests", "20")
        count_at_rollback = len(reader.results)
        time.sleep(1.5)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "rolled back" in output and "error rate" in output, output
    assert "step 100 %" not in output, output  # it never went past the canary's step

    # The clients saw errors only from the canary, and no more than its share of requests.
    statuses = [s for s, _ in reader.results[:count_at_rollback]]
    failed = [(s, rid) for s, rid in reader.results if s != 200]
    assert len(statuses) > 100
    assert len(failed) <= 0.10 * len(statuses), (len(failed), len(statuses))
    assert all(s == 500 for s, _ in failed), Counter(s for s, _ in failed)
    if failed:
        clusters = {e["request_id"]: e["upstream_cluster"] for e in platform.access_log()}
        wait_until(lambda: all(rid in clusters or clusters.update(
            {e["request_id"]: e["upstream_cluster"] for e in platform.access_log()})
            for _, rid in failed), 10, "the failed requests in the access log")
        assert {clusters[rid] for _, rid in failed} == {"catalog-next"}
    # After the rollback: nothing failed, and the old instances alone serve catalog.
    assert all(s == 200 for s, _ in reader.results[count_at_rollback:])
    assert sorted(catalog_instances(platform)) == before
    assert platform.state()["releases"] == {}


def test_a_healthy_canary_is_promoted(platform: Platform) -> None:
    before = catalog_instances(platform)
    with Reader(platform).running() as reader:
        result = release(platform, "catalog", "--canary", "10", "--steps", "10,50,100",
                         "--auto", "--window", "2", "--poll", "0.5", "--min-requests", "5")
        time.sleep(1)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for step in ("step 10 % held", "step 50 % held", "step 100 % held", "promoted"):
        assert step in output, output
    assert [s for s, _ in reader.results if s != 200] == []
    after = catalog_instances(platform)
    # As many instances as before, all new, all ready; the old ones are gone.
    assert len(after) == len(before) and not set(after) & set(before)
    assert all(p["state"] == "ready" for p in after.values())
    assert platform.state()["releases"] == {}
    status = json.loads(mercato(platform.home, "status", "--json").stdout)
    shown = {r["process"]: r for r in status["processes"]}
    assert all(shown[name]["health"] == "ok" for name in after), shown
    assert status["releases"] == {}
    # The route is back on the service's own cluster, which serves from the new instances.
    with platform.client() as c:
        ids = [c.get(PRODUCTS).headers["x-request-id"] for _ in range(6)]
    assert set(platform.served_by(ids).values()) <= set(after)
    # The supervisor restarts a promoted instance like any other.
    name = sorted(after)[0]
    old_pid = after[name]["pid"]
    answer = asyncio.run(commands.send(platform.home / "sockets" / "supervisor.sock",
                                       "restart", name))
    assert answer["ok"], answer
    wait_until(lambda: (p := catalog_instances(platform)[name])["state"] == "ready"
               and p["pid"] != old_pid, 60, f"{name} restarted")


def test_the_contracts_gate_refuses_a_breaking_version(platform: Platform,
                                                      tmp_path: Path) -> None:
    # The new version's tree: the contracts library (with its published schemas) and the
    # catalog package, both put first on the new instances' path by --source.
    shutil.copytree(REPO / "libs" / "contracts", tmp_path / "contracts",
                    ignore=shutil.ignore_patterns("__pycache__", "tests"))
    source = tmp_path / "contracts" / "src"
    contracts = source / "contracts"
    shutil.copytree(REPO / "services" / "catalog" / "src" / "catalog", source / "catalog",
                    ignore=shutil.ignore_patterns("__pycache__"))
    events = contracts / "catalog" / "v1.py"
    text = events.read_text()
    # A required field more in a published event: old consumers' schemas break.
    marker = "class PriceChanged(_CatalogEvent):"
    assert marker in text, "the catalog contract this test breaks was renamed"
    events.write_text(text.replace(marker, marker + "\n    breaking_field: str"))
    before = sorted(catalog_instances(platform))
    result = release(platform, "catalog", "--auto", "--source", str(source))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "contracts check failed" in result.stderr and "BREAKING" in result.stderr
    assert sorted(catalog_instances(platform)) == before


def test_blue_green_under_orders_drops_nothing(platform: Platform) -> None:
    with platform.client() as c:
        admin = bearer(platform.admin_token(c))
        product = stocked_product(c, admin, on_hand=10_000)
    # A steady load, not a saturating one: the new instance must start beside it.
    shoppers = customers(platform, 3, workers=3)
    old = {n for n, p in platform.state()["processes"].items() if p.get("service") == "orders"}
    placed: list[str] = []
    first_answers: list[int] = []
    stop = threading.Event()

    def shop(auth: dict[str, str], address: str) -> None:
        while not stop.is_set():
            placed.append(place_until_accepted(platform, auth, order_body(
                product, address, APPROVE_CARD), first_answers=first_answers))
            time.sleep(0.3)

    threads = [threading.Thread(target=shop, args=s, daemon=True) for s in shoppers]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(placed) >= 4, 30, "orders flowing")
        switched = release(platform, "orders", "--blue-green", "--auto", "--window", "3",
                           "--max-p95-ms", "5000", "--min-requests", "1")
        assert switched.returncode == 0, switched.stdout + switched.stderr
        assert "kept for an instant rollback" in switched.stdout
        during = len(placed)
        wait_until(lambda: len(placed) >= during + 4, 30, "orders on the new set")
        finished = release(platform, "orders", "--finish")
        assert finished.returncode == 0, finished.stdout + finished.stderr
        done = len(placed)
        wait_until(lambda: len(placed) >= done + 4, 30, "orders after the old set stopped")
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    new = {n for n, p in platform.state()["processes"].items() if p.get("service") == "orders"}
    assert new and not new & old
    # No request dropped: every order was accepted at its first attempt, and every one ends.
    assert first_answers and set(first_answers) == {202}, first_answers
    with platform.client() as c:
        orders = all_terminal(c, admin, placed, 90)
    assert {o["status"] for o in orders.values()} == {"APPROVED"}
    wait_until(lambda: mercato(platform.home, "check", check=False).returncode == 0, 60,
               "mercato check clean")


def test_blue_green_rollback_goes_back_to_the_kept_set(platform: Platform) -> None:
    before = sorted(catalog_instances(platform))
    with Reader(platform).running() as reader:
        # Without --auto it asks before switching.
        switched = mercato(platform.home, "release", "catalog", "--blue-green", "--window", "1",
                           "--poll", "0.5", "--min-requests", "1", input="y\n", timeout=150,
                           check=False)
        assert switched.returncode == 0, switched.stdout + switched.stderr
        assert "send 100 % of catalog's traffic to" in switched.stdout
        under_way = platform.state()["releases"]["catalog"]
        assert under_way["weight"] == 100 and under_way["old"] == before
        # Both sets run; only the new one is served.
        assert set(before) <= set(catalog_instances(platform))
        status = json.loads(mercato(platform.home, "status", "--json").stdout)
        assert status["releases"]["catalog"]["new"] == under_way["new"]
        rolled = release(platform, "catalog", "--rollback")
        assert rolled.returncode == 0, rolled.stdout + rolled.stderr
        time.sleep(0.5)
    assert [s for s, _ in reader.results if s != 200] == []
    assert sorted(catalog_instances(platform)) == before
    assert platform.state()["releases"] == {}


@pytest.mark.parametrize(("args", "says"), [
    (["nosuch"], "no service 'nosuch' runs here"),
    (["catalog", "--steps", "10,abc"], "--steps expects percentages"),
    (["catalog", "--canary", "0"], "a step is a percentage from 1 to 100"),
    (["catalog", "--canary", "10", "--blue-green"], "choose one of"),
    (["catalog", "--rollback"], "no release of catalog is under way"),
    (["catalog", "--finish"], "no release of catalog is under way"),
    (["catalog", "--source", "/nonexistent-dir"], "holds no catalog package"),
    (["catalog", "--window", "0"], "--window and --poll must be more than 0"),
])
def test_bad_input_is_a_clear_error(platform: Platform, args: list[str], says: str) -> None:
    result = release(platform, *args, timeout=60)
    assert result.returncode in (1, 2), result.stdout + result.stderr
    assert says in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert platform.state()["releases"] == {}
