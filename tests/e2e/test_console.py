"""Telemetry on by default: an order is one trace from the edge through every service and
broker hop, found by its order id in the console; a declined card is an error span and a
compensation in the saga's timeline; a trace's logs come from the console's index."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2 as httpx
import psutil
import pytest
import yaml
from edge_helpers import Platform, mercato, wait_until
from shop import APPROVE_CARD, bearer, customer_with_address, place, settled, stocked_product

pytestmark = pytest.mark.e2e

DECLINE_CARD = "4000000000000002"
# Identity and catalog are not hops of an order any more: orders answers the address and the
# prices from its replicas (ADR 0036), and calls them only for what a replica lacks.
EVERY_HOP = {"envoy", "orders", "inventory", "payments", "shipping", "notifications"}
SERVER, PRODUCER, CONSUMER = 2, 4, 5  # OTLP span kinds


def console(platform: Platform) -> httpx.Client:
    state = platform.state()
    token = json.loads((platform.home / "secrets" / "console-token.json").read_text())["token"]
    return httpx.Client(base_url=f"http://127.0.0.1:{state['ports']['console']}", timeout=10,
                        headers={"Authorization": f"Bearer {token}"})


def order_trace(platform: Platform, order_id: str, wanted: set[str]) -> dict[str, Any]:
    """The order's trace once spans of every wanted service arrived (exporters batch)."""
    with console(platform) as c:
        def complete() -> dict[str, Any] | None:
            resp = c.get(f"/api/orders/{order_id}/trace")
            if resp.status_code != 200:
                return None
            doc = resp.json()
            ids = {s["span_id"] for s in doc["spans"]}
            # Each process exports in batches of its own: wait for the parents too.
            orphans = [s for s in doc["spans"] if s["parent_id"] and s["parent_id"] not in ids]
            return doc if wanted <= {s["service"] for s in doc["spans"]} and not orphans \
                else None

        return wait_until(complete, 45, f"spans of {sorted(wanted)} in the order's trace")


@pytest.fixture(scope="module")
def shop(platform: Platform) -> dict[str, Any]:
    with platform.client() as c:
        admin = bearer(platform.admin_token(c))
        return {"product": stocked_product(c, admin, 500)}


def order(platform: Platform, shop: dict[str, Any], card: str) -> tuple[str, str]:
    with platform.client() as c:
        auth, address = customer_with_address(platform, c)
        order_id = place(c, auth, shop["product"], address, card)
        return order_id, settled(c, auth, order_id)["status"]


def test_one_order_is_one_trace_from_the_edge_through_every_service(
        platform: Platform, shop: dict[str, Any]) -> None:
    order_id, status = order(platform, shop, APPROVE_CARD)
    assert status == "APPROVED"
    doc = order_trace(platform, order_id, EVERY_HOP)
    spans = doc["spans"]
    assert {s["trace_id"] for s in spans} == {doc["trace_id"]}
    by_id = {s["span_id"]: s for s in spans}
    # The edge starts the trace: its span is the root, the service's request span its child.
    [root] = [s for s in spans if s["parent_id"] is None]
    assert root["service"] == "envoy"
    post = next(s for s in spans if s["service"] == "orders" and s["kind"] == SERVER
                and s["name"].startswith("POST /api/orders"))
    assert post["parent_id"] == root["span_id"]
    # Every broker hop is a consumer span whose parent is the span that staged its message
    # (the order's request, or the handler that sent the next one; one span a hop, ADR
    # 0048), one service to another: no hop starts a trace of its own.
    consumers = [s for s in spans if s["kind"] == CONSUMER]
    assert {s["service"] for s in consumers} >= {"inventory", "payments", "shipping",
                                                 "notifications", "orders"}
    for span in consumers:
        parent = by_id.get(span["parent_id"])
        assert parent is not None and parent["kind"] in (SERVER, CONSUMER), span["name"]
    assert not [s for s in spans if s["kind"] == PRODUCER]  # mercato up --trace-publish
    assert all(s["attributes"].get("messaging.correlation_id") == order_id
               for s in consumers if "commands" in s["name"])
    # Found by the order in the trace search too, and its saga points at the same trace.
    with console(platform) as c:
        found = c.get("/api/traces", params={"order_id": order_id}).json()["traces"]
        assert doc["trace_id"] in {t["trace_id"] for t in found}
        saga = c.get(f"/api/sagas/{order_id}").json()
        assert saga["trace_id"] == doc["trace_id"] and saga["status"] == "COMPLETED"


def test_a_declined_card_is_an_error_span_and_a_compensation_in_the_saga(
        platform: Platform, shop: dict[str, Any]) -> None:
    order_id, status = order(platform, shop, DECLINE_CARD)
    assert status == "REJECTED"
    doc = order_trace(platform, order_id, {"envoy", "orders", "payments", "inventory"})
    errors = [s for s in doc["spans"] if s["status"] == 2]
    assert errors, "no error span in the trace of a declined card"
    failed = next(s for s in errors if s["service"] == "orders")
    assert "payment_declined" in failed["name"] and failed["status_message"] == "card_declined"
    assert any(e["name"] == "saga.compensating" for e in failed["events"])
    with console(platform) as c:
        saga = c.get(f"/api/sagas/{order_id}").json()
        trace_errors = c.get("/api/traces", params={"order_id": order_id,
                                                     "status": "error"}).json()["traces"]
    assert saga["status"] == "COMPENSATED" and saga["trace_id"] == doc["trace_id"]
    kinds = [(e["kind"], e["step"]) for e in saga["events"]]
    assert ("compensation_sent", "reserve_stock") in kinds
    assert kinds.index(("compensation_sent", "reserve_stock")) > kinds.index(
        ("reply", "charge_payment"))
    assert doc["trace_id"] in {t["trace_id"] for t in trace_errors}


def test_a_traces_logs_come_from_the_index_with_the_edges_access_log(
        platform: Platform, shop: dict[str, Any]) -> None:
    order_id, _ = order(platform, shop, APPROVE_CARD)
    trace_id = order_trace(platform, order_id, {"envoy", "orders"})["trace_id"]
    with console(platform) as c:
        def indexed() -> set[str] | None:
            rows = c.get("/api/logs", params={"trace": trace_id}).json()["logs"]
            services = {r["service"] for r in rows}
            return services if {"envoy", "orders", "payments", "shipping"} <= services \
                else None

        wait_until(indexed, 20, "the trace's lines in the log index")
        # From a log line to its trace: the console's search by text finds the line.
        hits = c.get("/api/logs", params={"q": order_id, "service": "orders"}).json()["logs"]
        assert trace_id in {r["trace_id"] for r in hits}
    printed = mercato(platform.home, "logs", "--trace", trace_id, "--tail", "0").stdout
    assert "envoy-access" in printed and "orders-1" in printed and order_id in printed
    # Nothing of another trace.
    assert all(trace_id in line or not line.strip() or line.startswith(" ")
               for line in printed.splitlines() if "trace_id=" in line)


def test_the_console_asks_for_the_homes_token(platform: Platform) -> None:
    state = platform.state()
    url = state["urls"]["console"]
    with httpx.Client(base_url=url, timeout=10) as c:
        assert c.get("/api/resources").status_code == 401
        assert c.get("/api/resources", headers={"Authorization": "Bearer guess"}
                     ).status_code == 401
        assert c.get("/login", params={"token": "guess"}).status_code == 401
        assert c.post("/v1/traces", content=b"x").status_code == 401
    with console(platform) as c:
        procs = c.get("/api/resources").json()["processes"]
    assert {p["name"] for p in procs} >= {"console", "envoy", "orders-1", "postgres"}
    assert all(p["healthy"] for p in procs), [p for p in procs if not p["healthy"]]
    # Its Prometheus, when installed (make test installs it), is no open door either.
    if "prometheus" in state["urls"]:
        rules = f"{state['urls']['prometheus']}/api/v1/rules"
        assert httpx.get(rules, timeout=5).status_code == 401
        password = json.loads((platform.home / "secrets" / "prometheus-password.json")
                              .read_text())["token"]
        assert httpx.get(rules, timeout=5, auth=("mercato", password)).status_code == 200
    status = json.loads(mercato(platform.home, "status", "--json").stdout)
    health = {p["process"]: p["health"] for p in status["processes"]}
    assert health["console"] == "ok" and health.get("prometheus", "ok") == "ok", health


def test_metrics_and_alerts_come_from_the_platforms_own_prometheus(platform: Platform) -> None:
    if "prometheus" not in platform.state()["urls"]:
        pytest.skip("no .tools/prometheus (make observability-tools): no metrics or alerts")
    rule_files = Path(__file__).resolve().parents[2] / "deploy/observability/prometheus/rules"
    names = {r["alert"] for f in rule_files.glob("*.yaml")
             for g in yaml.safe_load(f.read_text())["groups"] for r in g["rules"]
             if "alert" in r}
    with console(platform) as c:
        def scraped() -> dict[str, Any] | None:
            # Prometheus scrapes its targets one by one: on a platform just started, the
            # first lag series may be another service's.
            resp = c.get("/api/metrics")
            panels = {p["id"]: p for p in resp.json().get("panels", [])}
            lag = {s["name"] for s in panels["lag"]["series"]} if resp.status_code == 200 else ()
            return panels if "orders-saga-replies-inventory" in lag else None

        panels = wait_until(scraped, 60, "consumer lag scraped by the console's Prometheus")
        rules = c.get("/api/alerts").json()["rules"]
    consumers = {s["name"] for s in panels["lag"]["series"]}
    assert "orders-saga-replies-inventory" in consumers, consumers
    assert {r["name"] for r in rules} == names  # every rule of the files, evaluated


def test_the_go_engines_run_on_one_p(platform: Platform) -> None:
    """NATS and Prometheus get GOMAXPROCS=1 from the supervisor (ADR 0050); a service does
    not."""
    processes = platform.state()["processes"]
    engines = [name for name in ("nats", "prometheus") if name in processes]
    assert "nats" in engines
    for name in engines:
        assert psutil.Process(processes[name]["pid"]).environ().get("GOMAXPROCS") == "1", name
    assert "GOMAXPROCS" not in psutil.Process(processes["orders-1"]["pid"]).environ()
