"""Helpers for the payments integration tests: the simulated provider as a real subprocess,
commands sent through the real inbox consumer as in-memory deliveries, and read-backs of
payments, the ledger and the outbox."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from chassis.db import Database
from chassis.messaging.consumer import InboxConsumer
from chassis.messaging.envelope import Envelope
from chassis.messaging.memory import InMemoryBroker, MemoryDelivery
from contracts.base import Contract
from contracts.payments import v1, v2
from payments.adapters.provider import ProviderClient, ProviderUnavailable
from payments.adapters.repository import PaymentsRepository
from payments.domain.model import PaymentMethod, money_text
from payments.entrypoints.consumers import consumer_specs
from sqlalchemy import text

# Short enough to keep the suite fast, long enough for a loaded CI machine to answer.
CLIENT_TIMEOUT_S = 0.5
TIMEOUT_CARD_DELAY_MS = 2500


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ProviderProcess:
    data_dir: Path
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 15.0) -> None:
        env = {**os.environ, "PAYMENTS_PROVIDER_HOST": "127.0.0.1",
               "PAYMENTS_PROVIDER_PORT": str(self.port),
               "PAYMENTS_PROVIDER_DATA_DIR": str(self.data_dir),
               "PAYMENTS_PROVIDER_TIMEOUT_CARD_DELAY_MS": str(TIMEOUT_CARD_DELAY_MS),
               **self.extra_env}
        self.proc = subprocess.Popen([sys.executable, "-m", "simulators.payment_provider"], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"provider exited: {self.proc.stderr.read()!r}")  # type: ignore[union-attr]
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("provider did not become healthy")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        self.proc = None

    def charges(self, key: str | None = None) -> list[dict[str, Any]]:
        query = f"?idempotency_key={key}" if key is not None else ""
        # A provider started with a failure rate answers our own inspection with 503 too.
        for _ in range(50):
            try:
                with urllib.request.urlopen(self.url + "/charges" + query, timeout=5) as resp:
                    return list(json.loads(resp.read())["items"])
            except urllib.error.HTTPError as exc:
                if exc.code != 503:
                    raise
        raise AssertionError("the provider answered 503 to 50 reads in a row")

    def client(self) -> ProviderClient:
        return ProviderClient(self.url, timeout_s=CLIENT_TIMEOUT_S, attempts=2,
                              retry_delay_s=0.05)


def envelope(message: Contract) -> Envelope:
    return Envelope.new(message.subject(), message.message_type(), message.to_payload())


def delivery(env: Envelope, sequence: int = 1) -> MemoryDelivery:
    return MemoryDelivery(env.subject, env.headers(), env.body(), sequence)


@dataclass
class Payments:
    """The service's command consumer over a real database and a real provider, fed by hand."""

    db: Database
    provider: ProviderClient
    dead_letters: InMemoryBroker = field(default_factory=InMemoryBroker)

    customer: str = "cust-1"

    def __post_init__(self) -> None:
        [spec] = consumer_specs(self.provider)
        self.commands = InboxConsumer(spec, self.db, self.dead_letters)

    async def add_method(self, method: PaymentMethod) -> None:
        async with self.db.unit_of_work() as uow:
            await PaymentsRepository(uow.session).add_method(method)
            await uow.commit()

    async def method(self, card: str, customer: str | None = None) -> PaymentMethod:
        """The card vaulted at the provider and recorded as the customer's, as
        POST /payment-methods does it (a flaky provider is asked again)."""
        for _ in range(30):
            try:
                vaulted = await self.provider.tokenize(card, f"test-{os.urandom(8).hex()}")
                break
            except ProviderUnavailable:
                continue
        else:
            raise AssertionError("the provider never vaulted the card")
        method = PaymentMethod(vaulted.id, customer or self.customer, vaulted.last4,
                               vaulted.brand)
        await self.add_method(method)
        return method

    async def authorize(self, pid: str, oid: str, card: str = "4242424242424242",
                        amount: str = "15000", *, customer: str | None = None,
                        method: PaymentMethod | None = None) -> v2.AuthorizePayment:
        """AuthorizePayment.v2 as the order saga sends it, on the customer's own card."""
        method = method or await self.method(card)
        return v2.AuthorizePayment(payment_id=pid, order_id=oid,
                                   customer_id=customer or method.customer_id, amount=amount,
                                   currency="KRW", payment_method_id=method.id,
                                   card_last4=method.last4)

    async def charge(self, pid: str, oid: str, card: str = "4242424242424242",
                     amount: str = "15000") -> v1.ChargePayment:
        """ChargePayment as the order saga sends it (ADR 0051), on the customer's own card."""
        method = await self.method(card)
        return v1.ChargePayment(payment_id=pid, order_id=oid, customer_id=method.customer_id,
                                amount=amount, currency="KRW", payment_method_id=method.id,
                                card_last4=method.last4)

    async def database_text(self) -> str:
        """Every row of every table of the payments database, as text (a PAN scan)."""
        async with self.db.engine.connect() as conn:
            tables = (await conn.execute(text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))).scalars()
            dumped = []
            for table in list(tables):
                rows = (await conn.execute(text(f'SELECT t::text FROM "{table}" t'))).scalars()
                dumped += [f"{table}: {r}" for r in rows]
        return "\n".join(dumped)

    async def send(self, message: Contract | MemoryDelivery) -> str:
        d = message if isinstance(message, MemoryDelivery) else delivery(envelope(message))
        return await self.commands.process(d)

    async def payment(self, payment_id: str) -> dict[str, Any] | None:
        async with self.db.engine.connect() as conn:
            row = (await conn.execute(text("SELECT * FROM payments WHERE payment_id = :p"),
                                      {"p": payment_id})).mappings().first()
        return dict(row) if row else None

    async def ledger(self, order_id: str) -> list[tuple[str, str]]:
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(text(
                "SELECT kind, amount FROM ledger_entries WHERE order_id = :o ORDER BY id"),
                {"o": order_id})).all()
        return [(r.kind, money_text(r.amount)) for r in rows]

    async def events(self, message_type: str | None = None) -> list[dict[str, Any]]:
        """Outbox payloads in order, of one type or all (then with a ``_type`` key)."""
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(text(
                "SELECT message_type, payload FROM outbox ORDER BY id"))).all()
        return [{**orjson.loads(r.payload), "_type": r.message_type} for r in rows
                if message_type is None or r.message_type == message_type]

    async def outbox_text(self) -> str:
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT headers, payload FROM outbox"))).all()
        return " ".join(f"{r.headers} {bytes(r.payload).decode()}" for r in rows)
