"""`python -m simulators.mail_sink`: a local SMTP server that keeps every email it gets.

For laptops and tests, where no real mail server exists: an aiosmtpd SMTP server stores each
received message (from, to, subject, body, received_at) in a SQLite file, and a tiny aiohttp
server shows them (``GET /messages``, oldest first, ``?to=`` filters; ``GET /health``).

Environment (all optional): ``NOTIFICATIONS_SINK_HOST`` (127.0.0.1),
``NOTIFICATIONS_SINK_SMTP_PORT`` (8025), ``NOTIFICATIONS_SINK_HTTP_PORT`` (8026),
``NOTIFICATIONS_SINK_DATA_DIR`` (./.mercato/mailsink), ``NOTIFICATIONS_SINK_API_TOKEN``
(``mercato up`` always sets one: ``GET /messages`` then needs ``Authorization: Bearer <it>``;
without one the sink answers anyone on the machine). SIGTERM or SIGINT stops it (exit 0).
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sqlite3
from datetime import UTC, datetime
from email import message_from_bytes
from email.header import decode_header, make_header
from email.message import Message
from functools import partial
from pathlib import Path
from typing import Any

import structlog
import uvloop
from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session
from chassis.logging import configure_logging
from chassis.sidedoor import require_token
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

log = structlog.get_logger("simulators.mail_sink")

DB_FILE = "messages.sqlite3"
MAX_MESSAGE_BYTES = 1_048_576
_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    mail_from TEXT NOT NULL,
    rcpt_to TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    message_id TEXT,
    notification TEXT,
    received_at TEXT NOT NULL
)
"""


class SinkSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFICATIONS_SINK_", extra="ignore",
                                      frozen=True)

    host: str = "127.0.0.1"
    smtp_port: int = Field(default=8025, gt=0, lt=65536)
    http_port: int = Field(default=8026, gt=0, lt=65536)
    data_dir: Path = Path(".mercato/mailsink")
    api_token: SecretStr | None = None


def _header(msg: Message, name: str) -> str | None:
    """A header's value, decoded and unfolded: RFC 2047 words, or raw UTF-8 (SMTPUTF8)."""
    raw = next((v for k, v in msg.raw_items() if k.lower() == name.lower()), None)
    if raw is None:
        return None
    utf8 = raw.encode("ascii", "surrogateescape")  # the parser kept 8-bit bytes as surrogates
    text = utf8.decode("utf-8", "replace") if not utf8.isascii() else \
        str(make_header(decode_header(raw)))
    return " ".join(text.split())


def _plain_body(msg: Message) -> str:
    """The first text/plain part (else the first text/html), its transfer encoding undone."""
    parts = [p for p in msg.walk() if p.get_content_maintype() == "text"]
    part = next((p for p in parts if p.get_content_subtype() == "plain"),
                parts[0] if parts else None)
    if part is None:
        return ""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    return payload.decode(part.get_content_charset() or "utf-8", "replace")


class MessageStore:
    """The received messages in one SQLite file (autocommit; one writer, the event loop)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        # WAL synced at checkpoints, not at every message: a message is in the WAL (the OS's
        # page cache) before the 250 goes out, so a killed sink loses none; only the machine
        # losing power could, as for the console's store. FULL was an fsync a mail (ADR 0050).
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute(_SCHEMA)

    def add(self, *, mail_from: str, to: list[str], raw: bytes) -> int:
        # compat32, decoded by hand: the default policy's parser cost ~4x as much per message.
        msg = message_from_bytes(raw)
        body = _plain_body(msg).replace("\r\n", "\n")  # SMTP's line ends, not the author's
        cur = self.conn.execute(
            "INSERT INTO messages (mail_from, rcpt_to, subject, body, message_id, notification,"
            " received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (mail_from, json.dumps(to), _header(msg, "Subject") or "", body,
             _header(msg, "Message-ID"), _header(msg, "X-Mercato-Notification"),
             datetime.now(UTC).isoformat()))
        return int(cur.lastrowid or 0)

    def listing(self, to: str | None = None) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT * FROM messages ORDER BY id").fetchall()
        found = [{"id": r["id"], "mail_from": r["mail_from"], "to": json.loads(r["rcpt_to"]),
                  "subject": r["subject"], "body": r["body"], "message_id": r["message_id"],
                  "notification": r["notification"], "received_at": r["received_at"]}
                 for r in rows]
        if to is not None:
            found = [m for m in found if to.lower() in (t.lower() for t in m["to"])]
        return found

    def close(self) -> None:
        self.conn.close()


class StoringHandler:
    """aiosmtpd handler: every accepted message goes to the store."""

    def __init__(self, store: MessageStore) -> None:
        self.store = store

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode()
        try:
            stored = self.store.add(mail_from=str(envelope.mail_from or ""),
                                    to=list(envelope.rcpt_tos), raw=raw)
        except Exception as exc:  # tell the client, so it retries; never lose a message silently
            log.warning("sink_store_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            return "451 Requested action aborted: local error in processing"
        log.info("sink_received", id=stored, to=list(envelope.rcpt_tos))
        return "250 Message accepted for delivery"


def http_app(store: MessageStore, token: str | None = None) -> web.Application:
    async def messages(request: web.Request) -> web.Response:
        return web.json_response(store.listing(request.query.get("to")))

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application(middlewares=[require_token(token)])
    app.router.add_get("/messages", messages)
    app.router.add_get("/health", health)
    return app


async def serve(settings: SinkSettings, stop: asyncio.Event) -> None:
    store = MessageStore(settings.data_dir / DB_FILE)
    loop = asyncio.get_running_loop()
    smtp = await loop.create_server(
        partial(SMTP, StoringHandler(store), data_size_limit=MAX_MESSAGE_BYTES,
                hostname="mailsink.mercato.local"),
        host=settings.host, port=settings.smtp_port)
    token = settings.api_token.get_secret_value() if settings.api_token else None
    if token is None:
        log.warning("sink_without_token", detail="GET /messages answers anyone on this machine")
    runner = web.AppRunner(http_app(store, token), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.http_port)
    try:
        await site.start()
        log.info("sink_started", host=settings.host, smtp_port=settings.smtp_port,
                 http_port=settings.http_port, data_dir=str(settings.data_dir))
        await stop.wait()
    finally:
        smtp.close()
        await smtp.wait_closed()
        await runner.cleanup()
        store.close()
        log.info("sink_stopped")


async def main() -> None:
    configure_logging("notifications-mailsink", "notifications-mailsink")
    # aiosmtpd logs every line of every SMTP conversation at INFO (13 lines a mail, most of
    # the sink's CPU under load); the sink's own sink_received line says what arrived.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(SinkSettings(), stop)


def run() -> None:
    # uvloop, as the services have (ADR 0050).
    uvloop.run(main())


if __name__ == "__main__":
    run()
