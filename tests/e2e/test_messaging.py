"""End to end across services through the broker: catalog → outbox → JetStream → inventory."""

from __future__ import annotations

import os
import re
import secrets
import signal
import time
import uuid

import httpx2 as httpx
import pytest
from edge_helpers import Platform, mercato, wait_until

pytestmark = pytest.mark.e2e


def new_product(sku: str) -> dict:
    return {"sku": sku, "name": f"Trace-tested kettle {sku}", "description": "e2e",
            "category": "kitchen", "price": {"amount": "39000", "currency": "KRW"}}


def test_product_created_in_catalog_becomes_stock_in_inventory_in_one_trace(
        platform: Platform) -> None:
    trace_id = secrets.token_hex(16)
    sku = f"TR-{uuid.uuid4().hex[:8].upper()}"
    with platform.client() as c:
        admin = {"Authorization": f"Bearer {platform.admin_token(c)}",
                 "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
        assert c.post("/api/catalog/products", json=new_product(sku),
                      headers=admin).status_code == 201
        stock = wait_until(lambda: c.get(f"/api/inventory/stock/{sku}").status_code == 200
                           and c.get(f"/api/inventory/stock/{sku}").json(), 30,
                           "the stock row in inventory")
        assert stock["sku"] == sku and stock["available"] == 0

    def services_in_trace() -> set[str]:
        found = set()
        for log in (platform.home / "logs").glob("*.log"):
            if trace_id in log.read_text(errors="replace"):
                found.add(re.sub(r"-\d+\.log$", "", log.name))
        return found

    # One trace spans both services: the request in catalog and the consumer in inventory.
    assert {"catalog", "inventory"} <= wait_until(
        lambda: services_in_trace() >= {"catalog", "inventory"} and services_in_trace(), 10,
        "the trace id in both services' logs")
    merged = mercato(platform.home, "logs", "--trace", trace_id, "--tail", "0").stdout
    assert "catalog" in merged and "inventory" in merged and "stock_created" in merged


def _backlog(platform: Platform) -> float:
    total = 0.0
    for name, proc in platform.state()["processes"].items():
        if name.startswith("catalog") and proc["port"]:
            text = httpx.get(f"http://127.0.0.1:{proc['port']}/metrics", timeout=5).text
            m = re.search(r'^outbox_backlog\{service="catalog"\} (\S+)$', text, re.M)
            total += float(m.group(1)) if m else 0.0
    return total


def test_nats_outage_the_outbox_grows_and_everything_arrives_after(platform: Platform) -> None:
    nats_pid = platform.state()["processes"]["nats"]["pid"]
    skus = [f"OUT-{uuid.uuid4().hex[:8].upper()}" for _ in range(3)]
    with platform.client() as c:
        admin = {"Authorization": f"Bearer {platform.admin_token(c)}"}
        os.kill(nats_pid, signal.SIGSTOP)  # the broker stops answering
        try:
            for sku in skus:  # writes keep succeeding for the user
                started = time.monotonic()
                resp = c.post("/api/catalog/products", json=new_product(sku), headers=admin)
                assert resp.status_code == 201, resp.text
                assert time.monotonic() - started < 5
            wait_until(lambda: _backlog(platform) >= 1, 20, "the outbox backlog to show")
            assert all(c.get(f"/api/inventory/stock/{s}").status_code == 404 for s in skus)
        finally:
            os.kill(nats_pid, signal.SIGCONT)
        for sku in skus:  # delivered once NATS is back
            wait_until(lambda sku=sku: c.get(f"/api/inventory/stock/{sku}").status_code == 200,
                       60, f"{sku} in inventory after the outage")
        wait_until(lambda: _backlog(platform) == 0, 20, "the outbox to drain")


def test_dead_letter_cli_on_a_running_platform(platform: Platform) -> None:
    listing = mercato(platform.home, "dlq", "list")
    assert "dead letter" in listing.stdout.lower()
    missing = mercato(platform.home, "dlq", "show", "999999", check=False)
    assert missing.returncode == 1 and "no dead letter" in missing.stderr
    republished = mercato(platform.home, "outbox", "republish", "catalog", "--since", "1h")
    assert "queued for the relay again" in republished.stdout
    bad = mercato(platform.home, "outbox", "republish", "catalog", "--since", "yesterday",
                  check=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
