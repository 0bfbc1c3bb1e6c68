"""Checkout: one order per checkout form, however often it is submitted.

The checkout page hands out a fresh key in its form. Submitting claims the key's row
(locked until the end of the transaction, so a double click waits for the first submit and
then finds its order), adds the address if a new one was typed, exchanges the card for a
payment method (the card number goes to payments only), and places the order with
``Idempotency-Key: storefront-<key>``. What was done is recorded on the row, so a
resubmitted form (reload, a retry after an outage) reuses the address, the payment method
and the order instead of making new ones.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chassis.db import UnitOfWork
from chassis.http_client import UpstreamUnavailable

from storefront.adapters.backends import Backends, Refused
from storefront.adapters.repository import CheckoutRows
from storefront.domain.model import clean_card_number, luhn_ok
from storefront.service_layer.sessions import Customer

KEY = re.compile(r"^[0-9a-f]{32}$")
ADDRESS_FIELDS = ("name", "line1", "line2", "city", "postal_code", "country", "phone")


class CheckoutError(Exception):
    """Something the customer can act on; ``field`` names the form field when one is wrong."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message, self.field = message, field


@dataclass(frozen=True)
class CheckoutForm:
    key: str
    address_id: str | None          # None or "new": the address fields are used
    address: dict[str, str]
    card_number: str

    @classmethod
    def parse(cls, form: dict[str, str]) -> CheckoutForm:
        key = form.get("checkout_key", "")
        if not KEY.match(key):
            raise CheckoutError("This checkout form has expired: please review your order "
                                "and pay again.")
        choice = form.get("address_id") or "new"
        address = {f: form.get(f, "").strip() for f in ADDRESS_FIELDS}
        if choice == "new":
            for required in ("name", "line1", "city", "postal_code", "country"):
                if not address[required]:
                    raise CheckoutError("Please fill in the delivery address.", required)
        card = clean_card_number(form.get("card_number", ""))
        if not luhn_ok(card):
            raise CheckoutError("That card number is not valid: check the digits.",
                                "card_number")
        return cls(key=key, address_id=None if choice == "new" else choice,
                   address={k: v for k, v in address.items() if v}, card_number=card)


async def place_order(uow_factory: Callable[[], UnitOfWork], backends: Backends,
                      customer: Customer, form: CheckoutForm) -> str:
    token = customer.access_token
    async with uow_factory() as uow:
        rows = CheckoutRows(uow.session)
        row = await rows.claim(form.key, customer.id)
        if row is None:
            raise CheckoutError("This checkout form is not yours: please start again.")
        if row["order_id"]:
            return str(row["order_id"])
        try:
            return await _place(rows, row, backends, token, form)
        finally:
            # What was done (address, payment method, order) is kept even when a later
            # step failed: the same form sent again goes on from there.
            await uow.commit()


async def _place(rows: CheckoutRows, row: dict[str, Any], backends: Backends, token: str,
                 form: CheckoutForm) -> str:
    key = form.key
    cart = await backends.cart(token)
    lines = [i for i in cart.get("items", []) if i.get("available", True)]
    if not lines:
        raise CheckoutError("Your cart is empty.")
    if len(lines) != len(cart.get("items", [])):
        raise CheckoutError("Remove the items that are no longer sold from your cart first.")
    address_id = row["address_id"] or form.address_id
    try:
        if not address_id:
            address = form.address
            if "country" in address:
                address = {**address, "country": address["country"].upper()}
            address_id = str((await backends.add_address(token, address))["id"])
            await rows.update(key, address_id=address_id)
        method_id = row["payment_method_id"]
        if not method_id:
            method_id = str((await backends.payment_method(token, form.card_number))["id"])
            await rows.update(key, payment_method_id=method_id)
        items = sorted(({"product_id": str(i["product_id"]), "quantity": int(i["quantity"])}
                        for i in lines), key=lambda i: i["product_id"])
        placed = await backends.place_order(
            token, {"items": items, "shipping_address_id": address_id,
                    "payment": {"payment_method_id": method_id}},
            idempotency_key=f"storefront-{key}")
    except Refused as exc:
        raise CheckoutError(_refusal(exc)) from exc
    except UpstreamUnavailable as exc:
        raise CheckoutError("We could not place your order just now (a service is not "
                            "answering). Nothing was charged: please try again in a moment."
                            ) from exc
    order_id = str(placed["id"])
    await rows.update(key, order_id=order_id,
                      product_ids=",".join(i["product_id"] for i in items))
    return order_id


def _refusal(exc: Refused) -> str:
    if exc.service == "payments":
        return f"Your card was not accepted: {exc.detail}"
    if exc.service == "identity":
        return f"The address was not accepted: {exc.detail}"
    return f"The order was not accepted: {exc.detail}"


async def clear_ordered_lines(uow_factory: Callable[[], UnitOfWork], backends: Backends,
                              customer: Customer, order_id: str) -> None:
    """Once an order is approved, what it bought leaves the cart (a declined order leaves
    the cart as it was, so the customer can pay with another card)."""
    async with uow_factory() as uow:
        rows = CheckoutRows(uow.session)
        row = await rows.by_order(order_id, customer.id)
        if row is None or row["cart_cleared"]:
            return
        for product_id in filter(None, str(row["product_ids"]).split(",")):
            await backends.remove_cart_item(customer.access_token, product_id)
        await rows.mark_cart_cleared(row["checkout_key"])
        await uow.commit()


async def payment_method_of(uow_factory: Callable[[], UnitOfWork], customer: Customer,
                            order_id: str) -> dict[str, Any] | None:
    async with uow_factory() as uow:
        return await CheckoutRows(uow.session).by_order(order_id, customer.id)
