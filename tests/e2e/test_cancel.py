"""A customer cancels an APPROVED order before its parcel is dispatched: shipping cancels
the shipment, then the payment is refunded and the units are back on hand."""

from __future__ import annotations

import pytest
from edge_helpers import Platform, mercato, wait_until
from shop import (
    APPROVE_CARD,
    bearer,
    customer_with_address,
    new_product,
    place,
    settled,
    stock_of,
)

pytestmark = pytest.mark.e2e


def test_cancel_of_an_approved_order_before_dispatch(platform: Platform) -> None:
    with platform.client() as c:
        admin = bearer(platform.admin_token(c))
        product = new_product(c, admin, on_hand=7)
        auth, address_id = customer_with_address(platform, c)
        order_id = place(c, auth, product, address_id, APPROVE_CARD)
        assert settled(c, auth, order_id)["status"] == "APPROVED"
        wait_until(lambda: stock_of(c, product["sku"])["on_hand"] == 6, 30,
                   "the reservation to be committed")

        asked = c.post(f"/api/orders/{order_id}/cancel", headers=auth)
        assert asked.status_code == 202, asked.text
        assert asked.json()["cancel_requested"] is True
        order = wait_until(lambda: (o := c.get(f"/api/orders/{order_id}", headers=auth).json())
                           ["status"] == "CANCELLED" and o, 30, "the order to be cancelled")
        assert order["reason"] == "cancelled_by_customer"

        wait_until(lambda: (s := stock_of(c, product["sku"]))["on_hand"] == 7
                   and s["reserved"] == 0, 30, "the units back on hand")
        wait_until(lambda: c.get("/api/payments/ledger", params={"order_id": order_id},
                                 headers=admin).json()["net_captured"] in ("0", "0.00", 0),
                   30, "the refund")
        assert c.get(f"/api/payments/payments/pay-{order_id}",
                     headers=admin).json()["status"] == "REFUNDED"
        shipments = c.get("/api/shipping/shipments", params={"order_id": order_id},
                          headers=auth).json()
        items = shipments["items"] if isinstance(shipments, dict) else shipments
        assert [s["status"] for s in items] == ["CANCELLED"]
        wait_until(lambda: (h := c.get(f"/api/history/orders/{order_id}", headers=auth))
                   .status_code == 200 and h.json()["status"] == "CANCELLED", 30,
                   "the history row")

        def mails() -> list[str]:
            found = c.get("/api/notifications/notifications", params={"order_id": order_id},
                          headers=admin).json()
            rows = found["items"] if isinstance(found, dict) else found
            return sorted(n["kind"] for n in rows if n["status"] == "sent")

        wait_until(lambda: mails() == ["order_approved", "order_cancelled", "order_placed"],
                   30, "one email per kind")
        # Cancelled is final: a second cancel is refused.
        assert c.post(f"/api/orders/{order_id}/cancel", headers=auth).status_code == 409
    wait_until(lambda: mercato(platform.home, "check", check=False).returncode == 0, 30,
               "mercato check to pass")
