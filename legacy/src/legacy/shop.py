"""What the shop does, one function per use case, each in its own transaction, SQL by hand
(as the shop always had it). Checkout is the one that matters: stock, payment, shipment and
the order commit together or not at all."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from legacy.domain import (
    Offer,
    Problem,
    charge_key,
    money,
    normalise_lines,
    plan_checkout,
    tracking_number,
    valid_email,
    valid_password,
)
from legacy.provider import PaymentProvider


class Passwords:
    """argon2id with the shop's cost settings (lower in tests, as identity's)."""

    def __init__(self, time_cost: int = 3, memory_kib: int = 65536, parallelism: int = 4):
        self.hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib,
                                     parallelism=parallelism)
        self._dummy: str | None = None

    def hash(self, password: str) -> str:
        return self.hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        # An unknown email is checked against a dummy hash, so it costs as long as a wrong
        # password and the answer time does not tell which accounts exist.
        if self._dummy is None:
            self._dummy = self.hasher.hash("not-a-password-of-anyone")
        try:
            return self.hasher.verify(stored or self._dummy, password) and stored is not None
        except (VerifyMismatchError, InvalidHashError):
            return False


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Customer:
    id: int
    email: str
    name: str
    is_admin: bool
    services_id: uuid.UUID | None = None


# -- customers and sessions --------------------------------------------------------------------


async def register(engine: AsyncEngine, passwords: Passwords, email: str, password: str,
                   name: str, *, is_admin: bool = False) -> Customer:
    email, password = valid_email(email), valid_password(password)
    if not name.strip():
        raise Problem(422, "Invalid name", "name must not be empty")
    hashed = await asyncio.to_thread(passwords.hash, password)
    try:
        async with engine.begin() as conn:
            row = (await conn.execute(text(
                "INSERT INTO customers (email, name, password_hash, is_admin) "
                "VALUES (:e, :n, :h, :a) RETURNING id"),
                {"e": email, "n": name.strip(), "h": hashed, "a": is_admin})).one()
    except IntegrityError:
        raise Problem(409, "Email taken", "an account with this email exists") from None
    return Customer(id=row.id, email=email, name=name.strip(), is_admin=is_admin)


async def login(engine: AsyncEngine, passwords: Passwords, email: str, password: str,
                ttl_s: int) -> str:
    async with engine.connect() as conn:
        row = (await conn.execute(text(
            "SELECT id, password_hash FROM customers WHERE lower(email) = lower(:e)"),
            {"e": email.strip()})).first()
    ok = await asyncio.to_thread(passwords.verify, row.password_hash if row else None, password)
    if not ok or row is None:
        raise Problem(401, "Wrong email or password", "check both and try again")
    token = secrets.token_urlsafe(32)
    async with engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO sessions (token_hash, customer_id, expires_at) "
            "VALUES (:t, :c, now() + make_interval(secs => :ttl))"),
            {"t": _token_hash(token), "c": row.id, "ttl": ttl_s})
    return token


async def logout(engine: AsyncEngine, token: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM sessions WHERE token_hash = :t"),
                           {"t": _token_hash(token)})


async def customer_of(engine: AsyncEngine, token: str) -> Customer | None:
    async with engine.connect() as conn:
        row = (await conn.execute(text(
            "SELECT c.id, c.email, c.name, c.is_admin, c.services_id FROM sessions s "
            "JOIN customers c ON c.id = s.customer_id "
            "WHERE s.token_hash = :t AND s.expires_at > now()"),
            {"t": _token_hash(token)})).first()
    return Customer(row.id, row.email, row.name, row.is_admin, row.services_id) if row else None


async def customer_by_services_id(engine: AsyncEngine, services_id: uuid.UUID
                                  ) -> Customer | None:
    """The customer the services know as ``services_id`` (ADR 0032)."""
    async with engine.connect() as conn:
        row = (await conn.execute(text(
            "SELECT id, email, name, is_admin, services_id FROM customers "
            "WHERE services_id = :s"), {"s": services_id})).first()
    return Customer(row.id, row.email, row.name, row.is_admin, row.services_id) if row else None


async def add_address(engine: AsyncEngine, customer_id: int, doc: dict[str, str]) -> dict[str, Any]:
    async with engine.begin() as conn:
        row = (await conn.execute(text(
            "INSERT INTO addresses (customer_id, recipient, line1, city, postal_code, country) "
            "VALUES (:c, :r, :l, :ci, :p, :co) RETURNING *"),
            {"c": customer_id, "r": doc["recipient"], "l": doc["line1"], "ci": doc["city"],
             "p": doc["postal_code"], "co": doc["country"]})).one()
    return _address(row)


async def addresses(engine: AsyncEngine, customer_id: int) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT * FROM addresses WHERE customer_id = :c ORDER BY id"),
            {"c": customer_id})).all()
    return [_address(r) for r in rows]


def _address(row: Any) -> dict[str, Any]:
    return {"id": row.id, "recipient": row.recipient, "line1": row.line1, "city": row.city,
            "postal_code": row.postal_code, "country": row.country,
            # The address's UUID on the services' side (ADR 0032).
            "services_id": str(row.services_id)}


# -- catalog -----------------------------------------------------------------------------------

_PRODUCT = ("SELECT p.id, p.sku, p.name, p.description, p.price, p.currency, p.active, "
            "p.category_id, c.name AS category, coalesce(s.on_hand, 0) AS on_hand "
            "FROM products p JOIN categories c ON c.id = p.category_id "
            "LEFT JOIN stock s ON s.product_id = p.id ")


def _product(row: Any) -> dict[str, Any]:
    return {"id": row.id, "sku": row.sku, "name": row.name, "description": row.description,
            "price": money(row.price, row.currency), "active": row.active,
            "category": {"id": row.category_id, "name": row.category},
            "in_stock": row.on_hand}


async def categories(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT id, name, parent_id FROM categories ORDER BY name"))).all()
    return [{"id": r.id, "name": r.name, "parent_id": r.parent_id} for r in rows]


async def products(engine: AsyncEngine, *, q: str | None, category: int | None, page: int,
                   page_size: int) -> dict[str, Any]:
    where = ["p.active"]
    params: dict[str, Any] = {"limit": page_size, "offset": (page - 1) * page_size}
    if q:
        where.append("p.name ILIKE :q")
        params["q"] = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    if category is not None:
        where.append("p.category_id = :cat")
        params["cat"] = category
    clause = "WHERE " + " AND ".join(where)
    async with engine.connect() as conn:
        total = (await conn.execute(text(f"SELECT count(*) FROM products p {clause}"),  # noqa: S608
                                    params)).scalar_one()
        rows = (await conn.execute(text(
            f"{_PRODUCT}{clause} ORDER BY p.id LIMIT :limit OFFSET :offset"),
            params)).all()
    return {"items": [_product(r) for r in rows], "total": total, "page": page,
            "page_size": page_size}


async def product(engine: AsyncEngine, product_id: int) -> dict[str, Any]:
    async with engine.connect() as conn:
        row = (await conn.execute(text(f"{_PRODUCT} WHERE p.id = :id"),
                                  {"id": product_id})).first()
    if row is None:
        raise Problem(404, "No such product", f"product {product_id} does not exist")
    return _product(row)


async def create_category(engine: AsyncEngine, name: str,
                          parent_id: int | None) -> dict[str, Any]:
    try:
        async with engine.begin() as conn:
            row = (await conn.execute(text(
                "INSERT INTO categories (name, parent_id) VALUES (:n, :p) RETURNING id"),
                {"n": name, "p": parent_id})).one()
    except IntegrityError as exc:
        if "parent_id" in str(exc.orig):
            raise Problem(422, "No such category", "parent_id names no category") from None
        raise Problem(409, "Category exists", f"a category is named {name!r}") from None
    return {"id": row.id, "name": name, "parent_id": parent_id}


async def create_product(engine: AsyncEngine, doc: dict[str, Any]) -> dict[str, Any]:
    try:
        async with engine.begin() as conn:
            row = (await conn.execute(text(
                "INSERT INTO products (sku, name, description, category_id, price, currency) "
                "VALUES (:sku, :name, :description, :category_id, :price, :currency) "
                "RETURNING id"), doc)).one()
            await conn.execute(text("INSERT INTO stock (product_id, on_hand) VALUES (:p, 0)"),
                               {"p": row.id})
    except IntegrityError as exc:
        raise _integrity_problem(exc) from None
    return await product(engine, row.id)


async def edit_product(engine: AsyncEngine, product_id: int,
                       changes: dict[str, Any]) -> dict[str, Any]:
    allowed = {"name", "description", "price", "active", "category_id"}
    sets = {k: v for k, v in changes.items() if k in allowed}
    if sets:
        assignments = ", ".join(f"{k} = :{k}" for k in sets)
        try:
            async with engine.begin() as conn:
                found = (await conn.execute(text(
                    f"UPDATE products SET {assignments}, updated_at = now() "  # noqa: S608
                    "WHERE id = :id RETURNING id"), {**sets, "id": product_id})).first()
        except IntegrityError as exc:
            raise _integrity_problem(exc) from None
        if found is None:
            raise Problem(404, "No such product", f"product {product_id} does not exist")
    return await product(engine, product_id)


async def set_stock(engine: AsyncEngine, product_id: int, on_hand: int) -> dict[str, Any]:
    try:
        async with engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO stock (product_id, on_hand) VALUES (:p, :n) "
                "ON CONFLICT (product_id) DO UPDATE SET on_hand = excluded.on_hand, "
                "updated_at = now() WHERE stock.on_hand IS DISTINCT FROM excluded.on_hand"),
                {"p": product_id, "n": on_hand})
    except IntegrityError:
        raise Problem(404, "No such product", f"product {product_id} does not exist") from None
    return {"product_id": product_id, "on_hand": on_hand}


def _integrity_problem(exc: IntegrityError) -> Problem:
    text_ = str(exc.orig)
    if "products_sku_key" in text_:
        return Problem(409, "SKU taken", "another product has this SKU")
    if "category_id" in text_:
        return Problem(422, "No such category", "category_id names no category")
    return Problem(422, "Invalid product", "the product breaks a rule of the catalog")


# -- cart --------------------------------------------------------------------------------------


async def _cart_id(conn: AsyncConnection, customer_id: int) -> int:
    row = (await conn.execute(text(
        "INSERT INTO carts (customer_id) VALUES (:c) ON CONFLICT (customer_id) "
        "DO UPDATE SET updated_at = now() RETURNING id"), {"c": customer_id})).one()
    return int(row.id)


async def cart(engine: AsyncEngine, customer_id: int, currency: str) -> dict[str, Any]:
    async with engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT l.product_id, l.quantity, p.name, p.price FROM carts c "
            "JOIN cart_lines l ON l.cart_id = c.id JOIN products p ON p.id = l.product_id "
            "WHERE c.customer_id = :c ORDER BY l.product_id"), {"c": customer_id})).all()
    total = sum((r.price * r.quantity for r in rows), Decimal("0"))
    return {"lines": [{"product_id": r.product_id, "name": r.name, "quantity": r.quantity,
                       "unit_price": money(r.price, currency)} for r in rows],
            "total": money(total, currency)}


async def set_cart_line(engine: AsyncEngine, customer_id: int, product_id: int,
                        quantity: int) -> None:
    normalise_lines([(product_id, quantity)])
    async with engine.begin() as conn:
        exists = (await conn.execute(text(
            "SELECT 1 FROM products WHERE id = :p AND active"), {"p": product_id})).first()
        if exists is None:
            raise Problem(404, "No such product", f"product {product_id} is not for sale")
        cart_id = await _cart_id(conn, customer_id)
        await conn.execute(text(
            "INSERT INTO cart_lines (cart_id, product_id, quantity) VALUES (:c, :p, :q) "
            "ON CONFLICT (cart_id, product_id) DO UPDATE SET quantity = excluded.quantity"),
            {"c": cart_id, "p": product_id, "q": quantity})


async def remove_cart_line(engine: AsyncEngine, customer_id: int, product_id: int) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(
            "DELETE FROM cart_lines l USING carts c WHERE l.cart_id = c.id "
            "AND c.customer_id = :c AND l.product_id = :p"), {"c": customer_id, "p": product_id})


# -- orders ------------------------------------------------------------------------------------


async def order(engine: AsyncEngine, customer: Customer, order_id: int) -> dict[str, Any]:
    async with engine.connect() as conn:
        found = await _order_doc(conn, order_id)
    # Someone else's order is answered like a missing one: ids are sequential.
    if found is None or (found["customer_id"] != customer.id and not customer.is_admin):
        raise Problem(404, "No such order", f"order {order_id} does not exist")
    return found


async def _order_doc(conn: AsyncConnection, order_id: int) -> dict[str, Any] | None:
    row = (await conn.execute(text(
        "SELECT o.*, p.status AS payment_status, p.card_last4, s.status AS shipment_status, "
        "s.tracking_number FROM orders o LEFT JOIN payments p ON p.order_id = o.id "
        "LEFT JOIN shipments s ON s.order_id = o.id WHERE o.id = :id"), {"id": order_id})).first()
    if row is None:
        return None
    lines = (await conn.execute(text(
        "SELECT product_id, quantity, unit_price FROM order_lines WHERE order_id = :id "
        "ORDER BY product_id"), {"id": order_id})).all()
    return {"id": row.id, "customer_id": row.customer_id, "status": row.status,
            "total": money(row.total, row.currency), "address_id": row.address_id,
            "created_at": row.created_at.isoformat(),
            "lines": [{"product_id": r.product_id, "quantity": r.quantity,
                       "unit_price": money(r.unit_price, row.currency)} for r in lines],
            "payment": {"status": row.payment_status, "card_last4": row.card_last4},
            "shipment": {"status": row.shipment_status, "tracking_number": row.tracking_number}}


async def orders(engine: AsyncEngine, customer_id: int, *, page: int,
                 page_size: int) -> dict[str, Any]:
    async with engine.connect() as conn:
        total = (await conn.execute(text("SELECT count(*) FROM orders WHERE customer_id = :c"),
                                    {"c": customer_id})).scalar_one()
        rows = (await conn.execute(text(
            "SELECT id, status, total, currency, created_at FROM orders WHERE customer_id = :c "
            "ORDER BY created_at DESC, id DESC LIMIT :l OFFSET :o"),
            {"c": customer_id, "l": page_size, "o": (page - 1) * page_size})).all()
    return {"items": [{"id": r.id, "status": r.status, "total": money(r.total, r.currency),
                       "created_at": r.created_at.isoformat()} for r in rows],
            "total": total, "page": page, "page_size": page_size}


@dataclass(frozen=True)
class CheckoutResult:
    order: dict[str, Any]
    replayed: bool  # the same Idempotency-Key was answered before: nothing new was done


async def checkout(engine: AsyncEngine, provider: PaymentProvider, customer: Customer, *,
                   address_id: int, card_number: str, idempotency_key: str,
                   items: list[tuple[int, int]] | None, currency: str) -> CheckoutResult:
    """One local transaction: lock the stock rows, charge the card (authorize), write the
    order, its lines, the payment and the shipment, take the stock, empty the cart, commit.
    A declined card raises 402 and the transaction rolls back: nothing was written. The
    capture follows the commit, so a commit that fails leaves only an authorization, which
    is voided."""
    key = charge_key(customer.id, idempotency_key)
    charge = None
    try:
        async with engine.begin() as conn:
            # Same key: the first request's order. Inserted first so a concurrent duplicate
            # waits on the unique key until this transaction ends, then finds the order.
            order_id = (await conn.execute(text(
                "INSERT INTO orders (customer_id, address_id, status, total, currency, "
                "idempotency_key) SELECT :c, a.id, 'PAID', 0, :cur, :k FROM addresses a "
                "WHERE a.id = :a AND a.customer_id = :c "
                "ON CONFLICT (customer_id, idempotency_key) DO NOTHING RETURNING id"),
                {"c": customer.id, "a": address_id, "cur": currency, "k": idempotency_key}
            )).scalar_one_or_none()
            if order_id is None:
                before = (await conn.execute(text(
                    "SELECT id FROM orders WHERE customer_id = :c AND idempotency_key = :k"),
                    {"c": customer.id, "k": idempotency_key})).scalar_one_or_none()
                if before is None:
                    raise Problem(422, "No such address",
                                  f"address {address_id} is not one of yours")
                doc = await _order_doc(conn, before)
                assert doc is not None
                return CheckoutResult(order=doc, replayed=True)
            from_cart = items is None
            if from_cart:
                rows = (await conn.execute(text(
                    "SELECT l.product_id, l.quantity FROM cart_lines l JOIN carts c "
                    "ON c.id = l.cart_id WHERE c.customer_id = :c"), {"c": customer.id})).all()
                items = [(r.product_id, r.quantity) for r in rows]
            wanted = normalise_lines(items or [])
            ids = sorted(wanted)
            # Locked in product order: two checkouts of the same products queue, never
            # deadlock. Held through the charge: that is how the shop keeps stock honest.
            on_hand = {r.product_id: r.on_hand for r in (await conn.execute(text(
                "SELECT product_id, on_hand FROM stock WHERE product_id = ANY(:ids) "
                "ORDER BY product_id FOR UPDATE"), {"ids": ids})).all()}
            offers = {r.id: Offer(price=r.price, active=r.active) for r in (await conn.execute(
                text("SELECT id, price, active FROM products WHERE id = ANY(:ids)"),
                {"ids": ids})).all()}
            plan = plan_checkout(wanted, offers, on_hand)
            method = await provider.vault(card_number, f"{key}:card")
            charge = await provider.charge(key, plan.total, currency, method)
            if charge.status == "declined":
                charge = None  # nothing to void
                raise Problem(402, "Payment declined",
                              "the card was declined; no order was placed",
                              reason="payment_declined")
            if charge.status not in ("authorized", "captured"):
                raise Problem(409, "Payment not usable",
                              f"the charge for this checkout is {charge.status}")
            await conn.execute(text("UPDATE orders SET total = :t WHERE id = :id"),
                               {"t": plan.total, "id": order_id})
            await conn.execute(text(
                "INSERT INTO order_lines (order_id, product_id, quantity, unit_price) "
                "VALUES (:o, :p, :q, :u)"),
                [{"o": order_id, "p": p, "q": q, "u": u} for p, (q, u) in plan.lines.items()])
            await conn.execute(text(
                "UPDATE stock SET on_hand = :n, updated_at = now() WHERE product_id = :p"),
                [{"p": p, "n": n} for p, n in plan.stock_after.items()])
            await conn.execute(text(
                "INSERT INTO payments (order_id, provider_charge_id, status, amount, currency, "
                "card_last4) VALUES (:o, :ch, 'AUTHORIZED', :t, :cur, :l4)"),
                {"o": order_id, "ch": charge.id, "t": plan.total, "cur": currency,
                 "l4": charge.card_last4})
            await conn.execute(text(
                "INSERT INTO shipments (order_id, address_id, status, tracking_number) "
                "VALUES (:o, :a, 'READY', :tn)"),
                {"o": order_id, "a": address_id, "tn": tracking_number(order_id)})
            if from_cart:
                await conn.execute(text(
                    "DELETE FROM cart_lines l USING carts c WHERE l.cart_id = c.id "
                    "AND c.customer_id = :c"), {"c": customer.id})
    except BaseException:
        if charge is not None and charge.status == "authorized":
            # The order was not stored: release the hold on the card.
            try:
                await provider.change(charge.id, "void")
            except Problem:
                pass  # the provider expires authorizations by itself
        raise
    captured = "AUTHORIZED"
    try:
        await provider.change(charge.id, "capture")
        captured = "CAPTURED"
    except Problem:
        pass  # stays AUTHORIZED: the hold keeps the money; a capture can be retried later
    async with engine.begin() as conn:
        if captured == "CAPTURED":
            await conn.execute(text(
                "UPDATE payments SET status = 'CAPTURED' WHERE order_id = :o"), {"o": order_id})
        doc = await _order_doc(conn, order_id)
    assert doc is not None
    return CheckoutResult(order=doc, replayed=False)
