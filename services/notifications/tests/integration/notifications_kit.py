"""Helpers for the notifications integration tests: feed contracts through the real inbox
consumers as in-memory deliveries, read the notifications back, and run a real mail sink."""

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

from chassis.db import Database
from chassis.messaging.consumer import InboxConsumer
from chassis.messaging.envelope import Envelope
from chassis.messaging.memory import InMemoryBroker, MemoryDelivery
from contracts.base import Contract
from contracts.orders.v1 import (
    OrderApproved,
    OrderCancelled,
    OrderLine,
    OrderPlaced,
    OrderRejected,
)
from contracts.shipping.v1 import ShipmentStatusChanged
from notifications.entrypoints.consumers import ORDERS_CONSUMER, consumer_specs
from sqlalchemy import text

LINE = OrderLine(product_id="p1", sku="MUG", name="Mug", quantity=2, unit_price="6000")


def email(order: str) -> str:
    return f"buyer-{order}@example.com"


def placed(order: str, *, with_email: bool = True) -> OrderPlaced:
    return OrderPlaced(order_id=order, customer_id=f"cust-{order}",
                       customer_email=email(order) if with_email else None, lines=[LINE],
                       total="12000", currency="KRW")


def approved(order: str, *, with_email: bool = True) -> OrderApproved:
    return OrderApproved(order_id=order, customer_id=f"cust-{order}",
                         customer_email=email(order) if with_email else None, total="12000",
                         currency="KRW")


def rejected(order: str) -> OrderRejected:
    return OrderRejected(order_id=order, customer_id=f"cust-{order}",
                         customer_email=email(order), reason="payment_declined")


def cancelled(order: str) -> OrderCancelled:
    return OrderCancelled(order_id=order, customer_id=f"cust-{order}",
                          customer_email=email(order), reason="customer_request")


def shipment(order: str, status: str) -> ShipmentStatusChanged:
    return ShipmentStatusChanged(shipment_id=f"ship-{order}", order_id=order,
                                 customer_id=f"cust-{order}", status=status,
                                 tracking_number=f"MS{order.upper()}")


def envelope(message: Contract) -> Envelope:
    return Envelope.new(message.subject(), message.message_type(), message.to_payload())


def delivery(env: Envelope, sequence: int = 1) -> MemoryDelivery:
    """One delivery of ``env``; the same envelope again is a redelivery (same message id)."""
    return MemoryDelivery(env.subject, env.headers(), env.body(), sequence)


@dataclass
class Notifications:
    """The service's two consumers over a real database, fed by hand."""

    db: Database
    dead_letters: InMemoryBroker = field(default_factory=InMemoryBroker)

    def __post_init__(self) -> None:
        self.consumers = {spec.name: InboxConsumer(spec, self.db, self.dead_letters)
                          for spec in consumer_specs()}

    async def send(self, message: Contract | MemoryDelivery) -> str:
        d = message if isinstance(message, MemoryDelivery) else delivery(envelope(message))
        name = ORDERS_CONSUMER if d.subject.startswith("orders.") else "notifications-shipping"
        return await self.consumers[name].process(d)

    async def rows(self, order_id: str | None = None) -> list[dict[str, Any]]:
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(text(
                "SELECT * FROM notifications WHERE CAST(:o AS text) IS NULL OR order_id = :o ORDER BY id"),
                {"o": order_id})).mappings().all()
        return [dict(r) for r in rows]

    async def kinds(self) -> list[tuple[str, str]]:
        return sorted((r["order_id"], r["kind"]) for r in await self.rows())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MailSink:
    """``python -m simulators.mail_sink`` as a child process on free ports."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.smtp_port, self.http_port = free_port(), free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout_s: float = 10.0) -> MailSink:
        env = {**os.environ, "NOTIFICATIONS_SINK_HOST": "127.0.0.1",
               "NOTIFICATIONS_SINK_SMTP_PORT": str(self.smtp_port),
               "NOTIFICATIONS_SINK_HTTP_PORT": str(self.http_port),
               "NOTIFICATIONS_SINK_DATA_DIR": str(self.data_dir)}
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log = self.data_dir / "mailsink.log"
        with self.log.open("ab") as log:  # a file, not a pipe: a full pipe would block it
            self.proc = subprocess.Popen([sys.executable, "-m", "simulators.mail_sink"],
                                         env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.log.read_text(errors="replace")
                raise AssertionError(f"mail sink exited {self.proc.returncode}: {err[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.http_url}/health", timeout=0.5) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise AssertionError("mail sink did not come up")

    def messages(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.http_url}/messages", timeout=5) as resp:
            return json.loads(resp.read())

    def stop(self) -> int | None:
        """SIGTERM (then SIGKILL after 5 s); the exit code, None if it never ran."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode
