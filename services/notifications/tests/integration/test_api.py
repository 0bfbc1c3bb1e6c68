"""The notifications API against a real PostgreSQL and a real mail sink, without NATS."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from chassis.db import Database
from chassis.testing import TokenMinter, assert_problem
from contracts.base import Contract
from fastapi.testclient import TestClient
from notifications.app import create_app
from notifications.settings import NotificationsSettings
from notifications_kit import MailSink, Notifications, approved, free_port, placed

pytestmark = pytest.mark.integration

minter = TokenMinter()
ADMIN = minter.auth(["customer", "admin"], subject="admin-1")
ALICE = minter.auth(["customer"], subject="alice")


def make_client(database_url: str, **overrides: Any) -> TestClient:
    settings = NotificationsSettings(**{"database_url": database_url, "nats_url": "",
                                        "register_instance": False, "sender_interval_s": 0,
                                        **overrides})
    return TestClient(create_app(settings, key_source=minter.key_source()),
                      raise_server_exceptions=False)


def seed(database_url: str, *events: Contract) -> None:
    async def main() -> None:
        db = Database(database_url, pool_size=1)
        try:
            notes = Notifications(db)
            for event in events:
                await notes.send(event)
        finally:
            await db.dispose()

    asyncio.run(main())




def test_only_an_admin_reads_notifications(database_url: str) -> None:
    seed(database_url, placed("o1"), approved("o1"), placed("o2"))
    with make_client(database_url) as client:
        assert_problem(client.get("/api/notifications/notifications"), 401)
        assert_problem(client.get("/api/notifications/notifications", headers=ALICE), 403)
        assert_problem(client.get("/api/notifications/sink/messages", headers=ALICE), 403)
        every = client.get("/api/notifications/notifications", headers=ADMIN)
        assert every.status_code == 200, every.text
        assert len(every.json()) == 3
        one = client.get("/api/notifications/notifications", params={"order_id": "o1"},
                         headers=ADMIN).json()
        assert [n["kind"] for n in one] == ["order_approved", "order_placed"]  # newest first
        assert one[0]["status"] == "queued" and one[0]["recipient"] == "buyer-o1@example.com"
        assert_problem(client.get("/api/notifications/notifications",
                                  params={"order_id": "x" * 201}, headers=ADMIN), 422)
        assert_problem(client.get("/api/notifications/notifications",
                                  params={"limit": 0}, headers=ADMIN), 422)


def test_the_sink_listing_is_proxied_or_503(database_url: str, sink: MailSink) -> None:
    with make_client(database_url) as client:  # no sink configured
        assert_problem(client.get("/api/notifications/sink/messages", headers=ADMIN), 503)
    nobody = f"http://127.0.0.1:{free_port()}"
    with make_client(database_url, sink_http_url=nobody) as client:
        assert_problem(client.get("/api/notifications/sink/messages", headers=ADMIN), 503)
    sink.start()
    seed(database_url, placed("o1"))
    with make_client(database_url, sink_http_url=sink.http_url, smtp_port=sink.smtp_port,
                     sender_interval_s=0.05) as client:
        async def sent() -> None:
            for _ in range(200):
                if sink.messages():
                    return
                await asyncio.sleep(0.05)
        asyncio.run(sent())
        got = client.get("/api/notifications/sink/messages", headers=ADMIN)
        assert got.status_code == 200, got.text
        [message] = got.json()
        assert (message["to"], message["notification"]) == (["buyer-o1@example.com"],
                                                            "o1/order_placed")
        # Marked sent in its own transaction right after the SMTP server accepted it.
        for _ in range(100):
            [n] = client.get("/api/notifications/notifications", headers=ADMIN).json()
            if n["status"] == "sent":
                break
            asyncio.run(asyncio.sleep(0.05))
        assert n["status"] == "sent" and n["attempts"] == 1
