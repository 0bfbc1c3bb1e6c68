"""Notifications HTTP API under /api/notifications (admin only).

Notifications are created by events, never over HTTP. Admins can see what was queued and
sent, and -- for local runs -- what the mail sink received.
"""

from __future__ import annotations

from typing import Annotated, Any

import aiohttp
from chassis.errors import ServiceUnavailable
from chassis.security_headers import PERSONAL_DATA
from chassis.sidedoor import bearer_header
from fastapi import APIRouter, Query

from notifications.entrypoints.deps import AdminPrincipal, Context, Uow
from notifications.entrypoints.schemas import (
    IdRef,
    NotificationOut,
    SinkMessageOut,
    notification_json,
)
from notifications.service_layer import handlers

# Every answer here is one customer's data: never cached.
router = APIRouter(prefix="/api/notifications", tags=["notifications"],
                   dependencies=[PERSONAL_DATA])

MAX_PAGE = 200
SINK_TIMEOUT_S = 3.0


@router.get("/notifications", response_model=list[NotificationOut],
            summary="Notifications, newest first; of one order with order_id (admin)")
async def list_notifications(
    uow: Uow, _: AdminPrincipal,
    order_id: Annotated[IdRef | None, Query(description="only this order's")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> list[dict[str, Any]]:
    found = await handlers.list_notifications(uow, order_id=order_id, limit=limit)
    return [notification_json(n) for n in found]


@router.get("/sink/messages", response_model=list[SinkMessageOut],
            summary="What the local mail sink received, oldest first (admin)")
async def sink_messages(ctx: Context, _: AdminPrincipal) -> Any:
    settings = ctx.settings
    if not settings.sink_http_url:
        raise ServiceUnavailable("no mail sink is configured (NOTIFICATIONS_SINK_HTTP_URL)")
    url = settings.sink_http_url.rstrip("/") + "/messages"
    try:
        token = settings.sink_api_token.get_secret_value() if settings.sink_api_token else None
        async with ctx.http_session().get(
                url, timeout=aiohttp.ClientTimeout(total=SINK_TIMEOUT_S),
                headers=bearer_header(token)) as resp:
            if resp.status != 200:
                raise ServiceUnavailable(f"the mail sink answered {resp.status}")
            return await resp.json()
    except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
        raise ServiceUnavailable(f"the mail sink is unreachable ({type(exc).__name__})") from exc
