"""Card numbers stay at the edge of the system: after orders with every test card, placed
with a card number, through the cart and with a payment method, no message that travelled on
the broker, no message any JetStream stream holds (dead letters included), no line in any log
and no row in any database holds one.
Card numbers that are not ASCII digits with a valid Luhn check digit are refused with 422 at
every entrance and never charged; a payment method works end to end for its owner only."""

from __future__ import annotations

import json
import uuid

import pytest
from edge_helpers import (
    Platform,
    Wiretap,
    database_dump,
    log_files,
    provider_charges,
    stream_messages,
    wait_until,
)
from shop import (
    bearer,
    customer_with_address,
    new_product,
    payment_method,
    place_with,
    settled,
)

pytestmark = pytest.mark.e2e

# Every test card and the outcome it makes.
TEST_CARDS = {"4242424242424242": ("APPROVED", None),
              "4000000000000002": ("REJECTED", "card_declined"),
              "4000000000009995": ("REJECTED", "insufficient_funds"),
              "4000000000000119": ("REJECTED", "provider_timeout")}
NOT_LUHN = "4242424242424241"


def full_width(card: str) -> str:
    """The number in full-width digits (U+FF10-U+FF19): str.isdigit() and pydantic's \\d
    accept them."""
    return card.translate({ord(d): 0xFF10 + int(d) for d in "0123456789"})


BAD_CARDS = [full_width("4242424242424242"), NOT_LUHN]


def needles() -> list[str]:
    """What a leak looks like: every card number sent, as typed and as JSON escapes it."""
    found = [*TEST_CARDS, *BAD_CARDS]
    return [*found, *(json.dumps(c)[1:-1] for c in found if not c.isascii())]


def leaks(texts: dict[str, str]) -> dict[str, list[str]]:
    return {where: hits for where, text in texts.items()
            if (hits := [n for n in needles() if n in text])}


def checkout(c, auth: dict, product: dict, address_id: str, payment: dict) -> str:
    """The product into the (emptied) cart, then checkout: the order's id."""
    resp = c.put(f"/api/cart/items/{product['id']}", headers=auth, json={"quantity": 1})
    assert resp.status_code == 200, resp.text
    resp = c.post("/api/cart/checkout", headers={**auth, "Idempotency-Key": str(uuid.uuid4())},
                  json={"shipping_address_id": address_id, "payment": payment})
    assert resp.status_code == 202, resp.text
    return resp.json()["order_id"]


def test_no_card_number_in_any_message_log_or_database_after_orders_with_every_card(
        platform: Platform) -> None:
    with platform.client() as c, Wiretap(platform) as tap:
        admin = bearer(platform.admin_token(c))
        product = new_product(c, admin, on_hand=100)
        auth, address_id = customer_with_address(platform, c)
        wait_until(lambda: c.get("/api/cart", headers=auth).status_code == 200, 60,
                   "the cart through the edge")
        expected: dict[str, tuple[str, str | None]] = {}
        for card, outcome in TEST_CARDS.items():
            by_card = place_with(c, auth, product, address_id, {"card_number": card})
            by_cart = checkout(c, auth, product, address_id, {"card_number": card})
            method = payment_method(c, auth, card)
            assert method["last4"] == card[-4:] and card not in json.dumps(method)
            by_method = place_with(c, auth, product, address_id,
                                   {"payment_method_id": method["id"]})
            expected |= dict.fromkeys((by_card, by_cart, by_method), outcome)
        for bad in BAD_CARDS:  # refused at every entrance (see also the test below)
            refused = c.post("/api/orders",
                             headers={**auth, "Idempotency-Key": str(uuid.uuid4())},
                             json={"items": [{"product_id": product["id"], "quantity": 1}],
                                   "shipping_address_id": address_id,
                                   "payment": {"card_number": bad}})
            assert refused.status_code == 422, refused.text
        for order_id, (status, reason) in expected.items():
            order = settled(c, auth, order_id)
            assert (order["status"], order["reason"]) == (status, reason), order

    # Every order settled: the logs that matter are written once orders and payments logged
    # each order's end.
    def logged() -> bool:
        logs = log_files(platform)
        orders = "".join(t for n, t in logs.items() if n.startswith("orders"))
        payments = "".join(t for n, t in logs.items() if n.startswith("payments-"))
        return all(o in orders and o in payments for o in expected)

    wait_until(logged, 30, "every order's end in the orders and payments logs")
    # What travelled: the saga's commands among it (a work queue deletes them once handled).
    travelled = tap.messages
    assert any(b"payments.commands.charge_payment" in m for m in travelled)
    travelled_texts = {f"published #{i}": m.decode(errors="replace")
                       for i, m in enumerate(travelled)}
    streams = stream_messages(platform)
    assert "DEAD_LETTERS" in streams and "PAYMENTS_COMMANDS" in streams
    assert sum(len(m) for m in streams.values()) > len(expected)
    stream_texts = {f"stream {name} #{i}": m.decode(errors="replace")
                    for name, msgs in streams.items() for i, m in enumerate(msgs)}
    log_texts = {f"log {name}": text for name, text in log_files(platform).items()}
    dump = database_dump(platform)
    assert {"orders.public.saga_instances", "payments.public.payment_methods",
            "cart.public.checkouts"} <= set(dump)
    db_texts = {f"row of {table}": "\n".join(rows) for table, rows in dump.items()}
    assert leaks(travelled_texts) == {}
    assert leaks(stream_texts) == {}
    assert leaks(log_texts) == {}
    assert leaks(db_texts) == {}


@pytest.mark.parametrize("bad", BAD_CARDS, ids=["full-width-digits", "not-luhn"])
def test_a_card_that_is_not_ascii_digits_passing_luhn_is_422_everywhere_and_never_charged(
        platform: Platform, bad: str) -> None:
    with platform.client() as c:
        admin = bearer(platform.admin_token(c))
        product = new_product(c, admin, on_hand=5)
        auth, address_id = customer_with_address(platform, c)
        wait_until(lambda: c.get("/api/cart", headers=auth).status_code == 200, 60,
                   "the cart through the edge")
        assert c.put(f"/api/cart/items/{product['id']}", headers=auth,
                     json={"quantity": 1}).status_code == 200
        charges_before = len(provider_charges(platform))
        attempts = {
            "orders": c.post("/api/orders", headers={**auth, "Idempotency-Key": "bad-card"},
                             json={"items": [{"product_id": product["id"], "quantity": 1}],
                                   "shipping_address_id": address_id,
                                   "payment": {"card_number": bad}}),
            "cart": c.post("/api/cart/checkout", headers={**auth, "Idempotency-Key": "bad"},
                           json={"shipping_address_id": address_id,
                                 "payment": {"card_number": bad}}),
            "payments": c.post("/api/payments/payment-methods", headers=auth,
                               json={"card_number": bad}),
        }
        for where, resp in attempts.items():
            assert resp.status_code == 422, f"{where}: {resp.status_code} {resp.text}"
            assert resp.headers["content-type"] == "application/problem+json", where
            assert "4242" not in resp.text, where  # the number is not echoed
        assert c.get("/api/orders", headers=auth).json() == []
        assert c.get("/api/payments/payment-methods", headers=auth).json() == {"items": []}
        assert [i["product_id"] for i in c.get("/api/cart", headers=auth).json()["items"]] == [
            product["id"]]  # the cart is untouched
        charges = provider_charges(platform)
        assert len(charges) == charges_before  # nothing was charged meanwhile
        assert all(ch["card_last4"].isascii() and ch["card_last4"] != bad[-4:]
                   for ch in charges)


def test_a_payment_method_pays_for_its_owners_orders_only(platform: Platform) -> None:
    with platform.client() as c:
        admin = bearer(platform.admin_token(c))
        product = new_product(c, admin, on_hand=10)
        alice, alice_address = customer_with_address(platform, c)
        bob, bob_address = customer_with_address(platform, c)
        method = payment_method(c, alice, "4242424242424242")
        assert (method["last4"], method["brand"]) == ("4242", "visa")
        order_id = place_with(c, alice, product, alice_address,
                              {"payment_method_id": method["id"]})
        order = settled(c, alice, order_id)
        assert order["status"] == "APPROVED", order
        payment = c.get(f"/api/payments/payments/pay-{order_id}", headers=admin).json()
        assert (payment["status"], payment["card_last4"]) == ("CAPTURED", "4242")
        # Bob cannot pay with Alice's payment method, nor learn that it exists.
        resp = c.post("/api/orders", headers={**bob, "Idempotency-Key": str(uuid.uuid4())},
                      json={"items": [{"product_id": product["id"], "quantity": 1}],
                            "shipping_address_id": bob_address,
                            "payment": {"payment_method_id": method["id"]}})
        assert resp.status_code == 422, resp.text
        assert resp.json()["reason"] == "unknown_payment_method"
        assert c.get(f"/api/payments/payment-methods/{method['id']}",
                     headers=bob).status_code == 404
        assert c.get("/api/orders", headers=bob).json() == []
