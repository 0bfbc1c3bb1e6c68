"""`mercato check` sees what the services and the simulators hold: each newer invariant is
broken by hand on the running platform (as the PostgreSQL superuser, or through a
simulator's side door), reported with a clear message and a non-zero exit, and restored.

Rows the platform's own background work would pick up (the outbox relay, the carrier) are
planted and locked in one round trip, so that work skips them (SKIP LOCKED) while the check
reads them, and are deleted in the same transaction."""

from __future__ import annotations

import asyncio
import json
import smtplib
import sqlite3
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import httpx2 as httpx
import psutil
import pytest
from edge_helpers import Platform, mercato, superuser_connect, wait_until
from mercato.runtime.paths import Home
from mercato.runtime.services import simulator_token
from shop import bearer, customer_with_address, new_product, place, settled

pytestmark = pytest.mark.e2e

# The rules that compare an order with the other services judge orders unchanged for the
# grace; the order these tests break is settled well within it.
GRACE = ["--grace", "2"]


def violations(platform: Platform, *args: str) -> tuple[int, list[dict[str, str]]]:
    res = mercato(platform.home, "check", "--json", *args, check=False)
    assert "Traceback" not in res.stderr, res.stderr
    return res.returncode, json.loads(res.stdout)["violations"]


def about(found: list[dict[str, str]], subject: str) -> list[tuple[str, str]]:
    return [(v["invariant"], v["detail"]) for v in found if v["subject"] == subject]


def sql(platform: Platform, database: str, statement: str, *args: Any) -> list[Any]:
    async def run() -> list[Any]:
        conn = await superuser_connect(platform, database)
        try:
            return list(await conn.fetch(statement, *args))
        finally:
            await conn.close()

    return asyncio.run(run())


class Held:
    """A row committed and at once locked by an open transaction (one round trip, so the
    relay or the carrier cannot claim it in between); ``release`` runs the cleanup in that
    transaction and commits."""

    def __init__(self, platform: Platform, database: str, plant: str, lock: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.conn = self.loop.run_until_complete(superuser_connect(platform, database))
        # Simple query protocol (no arguments): several statements in one message.
        self.loop.run_until_complete(self.conn.execute(
            f"BEGIN; {plant}; COMMIT; BEGIN; {lock} FOR UPDATE;"))

    def release(self, cleanup: str) -> None:
        try:
            self.loop.run_until_complete(self.conn.execute(f"{cleanup}; COMMIT;"))
        finally:
            self.loop.run_until_complete(self.conn.close())
            self.loop.close()


@pytest.fixture(scope="module")
def order(platform: Platform) -> str:
    """An APPROVED order that every service has caught up with (its own rules all pass)."""
    with platform.client() as c:
        admin = bearer(platform.admin_token(c))
        product = new_product(c, admin, on_hand=5)
        auth, address_id = customer_with_address(platform, c)
        order_id = place(c, auth, product, address_id, "4242424242424242")
        assert settled(c, auth, order_id)["status"] == "APPROVED"
    # The checker judges only orders unchanged for the grace: until then a planted
    # disagreement would pass unseen, whatever the checker can do.
    wait_until(lambda: sql(platform, "orders", "SELECT updated_at < now() - make_interval("
                           "secs => $2) AS settled FROM orders WHERE id = $1",
                           uuid.UUID(order_id), float(GRACE[1]))[0]["settled"], 30,
               "the order to stay unchanged for the checker's grace")
    wait_until(lambda: not about(violations(platform, *GRACE)[1], order_id), 60,
               "every service to agree on the new order")
    return order_id


def test_a_clean_platform_checks_clean(platform: Platform) -> None:
    def clean() -> bool:
        res = mercato(platform.home, "check", check=False)
        return res.returncode == 0 and "all invariants hold" in res.stdout
    wait_until(clean, 90, "mercato check to pass (the earlier tests' orders settling)")


def test_an_outbox_row_not_published_within_the_bound(platform: Platform) -> None:
    message_id = str(uuid.uuid4())
    held = Held(platform, "catalog",
                "INSERT INTO outbox (message_id, subject, message_type, headers, payload, "
                f"created_at) VALUES ('{message_id}', 'catalog.events.check_probe', "
                "'CheckProbe.v1', '{}', '\\x7b7d', now() - interval '1 hour')",
                f"SELECT id FROM outbox WHERE message_id = '{message_id}'")
    try:
        code, found = violations(platform, "--outbox-bound", "60")
    finally:
        held.release(f"DELETE FROM outbox WHERE message_id = '{message_id}'")
    assert code == 1
    [(invariant, detail)] = about(found, "catalog outbox")
    assert invariant == "every outbox publishes within a bound"
    assert "row(s) unpublished, the oldest for 36" in detail and "(bound 60 s)" in detail


def test_order_history_that_disagrees_with_orders(platform: Platform, order: str) -> None:
    [view] = sql(platform, "order_history",
                 "SELECT status, total FROM order_view WHERE order_id = $1", order)
    sql(platform, "order_history", "UPDATE order_view SET status = 'REJECTED', total = 1 "
        "WHERE order_id = $1", order)
    try:
        code, found = violations(platform, *GRACE)
    finally:
        sql(platform, "order_history", "UPDATE order_view SET status = $2, total = $3 "
            "WHERE order_id = $1", order, view["status"], view["total"])
    assert code == 1
    [(_, status), (_, total)] = about(found, order)
    assert status == "order_history says REJECTED, orders says APPROVED"
    assert total.startswith("order_history total 1, orders total ")
    assert not about(violations(platform, *GRACE)[1], order)


@pytest.fixture
def approved_without_anything(platform: Platform) -> Iterator[str]:
    """An APPROVED order row that no other service has heard of (nothing else is written:
    no outbox row, so no event)."""
    order_id = str(uuid.uuid4())
    sql(platform, "orders",
        "INSERT INTO orders (id, customer_id, idempotency_key, request_hash, status, lines, "
        "total, currency, shipping_address_id, created_at, updated_at) VALUES ($1::uuid, "
        "'planted', $1, 'x', 'APPROVED', '[]', 12000, 'KRW', 'a', now() - interval '1 hour', "
        "now() - interval '1 hour')", order_id)
    try:
        yield order_id
    finally:
        sql(platform, "orders", "DELETE FROM orders WHERE id = $1::uuid", order_id)


def test_an_approved_order_without_shipment_capture_or_history(
        platform: Platform, approved_without_anything: str) -> None:
    code, found = violations(platform)
    assert code == 1
    assert sorted(about(found, approved_without_anything)) == sorted([
        ("captured - refunded is 0 or the total", "approved, but nothing captured of 12000.00"),
        ("order_history matches orders", "order APPROVED is missing from order_history"),
        ("every approved order has a shipment", "approved, but shipping has none"),
        ("the provider's captures match the approved orders",
         "approved, but the provider holds no captured charge")])


def test_a_shipment_the_carrier_did_not_move_in_time(platform: Platform) -> None:
    shipment_id = f"shp-planted-{uuid.uuid4().hex[:8]}"
    held = Held(platform, "shipping",
                "INSERT INTO shipments (shipment_id, order_id, customer_id, status, "
                f"next_move_at) VALUES ('{shipment_id}', 'planted-order', 'planted', "
                "'DISPATCHED', now() - interval '5 minutes')",
                f"SELECT 1 FROM shipments WHERE shipment_id = '{shipment_id}'")
    try:
        code, found = violations(platform)
    finally:
        held.release(f"DELETE FROM shipments WHERE shipment_id = '{shipment_id}'")
    assert code == 1
    [(invariant, detail)] = about(found, "planted-order")
    assert invariant == "no shipment overdue"
    assert f"shipment {shipment_id} is DISPATCHED; the carrier was due to move it 30" in detail


def simulator(platform: Platform, name: str) -> httpx.Client:
    """The simulator's own API, with the home's token for it."""
    token = simulator_token(Home(platform.home), name)
    return httpx.Client(base_url=f"http://127.0.0.1:{platform.state()['processes'][name]['port']}",
                        headers={"Authorization": f"Bearer {token}"}, timeout=10)


def test_a_second_capture_at_the_provider(platform: Platform, order: str) -> None:
    """payments books a second payment for the order and the provider captured it."""
    key = f"planted-{uuid.uuid4().hex[:8]}"
    with simulator(platform, "payments-provider") as c:
        card = c.post("/payment-methods", json={"card_number": "4242424242424242"})
        assert card.status_code == 201, card.text
        made = c.post("/charges", json={"idempotency_key": key, "amount": "100",
                                        "currency": "KRW", "payment_method": card.json()["id"]})
        assert made.status_code == 201, made.text
        charge = made.json()["id"]
        assert c.post(f"/charges/{charge}/capture").status_code == 200
        sql(platform, "payments", "INSERT INTO payments (payment_id, order_id, status, amount, "
            "currency) VALUES ($1, $2, 'captured', 100, 'KRW')", key, order)
        try:
            code, found = violations(platform, *GRACE)
        finally:
            sql(platform, "payments", "DELETE FROM payments WHERE payment_id = $1", key)
            assert c.post(f"/charges/{charge}/refund").status_code == 200
    assert code == 1
    [(invariant, detail)] = about(found, order)
    assert invariant == "the provider's captures match the approved orders"
    assert detail.startswith("2 captured charges at the provider: ") and charge in detail
    assert not about(violations(platform, *GRACE)[1], order)


def test_the_same_email_twice_in_the_mail_sink(platform: Platform) -> None:
    order_id = f"planted-{uuid.uuid4().hex[:8]}"
    sink = platform.state()["processes"]["mailsink"]
    # The sink listens on two ports: its HTTP one (in the state) and SMTP.
    [smtp_port] = {c.laddr.port for c in psutil.Process(sink["pid"]).net_connections("tcp")
                   if c.status == psutil.CONN_LISTEN} - {sink["port"]}
    for _ in range(2):  # what a sender that never marks its email sent would do
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "shop@example.com", "ada@example.com", "Hi"
        msg["Message-ID"] = f"<notification-{order_id}@notifications.mercato.local>"
        msg["X-Mercato-Notification"] = f"{order_id}/order_placed"
        msg.set_content("Thank you for your order.")
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as smtp:
            smtp.send_message(msg)
    try:
        code, found = violations(platform)
    finally:  # the sink has no delete: its SQLite file, which it keeps open in WAL mode
        with sqlite3.connect(platform.home / "mailsink" / "messages.sqlite3") as db:
            db.execute("DELETE FROM messages WHERE notification LIKE ?", (f"{order_id}/%",))
    assert code == 1
    assert about(found, order_id) == [(
        "the mail sink got one email per order and kind",
        "2 emails order_placed (a sender crash leaves at most one extra per crash; see "
        "docs/operations.md)")]


def test_the_platform_checks_clean_again(platform: Platform) -> None:
    res = mercato(platform.home, "check", check=False)
    assert res.returncode == 0, res.stdout + res.stderr
