"""The notifications service's public JSON shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, StringConstraints

from notifications.domain.model import Notification

IdRef = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class NotificationOut(BaseModel):
    id: int
    order_id: str
    kind: str
    recipient: str | None
    subject: str
    body: str
    status: str
    attempts: int
    created_at: datetime
    sent_at: datetime | None
    last_error: str | None


class SinkMessageOut(BaseModel):
    id: int
    mail_from: str
    to: list[str]
    subject: str
    body: str
    message_id: str | None
    notification: str | None
    received_at: datetime


def notification_json(n: Notification) -> dict[str, Any]:
    return {"id": n.id, "order_id": n.order_id, "kind": n.kind, "recipient": n.recipient,
            "subject": n.subject, "body": n.body, "status": n.status, "attempts": n.attempts,
            "created_at": n.created_at.isoformat(),
            "sent_at": n.sent_at.isoformat() if n.sent_at else None,
            "last_error": n.last_error}
