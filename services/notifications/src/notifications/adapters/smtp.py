"""Sending email through SMTP (aiosmtplib). Every call has a timeout.

The connection is kept between emails: a connect, EHLO and QUIT per email (and the resolver
thread hop of each connect) cost more than the email itself. A send on a connection the
server has closed meanwhile is retried once on a fresh one.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from typing import Protocol

import aiosmtplib

# Every email names its notification: a receiver (or an operator reading the sink) can tell a
# repeat of the same notification -- the at-least-once edge, see the README -- from a new one.
H_NOTIFICATION = "X-Mercato-Notification"
MESSAGE_ID_DOMAIN = "notifications.mercato.local"


@dataclass(frozen=True, slots=True)
class OutgoingMail:
    notification_id: int
    order_id: str
    kind: str
    to: str
    subject: str
    body: str


class Mailer(Protocol):
    async def send(self, mail: OutgoingMail) -> None: ...


def build_message(mail: OutgoingMail, mail_from: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = mail_from
    msg["To"] = mail.to
    msg["Subject"] = mail.subject
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    # Stable per notification, so a repeated send carries the same Message-ID.
    msg["Message-ID"] = f"<notification-{mail.notification_id}@{MESSAGE_ID_DOMAIN}>"
    msg[H_NOTIFICATION] = f"{mail.order_id}/{mail.kind}"
    msg.set_content(mail.body)
    return msg


class SmtpMailer:
    def __init__(self, host: str, port: int, *, mail_from: str, timeout_s: float = 10.0) -> None:
        self.host, self.port, self.mail_from, self.timeout_s = host, port, mail_from, timeout_s
        self._smtp: aiosmtplib.SMTP | None = None
        self._lock = asyncio.Lock()

    async def send(self, mail: OutgoingMail) -> None:
        message = build_message(mail, self.mail_from)
        async with self._lock:
            reused = self._smtp is not None and self._smtp.is_connected
            try:
                await self._send(message)
            except (aiosmtplib.SMTPServerDisconnected, ConnectionError):
                await self.close_connection()
                if not reused:
                    raise
                await self._send(message)  # the kept connection had gone stale
            except Exception:
                await self.close_connection()
                raise

    async def _send(self, message: EmailMessage) -> None:
        if self._smtp is None or not self._smtp.is_connected:
            self._smtp = aiosmtplib.SMTP(hostname=self.host, port=self.port,
                                         timeout=self.timeout_s, start_tls=False,
                                         use_tls=False)
            await self._smtp.connect()
        await self._smtp.send_message(message)

    async def close_connection(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None and smtp.is_connected:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(smtp.quit(), self.timeout_s)
        if smtp is not None:
            smtp.close()
