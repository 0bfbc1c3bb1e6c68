"""A pull consumer's feed: one standing pull request, answered as messages arrive.

nats-py's ``fetch`` makes a pull request per call, and holds early messages back until its
batch fills or its timeout ends. The consumer loop therefore drained with a short fetch
(10 ms) and, when that found nothing, waited on a fetch of one message (1 s): at the rates
of an order flow every delivered message cost two or three JetStream pull requests (a
no-wait probe, a 10 ms linger that the server answered with a 408, a new one-message
request), each a round trip NATS and the service both parse. The feed keeps one request for
up to ``batch`` messages standing for ``expires_s`` instead; the server delivers each
message as it arrives, and a new request is made only when the standing one is used up,
answered with a status (408 expired, 409 ...), or past its deadline (a request the server
lost in a broker restart is then replaced within ``expires_s`` + 1 s).

Each request has its own reply subject under the feed's inbox (``<inbox>.<n>``), so a late
status of an earlier request never ends the current one. Delivered messages carry their
stream subject, so every one counts against the standing request; all are handed out (they
are real deliveries, acked as any other).

Nothing changes for acks: JetStream still counts every delivered message against
``max_ack_pending`` and redelivers after ``ack_wait`` what is not acked. Messages left in
the feed when it closes are nak'ed, so another instance gets them at once rather than after
``ack_wait``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from nats.aio.msg import Msg

# JetStream's status header values on a pull request's reply subject.
_STATUS = "Status"
_DESCRIPTION = "Description"
_HEARTBEAT = "100"
# The request ended with nothing wrong: it expired (408) or found nothing (404).
_ENDED = ("404", "408")


class PullRequestRefused(RuntimeError):
    """The server ended the standing request for a reason a new request would meet again
    (409: the consumer was deleted, is push-based, too many waiting requests ...): the
    consumer loop backs off and binds again (``ensure_consumer`` recreates a deleted one)
    instead of asking again at once, forever."""


class PullFeed:
    def __init__(self, nc: Any, stream: str, durable: str, *, batch: int,
                 expires_s: float = 2.0, api_prefix: str = "$JS.API") -> None:
        self._nc = nc
        self._next_subject = f"{api_prefix}.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._batch = batch
        self._expires_s = expires_s
        self._inbox = nc.new_inbox()
        self._queue: asyncio.Queue[Msg] = asyncio.Queue()
        self._sub: Any = None
        self._seq = 0
        self._current: str | None = None
        self._left = 0
        self._deadline = 0.0
        self.requests = 0  # pull requests made, for tests and curiosity

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(f"{self._inbox}.*", cb=self._arrived)

    async def _arrived(self, msg: Msg) -> None:
        self._queue.put_nowait(msg)

    def _spent(self) -> bool:
        return self._current is None or self._left <= 0 or time.monotonic() > self._deadline

    async def _request(self) -> None:
        self._seq += 1
        self._current = f"{self._inbox}.{self._seq}"
        self._left = self._batch
        # The server ends the request after expires_s (a 408 follows); a second of slack
        # before it is taken for lost.
        self._deadline = time.monotonic() + self._expires_s + 1.0
        body = json.dumps({"batch": self._batch,
                           "expires": int(self._expires_s * 1_000_000_000)}).encode()
        self.requests += 1
        await self._nc.publish(self._next_subject, body, reply=self._current)

    def _take(self, msg: Msg, into: list[Msg]) -> None:
        # A status has no ack subject; a delivered message always has one.
        status = (msg.headers or {}).get(_STATUS) if not msg.reply else None
        if status is not None:
            # A heartbeat says nothing; 408 (expired) or 404 (nothing) ends the standing
            # request; anything else is refused. A late status of an earlier request, on
            # its own reply subject, is ignored.
            if status == _HEARTBEAT or msg.subject != self._current:
                return
            self._left = 0
            if status not in _ENDED:
                raise PullRequestRefused(
                    f"{status} {(msg.headers or {}).get(_DESCRIPTION, '')}".strip())
            return
        # A delivered message carries its stream subject, not the request's: it cannot be
        # told apart, so it counts against the standing request. One of an abandoned
        # request (past its deadline) only makes the next request come a little early.
        self._left -= 1
        into.append(msg)

    async def next_batch(self, max_wait_s: float) -> list[Msg]:
        """The messages delivered so far (at least one), or none after ``max_wait_s``."""
        msgs: list[Msg] = []
        give_up = time.monotonic() + max_wait_s
        while not msgs:
            if self._spent():
                await self._request()
            timeout = min(self._deadline, give_up) - time.monotonic()
            if timeout <= 0:
                if time.monotonic() >= give_up:
                    break
                continue  # the request's deadline passed: a new one on the next turn
            try:
                msg = await asyncio.wait_for(self._queue.get(), timeout)
            except TimeoutError:
                continue
            self._take(msg, msgs)
        while len(msgs) < self._batch and not self._queue.empty():
            self._take(self._queue.get_nowait(), msgs)
        if self._spent():
            await self._request()  # standing while this batch is handled
        return msgs

    async def close(self) -> None:
        """Stop receiving; nak what was delivered but not handed out."""
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._sub.unsubscribe(), 1.0)
            self._sub = None
        while not self._queue.empty():
            msg = self._queue.get_nowait()
            if msg.reply:
                with contextlib.suppress(Exception):
                    await msg.nak()
