"""How long notifications takes to build and flatten one email: the build before ADR 0038
(an EmailMessage, flattened as aiosmtplib's send_message does) beside the one it sends now
(compat32, as bytes). Medians of 5 alternating rounds of 1,000 emails, and their ratio:

    .venv/bin/python bench/email_build.py
"""

from __future__ import annotations

import statistics
import timeit
from email.message import EmailMessage
from email.utils import formatdate

from aiosmtplib.email import extract_recipients, extract_sender, flatten_message
from notifications.adapters.smtp import (
    H_NOTIFICATION,
    MESSAGE_ID_DOMAIN,
    OutgoingMail,
    build_message,
)

mail = OutgoingMail(notification_id=123, order_id="8d630d84-b039-4564-966c-95b4a1427b08",
                    kind="order_approved", to="user-1234@example.com",
                    subject="Your order 8d630d84 is confirmed",
                    body="Hello,\n\nyour order of 2 items (37.80 EUR) is confirmed.\n" * 3)
FROM = "mercato <no-reply@mercato.local>"


def before() -> bytes:  # the build before ADR 0038, and what aiosmtplib's send_message did
    msg = EmailMessage()
    msg["From"] = FROM
    msg["To"] = mail.to
    msg["Subject"] = mail.subject
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = f"<notification-{mail.notification_id}@{MESSAGE_ID_DOMAIN}>"
    msg[H_NOTIFICATION] = f"{mail.order_id}/{mail.kind}"
    msg.set_content(mail.body)
    extract_sender(msg)
    extract_recipients(msg)
    return flatten_message(msg)


def after() -> bytes:
    m = build_message(mail, FROM)
    str(m["To"])
    return m.as_bytes()


res: dict[str, list[float]] = {"before": [], "after": []}
for _ in range(5):
    for f in (before, after):
        res[f.__name__].append(timeit.timeit(f, number=1000) / 1000 * 1e6)
b, a = statistics.median(res["before"]), statistics.median(res["after"])
print(f"before {b:.0f} us, after {a:.0f} us, ratio {a/b:.2f}")
