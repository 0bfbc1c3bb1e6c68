"""Sending one email through SMTP (aiosmtplib). Every call has a timeout."""

from __future__ import annotations

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

    async def send(self, mail: OutgoingMail) -> None:
        await aiosmtplib.send(build_message(mail, self.mail_from), hostname=self.host,
                              port=self.port, timeout=self.timeout_s,
                              start_tls=False, use_tls=False)
