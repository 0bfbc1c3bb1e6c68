"""The console in a real browser (Debian's chromium driven by Playwright), as an operator
uses it on the session's platform: log in with the URL `mercato up` printed, see every
process healthy, open the trace of an order just placed and its saga's timeline, replay a
dead letter. Screenshots go to docs/images/ (the README shows them)."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chassis.messaging.dlq import list_dead_letters
from chassis.messaging.envelope import Envelope
from contracts.shipping.v1 import (
    CreateShipment,
    ReleaseShipment,
    ShipmentLine,
    ShippingAddress,
)
from edge_helpers import Platform, nats_connect, wait_until
from shop import APPROVE_CARD, bearer, customer_with_address, place, settled, stocked_product

pytestmark = pytest.mark.e2e

IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
DECLINE_CARD = "4000000000000002"


@pytest.fixture(scope="module")
def browser(chromium: Any) -> Any:
    return chromium


@pytest.fixture(scope="module")
def page(browser: Any, platform: Platform) -> Iterator[Any]:
    """One logged-in tab: the first visit trades the URL's token for a session cookie."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(20_000)
    tab.goto(f"{console_base(platform)}/login?token={token(platform)}")
    yield tab
    context.close()


def console_base(platform: Platform) -> str:
    return str(platform.state()["urls"]["console"]).rstrip("/")


def token(platform: Platform) -> str:
    doc = json.loads((platform.home / "secrets" / "console-token.json").read_text())
    return str(doc["token"])


def console_api(platform: Platform) -> Any:
    import httpx2 as httpx

    return httpx.Client(base_url=console_base(platform), timeout=10,
                        headers={"Authorization": f"Bearer {token(platform)}"})


def off_loop(work: Any) -> Any:
    """Run a coroutine function in a thread: Playwright's sync API owns this one's loop."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, work()).result()


def shot(tab: Any, name: str) -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(IMAGES / name), full_page=False)


def order(platform: Platform, card: str) -> str:
    with platform.client() as c:
        admin = bearer(platform.admin_token(c))
        product = stocked_product(c, admin, 500)
        auth, address = customer_with_address(platform, c)
        order_id = place(c, auth, product, address, card)
        settled(c, auth, order_id)
        return order_id


def test_log_in_and_see_every_process_healthy(browser: Any, platform: Platform) -> None:
    base = console_base(platform)
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.goto(f"{base}/")
    assert page.locator("h1").inner_text() == "Log in"  # no cookie yet
    page.goto(f"{base}/login?token=wrong")
    assert page.locator("#login-error").is_visible()
    page.goto(f"{base}/login?token={token(platform)}")
    assert page.url == f"{base}/"
    rows = page.locator("#resources tr[data-process]")
    names = {rows.nth(i).get_attribute("data-process") for i in range(rows.count())}
    assert {"postgres", "nats", "envoy", "console", "orders-1", "catalog-2",
            "notifications-1", "payments-provider", "mailsink"} <= names
    for i in range(rows.count()):
        health = rows.nth(i).locator("td.health")
        assert health.inner_text() == "healthy", rows.nth(i).get_attribute("data-process")
    shot(page, "console-resources.png")
    context.close()


def test_open_the_trace_of_an_order_just_placed_and_its_saga(page: Any,
                                                             platform: Platform) -> None:
    order_id = order(platform, APPROVE_CARD)
    base = console_base(platform)

    def listed() -> bool:
        page.goto(f"{base}/traces?order_id={order_id}")
        return page.locator("#traces a[href^='/traces/']").count() > 0

    wait_until(listed, 30, "the order's trace in the console")
    page.locator("#traces a[href^='/traces/']").first.click()
    spans = page.locator("#waterfall tr.span")

    def every_hop() -> set[str]:
        page.reload()
        services = {spans.nth(i).get_attribute("data-service") for i in range(spans.count())}
        # And orders' request span under the edge's: a service exports its spans in
        # batches, and until the request's own span arrives (it ends last), its children
        # show at the top level. Sagas end within ~60 ms since ADR 0042, often before then.
        request = spans.nth(1).locator("pre").first.text_content() or ""
        return services if {"envoy", "orders", "inventory", "payments", "shipping",
                            "notifications"} <= services and "http" in request else set()

    wait_until(every_hop, 30, "spans of every service in the waterfall")
    assert spans.first.get_attribute("data-service") == "envoy"  # the edge starts it
    assert page.locator("#waterfall .wf span").count() == spans.count()
    spans.nth(1).locator("summary").click()  # a span's attributes
    assert "http" in spans.nth(1).locator("pre").first.inner_text()
    shot(page, "console-traces.png")

    page.get_by_role("link", name="its saga").click()
    assert re.search(rf"/sagas/{order_id}$", page.url)
    events = page.locator("#timeline tr.event")
    kinds = [events.nth(i).locator("td").nth(1).inner_text() for i in range(events.count())]
    assert kinds[0] == "started" and "completed" in kinds
    # ADR 0053: the charge carries the shipment's command, and the capture is not a reply
    # orders handles: two commands sent, two replies.
    assert kinds.count("command_sent") == 2 and kinds.count("reply") == 2
    page.locator("#saga-trace").click()
    assert "/traces/" in page.url
    page.go_back()
    shot(page, "console-saga-approved.png")


def test_the_metrics_page_charts_the_orders_just_placed(page: Any, platform: Platform) -> None:
    """Each panel is a uPlot chart of a Prometheus range query; after an order, the orders
    service has a request-rate series and sagas have finished with an outcome."""
    order(platform, APPROVE_CARD)
    base = console_base(platform)
    page.goto(f"{base}/metrics")

    def charted() -> bool:
        rate = page.locator("#panel-http_rate")
        outcomes = page.locator("#panel-saga_outcomes")
        return (rate.count() == 1 and int(rate.get_attribute("data-series") or 0) > 0
                and outcomes.count() == 1
                and int(outcomes.get_attribute("data-series") or 0) > 0
                and "orders" in rate.locator(".u-legend").inner_text())

    # Prometheus scrapes every few seconds and the page redraws every 5 s.
    wait_until(charted, 60, "request-rate and saga-outcome series on the metrics page")
    assert page.locator("#panels canvas").count() >= 11  # one chart per panel
    assert "updated" in page.locator("#metrics-note").inner_text()
    assert "completed" in page.locator("#panel-saga_outcomes .u-legend").inner_text()
    shot(page, "console-metrics.png")


def test_a_declined_order_shows_its_compensation_and_error_span(page: Any,
                                                                 platform: Platform) -> None:
    order_id = order(platform, DECLINE_CARD)
    base = console_base(platform)
    page.goto(f"{base}/sagas/{order_id}")
    events = page.locator("#timeline tr.event")
    kinds = [events.nth(i).locator("td").nth(1).inner_text() for i in range(events.count())]
    assert "compensation_sent" in kinds and "compensated" in kinds
    assert page.locator("#timeline tr.kind-compensation_sent").count() == 1
    shot(page, "console-saga.png")
    page.locator("#saga-trace").click()

    def error_row() -> bool:
        page.reload()
        return page.locator("#waterfall tr.span.error").count() > 0

    wait_until(error_row, 30, "the declined payment's error span")
    assert "card_declined" in page.locator("#waterfall tr.span.error").first.inner_text()
    page.goto(f"{base}/sagas")
    assert page.locator("#sagas").get_by_text(order_id).count() == 1


def test_replay_a_dead_letter_once_its_cause_is_fixed_and_see_it_handled(
        page: Any, platform: Platform) -> None:
    """Commands out of order: ReleaseShipment for a shipment shipping does not have yet is
    dead-lettered (unknown_shipment). Once the shipment exists, the operator replays it from
    the console, and shipping releases the parcel."""
    shipment, order_id = f"shp-{uuid.uuid4()}", str(uuid.uuid4())

    def envelope_of(command: Any) -> Envelope:
        return Envelope.new(command.subject(), command.message_type(), command.to_payload(),
                            correlation_id=order_id)

    release = envelope_of(ReleaseShipment(shipment_id=shipment, order_id=order_id))
    create = envelope_of(CreateShipment(
        shipment_id=shipment, order_id=order_id, customer_id=str(uuid.uuid4()),
        address=ShippingAddress(name="Ada", line1="1 Main St", city="Seoul",
                                postal_code="04524", country="KR"),
        lines=[ShipmentLine(sku="MUG-001", quantity=1)]))

    def publish(envelope: Envelope) -> None:
        async def send() -> None:
            nc = await nats_connect(platform)
            try:
                await nc.jetstream().publish(envelope.subject, envelope.body(),
                                             headers=envelope.headers())
            finally:
                await nc.close()

        off_loop(send)

    async def letters() -> list[Any]:
        nc = await nats_connect(platform)
        try:
            return [d for d in await list_dead_letters(nc.jetstream(), None, 10_000)
                    if d.message_id == str(release.message_id)]
        finally:
            await nc.close()

    def shipping_said(event: str) -> bool:
        with console_api(platform) as c:
            rows = c.get("/api/logs", params={"service": "shipping", "q": shipment}).json()
        return any(r["event"] == event for r in rows["logs"])

    publish(release)
    [letter] = wait_until(lambda: off_loop(letters), 30, "the early release dead-lettered")
    base = console_base(platform)
    page.goto(f"{base}/dead-letters")
    row = page.locator(f"#dead-letters tr[data-seq='{letter.sequence}']")
    assert "UnmatchedMessage" in row.inner_text()
    row.locator("summary").click()
    assert "does not exist" in row.locator("pre.error-text").inner_text()
    shot(page, "console-dead-letters.png")

    publish(create)  # the cause fixed: the shipment now exists
    wait_until(lambda: shipping_said("shipment_created"), 30, "the shipment created")
    row.get_by_role("button", name="replay").click()
    assert page.url == f"{base}/dead-letters"
    assert page.locator(f"#dead-letters tr[data-seq='{letter.sequence}']").count() == 0
    audit = page.locator("#audit tr").nth(1).inner_text()
    assert "replay_dead_letter" in audit and str(letter.sequence) in audit
    assert "via console" in audit
    wait_until(lambda: shipping_said("shipment_released"), 30,
               "the replayed release handled by shipping")
    assert off_loop(letters) == []  # handled, not dead-lettered again

    # Shipping's events for this made-up order reach orders, which has no such saga and
    # dead-letters them: not this test's subject, and not to be left for the others.
    async def tidy() -> None:
        from chassis.messaging.dlq import discard_dead_letter

        nc = await nats_connect(platform)
        try:
            js = nc.jetstream()
            for d in await list_dead_letters(js, None, 10_000):
                if order_id.encode() in d.data:
                    await discard_dead_letter(js, d.sequence)
        finally:
            await nc.close()

    off_loop(tidy)


def test_an_alert_fires_when_a_consumer_is_stopped_and_clears_when_it_is_back(
        page: Any, platform: Platform) -> None:
    base = console_base(platform)
    victim = "notifications-1"  # consumes every order's events; nothing waits on it

    def rule_state(name: str) -> str | None:
        page.goto(f"{base}/alerts")
        row = page.locator(f"#alerts tr[data-rule='{name}']")
        return row.get_attribute("data-state") if row.count() else None

    assert rule_state("MetricsTargetDown") == "inactive"
    page.goto(f"{base}/")
    page.locator(f"#resources tr[data-process='{victim}']").get_by_role(
        "button", name="stop", exact=True).click()
    row = page.locator(f"#resources tr[data-process='{victim}'] td.health")
    assert row.inner_text() == "stopped"
    try:
        wait_until(lambda: rule_state("MetricsTargetDown") == "firing", 90,
                   "MetricsTargetDown firing")
        firing = page.locator("#alerts tr[data-rule='MetricsTargetDown']").inner_text()
        assert victim in firing
        shot(page, "console-alerts.png")
    finally:
        page.goto(f"{base}/")
        page.locator(f"#resources tr[data-process='{victim}']").get_by_role(
            "button", name="start", exact=True).click()
    wait_until(lambda: platform.state()["processes"][victim]["state"] == "ready", 60,
               f"{victim} ready again")
    wait_until(lambda: rule_state("MetricsTargetDown") == "inactive", 60,
               "MetricsTargetDown cleared")
