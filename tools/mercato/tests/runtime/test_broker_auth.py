"""The broker as `mercato up` configures it: NKey users only, each on its own subjects.

One server for the module, configured exactly like the supervisor's (``broker.authorization``
over every real service), with the registry bucket and dead letters declared by the runtime
identity. Every identity does what its service really does, through the chassis code; and
what another service owns is refused.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import nkeys
import pytest
from chassis.broker_permissions import inbox_prefix
from chassis.messaging.broker import JetStreamPublisher, Outgoing
from chassis.messaging.consumer import (
    ConsumerSpec,
    consumer_config,
    deliver_subject,
    ensure_consumer,
)
from chassis.messaging.streams import (
    DEAD_LETTER_PREFIX,
    ensure_dead_letter_stream,
    ensure_stream,
)
from chassis.registry import BUCKET, Instance, Registration, RegistryClient, open_bucket
from mercato.runtime import broker
from mercato.runtime.nats import Nats
from mercato.runtime.paths import Home, free_port
from mercato.runtime.services import SERVICES
from nats.aio.client import Client as NATS
from nats.errors import NoServersError
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import KeyNotFoundError

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


class Conn:
    """A connection that records the permission errors the server sends it."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.nc: NATS | None = None

    async def error_cb(self, exc: Exception) -> None:
        self.errors.append(str(exc))

    async def refused(self, what: str, subject: str, timeout: float = 5.0) -> None:
        """Wait for the server's 'Permissions Violation for <what> to "<subject>"'."""
        wanted = f'permissions violation for {what} to "{subject}"'.lower()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(wanted in e.lower() for e in self.errors):
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"no refusal of {what} to {subject}; errors: {self.errors}")


@pytest.fixture(scope="module")
def secured() -> Iterator[tuple[Home, str]]:
    root = Path(tempfile.mkdtemp(prefix="mercato-broker-"))
    home = Home(root)
    home.ensure()
    server = Nats(home.nats_dir, free_port(), authorization=broker.authorization(home, SERVICES))
    server.start()
    try:
        yield home, server.url
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def as_identity(secured: tuple[Home, str]) -> AsyncIterator:
    home, url = secured
    opened: list[Conn] = []

    async def connect(name: str) -> Conn:
        conn = Conn()
        conn.nc = await nats.connect(url, error_cb=conn.error_cb, allow_reconnect=False,
                                     **broker.connect_options(home, name))
        opened.append(conn)
        return conn

    runtime = await connect(broker.RUNTIME)  # what the supervisor does before the services
    assert runtime.nc is not None
    await open_bucket(runtime.nc)
    await ensure_dead_letter_stream(runtime.nc.jetstream())
    yield connect
    for conn in opened:
        assert conn.nc is not None
        await conn.nc.close()


async def test_anonymous_and_unknown_identities_are_refused(secured: tuple[Home, str]) -> None:
    _, url = secured
    with pytest.raises((nats.errors.Error, NoServersError)):
        await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0,
                           connect_timeout=3)
    stranger = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER).decode()
    with pytest.raises((nats.errors.Error, NoServersError)):
        await nats.connect(url, nkeys_seed_str=stranger, allow_reconnect=False,
                           max_reconnect_attempts=0, connect_timeout=3)


async def test_each_service_identity_does_its_own_work(as_identity) -> None:  # type: ignore[no-untyped-def]
    # catalog declares its stream and publishes its events through the relay's publisher.
    catalog = await as_identity("catalog")
    js = catalog.nc.jetstream()
    await ensure_stream(js, "CATALOG_EVENTS", ["catalog.events.>"])
    await JetStreamPublisher(js).publish_batch(
        [Outgoing("catalog.events.product_created", b"{}", {"Nats-Msg-Id": str(time.time())})])

    # inventory reads them through its durable consumer (pushed to its own inbox prefix, as
    # the chassis binds it), acks, and can dead-letter.
    inventory = await as_identity("inventory")
    ijs = inventory.nc.jetstream()
    await ensure_dead_letter_stream(ijs)  # exists: inventory only looks
    spec = ConsumerSpec("inventory-catalog-events", "CATALOG_EVENTS", ["catalog.events.>"], {})
    config = consumer_config(spec, deliver_subject(inventory.nc, spec.stream, spec.name))
    assert config.deliver_subject is not None
    assert config.deliver_subject.startswith("_INBOX_inventory.")
    await ensure_consumer(ijs, "CATALOG_EVENTS", config)
    sub = await inventory.nc.subscribe(config.deliver_subject, queue=spec.name)
    msg = await sub.next_msg(timeout=5)
    await msg.ack_sync()
    await ijs.consumer_info("CATALOG_EVENTS", spec.name)
    await sub.unsubscribe()
    await JetStreamPublisher(ijs).publish_batch(
        [Outgoing("dlq.inventory-catalog-events", b"{}", {"Nats-Msg-Id": str(time.time())})])

    # order_history's rebuild replays a stream through an ordered consumer.
    history = await as_identity("order_history")
    await ensure_stream(js, "CATALOG_EVENTS", ["catalog.events.>"])
    orders = await as_identity("orders")
    ojs = orders.nc.jetstream()
    await ensure_stream(ojs, "ORDERS_EVENTS", ["orders.events.>"])
    await ojs.publish("orders.events.order_placed", b"{}")
    await orders.nc.publish("payments.commands.charge_payment", b"{}")  # a command it sends
    await orders.nc.flush()
    replay = await history.nc.jetstream().subscribe("orders.events.>", stream="ORDERS_EVENTS",
                                                    ordered_consumer=True)
    assert (await replay.next_msg(timeout=5)).subject == "orders.events.order_placed"
    await replay.unsubscribe()

    # every service registers (signed or not, the broker does not care) and reads the rest.
    registry = RegistryClient(inventory.nc)
    reg = Registration(registry, service="inventory", instance_id="inventory-1",
                       host="127.0.0.1", port=1)
    await reg.start()
    assert [i.key for i in await RegistryClient(catalog.nc).instances("inventory")] == [
        "inventory.inventory-1"]
    # the control plane reads and watches it.
    gateway = await as_identity(broker.GATEWAY)
    changes = RegistryClient(gateway.nc).changes()
    first = asyncio.ensure_future(changes.__anext__())
    await reg.stop()
    await asyncio.wait_for(first, 5)
    await changes.aclose()
    for conn in (catalog, inventory, history, orders, gateway):
        assert conn.errors == []


async def test_every_service_may_probe_the_broker_and_list_the_registry(as_identity) -> None:  # type: ignore[no-untyped-def]
    """What the chassis does for every service whatever it declares: readiness probes
    JetStream every 2 s, and discovery lists the whole registry when it connects. A probe
    the broker refused would keep every service from ever being fully up."""
    from chassis.discovery import Resolver
    from chassis.health import probe_jetstream

    for service in SERVICES:
        conn = await as_identity(service)
        assert await probe_jetstream(conn.nc) is None, service
        assert await Resolver(lambda c=conn: RegistryClient(c.nc)).warm(give_up_after_s=5)
        assert conn.errors == [], (service, conn.errors)


async def test_publishing_on_another_services_subjects_is_refused(as_identity) -> None:  # type: ignore[no-untyped-def]
    catalog = await as_identity("catalog")
    await catalog.nc.publish("orders.events.order_approved", b"{}")
    await catalog.refused("publish", "orders.events.order_approved")
    await catalog.nc.publish("payments.commands.capture_payment", b"{}")
    await catalog.refused("publish", "payments.commands.capture_payment")
    await catalog.nc.publish(f"{DEAD_LETTER_PREFIX}.cart-catalog-events", b"{}")
    await catalog.refused("publish", f"{DEAD_LETTER_PREFIX}.cart-catalog-events")
    # Nor may it reconfigure what it does not own (say, shorten a stream's retention).
    await catalog.nc.publish("$JS.API.STREAM.UPDATE.ORDERS_EVENTS",
                             b'{"name": "ORDERS_EVENTS", "max_age": 1}')
    await catalog.refused("publish", "$JS.API.STREAM.UPDATE.ORDERS_EVENTS")


async def test_consuming_another_services_commands_is_refused(as_identity) -> None:  # type: ignore[no-untyped-def]
    payments = await as_identity("payments")
    await ensure_stream(payments.nc.jetstream(), "PAYMENTS_COMMANDS", ["payments.commands.>"],
                        work_queue=True)
    await ensure_consumer(payments.nc.jetstream(), "PAYMENTS_COMMANDS", ConsumerConfig(
        durable_name="payments-commands", ack_policy=AckPolicy.EXPLICIT,
        filter_subject="payments.commands.>"))
    cart = await as_identity("cart")
    # Listening on the subject where card numbers travel:
    await cart.nc.subscribe("payments.commands.>")
    await cart.refused("subscription", "payments.commands.>")
    # Pulling from payments' durable consumer:
    await cart.nc.publish("$JS.API.CONSUMER.MSG.NEXT.PAYMENTS_COMMANDS.payments-commands",
                          b"1", reply=f"{inbox_prefix('cart')}.x")
    await cart.refused("publish", "$JS.API.CONSUMER.MSG.NEXT.PAYMENTS_COMMANDS.payments-commands")
    # Deleting payments' durable consumer (a service may replace only its own):
    await cart.nc.publish("$JS.API.CONSUMER.DELETE.PAYMENTS_COMMANDS.payments-commands", b"",
                          reply=f"{inbox_prefix('cart')}.x")
    await cart.refused("publish", "$JS.API.CONSUMER.DELETE.PAYMENTS_COMMANDS.payments-commands")
    # Making a consumer of its own on that queue:
    with pytest.raises(TimeoutError):
        await cart.nc.jetstream().add_consumer("PAYMENTS_COMMANDS", ConsumerConfig(
            durable_name="cart-steals", filter_subject="payments.commands.>"), timeout=1)
    await cart.refused("publish", "$JS.API.CONSUMER.DURABLE.CREATE.PAYMENTS_COMMANDS.cart-steals")
    # Reading another identity's replies (its inbox):
    await cart.nc.subscribe(f"{inbox_prefix('payments')}.>")
    await cart.refused("subscription", f"{inbox_prefix('payments')}.>")


async def test_writing_another_services_registry_key_is_refused(as_identity) -> None:  # type: ignore[no-untyped-def]
    catalog = await as_identity("catalog")
    forged = Instance(service="identity", instance_id="identity-1", host="127.0.0.1",
                      port=6666, pid=1, started_at=time.time(), heartbeat_at=time.time())
    with pytest.raises(TimeoutError):
        await RegistryClient(catalog.nc).put(forged)
    await catalog.refused("publish", f"$KV.{BUCKET}.identity.identity-1")
    kv = await open_bucket(catalog.nc)
    with pytest.raises(KeyNotFoundError):
        await kv.get("identity.identity-1")
