"""The catalog-event consumer through the real inbox on a real PostgreSQL: a price change
reaches every cart holding the product, once, however often it is delivered; a message it
cannot handle is retried, then dead-lettered."""

from __future__ import annotations

from decimal import Decimal

import pytest
from cart.adapters.repository import CartRepository
from cart.domain.model import CartLine
from cart.entrypoints.consumers import consumer_specs
from cart_kit import count
from chassis.db import Database
from chassis.messaging.consumer import InboxConsumer, Outcome
from chassis.messaging.envelope import Envelope
from chassis.messaging.memory import InMemoryBroker, MemoryDelivery
from contracts.base import Event
from contracts.catalog.v1 import PriceChanged, ProductCreated, ProductDiscontinued, ProductUpdated

pytestmark = pytest.mark.integration


async def fill(db: Database, customer: str, *lines: tuple[str, int, str]) -> None:
    async with db.unit_of_work() as uow:
        repo = CartRepository(uow.session)
        for product_id, quantity, price in lines:
            await repo.put_line(customer, CartLine(product_id, f"SKU-{product_id}",
                                                   f"Name {product_id}", quantity,
                                                   Decimal(price)))
        await uow.commit()


async def cart(db: Database, customer: str) -> list[tuple[str, str, str, Decimal, bool]]:
    async with db.unit_of_work() as uow:
        found = await CartRepository(uow.session).get(customer)
    return [(li.product_id, li.sku, li.name, li.unit_price, li.available) for li in found.lines]


class Catalog:
    """Delivers catalog events to the cart's consumer as JetStream would."""

    def __init__(self, db: Database) -> None:
        [spec] = consumer_specs()
        self.broker = InMemoryBroker()
        self.consumer = InboxConsumer(spec, db, self.broker)
        self._seq = 0

    def delivery(self, event: Event, envelope: Envelope | None = None,
                 message_type: str | None = None) -> MemoryDelivery:
        envelope = envelope or Envelope.new(event.subject(), message_type or
                                            event.message_type(), event.to_payload())
        self._seq += 1
        return MemoryDelivery(envelope.subject, envelope.headers(), envelope.body(), self._seq)

    async def send(self, event: Event, **kw: object) -> str:
        return await self.consumer.process(self.delivery(event, **kw))  # type: ignore[arg-type]


def price_changed(product_id: str, new: str) -> PriceChanged:
    return PriceChanged(product_id=product_id, sku=f"SKU-{product_id}", old_amount="1",
                        new_amount=new, currency="KRW")


async def test_price_changed_reprices_every_cart_holding_the_product_once(db: Database) -> None:
    await fill(db, "alice", ("p-mug", 2, "12900"), ("p-tea", 1, "3500"))
    await fill(db, "bob", ("p-mug", 1, "12900"))
    catalog = Catalog(db)
    event = price_changed("p-mug", "9900")
    envelope = Envelope.new(event.subject(), event.message_type(), event.to_payload())
    assert await catalog.send(event, envelope=envelope) == Outcome.HANDLED
    assert [(p, price) for p, _, _, price, _ in await cart(db, "alice")] == [
        ("p-mug", Decimal("9900")), ("p-tea", Decimal("3500"))]
    assert [price for *_, price, _ in await cart(db, "bob")] == [Decimal("9900")]

    # The same message again (a redelivery) is skipped by the inbox, even after a later
    # change: it must not bring the old price back.
    assert await catalog.send(price_changed("p-mug", "8800")) == Outcome.HANDLED
    assert await catalog.send(event, envelope=envelope) == Outcome.DUPLICATE
    assert [price for *_, price, _ in await cart(db, "bob")] == [Decimal("8800")]
    assert await count(db, "inbox") == 2


async def test_a_batch_with_a_duplicate_applies_it_once(db: Database) -> None:
    await fill(db, "alice", ("p-mug", 1, "100"))
    catalog = Catalog(db)
    event = price_changed("p-mug", "200")
    envelope = Envelope.new(event.subject(), event.message_type(), event.to_payload())
    outcomes = await catalog.consumer.process_batch([
        catalog.delivery(event, envelope=envelope), catalog.delivery(event, envelope=envelope),
        catalog.delivery(price_changed("p-other", "5"))])
    assert outcomes == [Outcome.HANDLED, Outcome.DUPLICATE, Outcome.HANDLED]
    assert [price for *_, price, _ in await cart(db, "alice")] == [Decimal("200")]


async def test_product_updated_renames_and_discontinued_flags_the_lines(db: Database) -> None:
    await fill(db, "alice", ("p-mug", 1, "100"), ("p-tea", 1, "50"))
    catalog = Catalog(db)
    assert await catalog.send(ProductUpdated(product_id="p-mug", sku="MUG-2", name="Big mug",
                                             category="kitchen", product_version=2)) \
        == Outcome.HANDLED
    assert await catalog.send(ProductDiscontinued(product_id="p-tea", sku="SKU-p-tea")) \
        == Outcome.HANDLED
    assert await cart(db, "alice") == [
        ("p-mug", "MUG-2", "Big mug", Decimal("100"), True),
        ("p-tea", "SKU-p-tea", "Name p-tea", Decimal("50"), False)]
    async with db.unit_of_work() as uow:
        assert (await CartRepository(uow.session).get("alice")).total == Decimal("100")


@pytest.mark.parametrize(("make", "retried"), [
    # Malformed: no release can handle it, so it is dead-lettered on its first delivery.
    (lambda c: c.delivery(price_changed("p-mug", "-1")), False),  # a negative price
    (lambda c: c.delivery(price_changed("p-mug", "NaN")), False),
    (lambda c: c.delivery(price_changed("p" * 201, "1")), False),
    # A type this consumer does not handle (on a subject it reads): a newer instance might,
    # so it is retried first.
    (lambda c: c.delivery(price_changed("p-mug", "1"), message_type="PriceChanged.v2"), True),
    (lambda c: c.delivery(ProductCreated(product_id="p-mug", sku="S", name="n", category="c",
                                         price_amount="1", price_currency="KRW")), True),
])
async def test_messages_it_cannot_handle_are_dead_lettered(db: Database, make: object,
                                                           retried: bool) -> None:
    await fill(db, "alice", ("p-mug", 1, "100"))
    catalog = Catalog(db)
    delivery = make(catalog)  # type: ignore[operator]
    if retried:
        for _ in range(catalog.consumer.spec.max_deliver - 1):
            assert await catalog.consumer.process(delivery) == Outcome.RETRY
            delivery = delivery.redelivered()
    outcome = await catalog.consumer.process(delivery)
    assert outcome == Outcome.DEAD_LETTERED
    assert [m.subject for m in catalog.broker.messages] == ["dlq.cart-catalog-events"]
    assert [price for *_, price, _ in await cart(db, "alice")] == [Decimal("100")]
    assert await count(db, "inbox") == 0


def test_the_consumer_reads_exactly_the_subjects_it_handles() -> None:
    [spec] = consumer_specs()
    assert spec.stream == "CATALOG_EVENTS" and spec.name == "cart-catalog-events"
    assert spec.subjects == ["catalog.events.price_changed",
                             "catalog.events.product_discontinued",
                             "catalog.events.product_updated"]
    assert sorted(spec.handlers) == ["PriceChanged.v1", "ProductDiscontinued.v1",
                                     "ProductUpdated.v1"]
