"""The consuming side of `mercato bench events`, run as its own process (as a service is).

It consumes the bench stream through the chassis's InboxConsumer (inbox row and handler in
one transaction, ack after commit). The handler only notes the wall-clock time it ran: the
measure is the messaging loop, not a handler's own work. The times are written to a file
when the worker stops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import time
from pathlib import Path

import nats
from chassis.db import Database
from chassis.messaging.broker import JetStreamPublisher
from chassis.messaging.consumer import ConsumerSpec, InboxConsumer, run_jetstream_consumer
from chassis.messaging.envelope import Envelope
from sqlalchemy.ext.asyncio import AsyncSession

handled: dict[str, float] = {}


async def record(session: AsyncSession, env: Envelope) -> None:
    handled[str(env.message_id)] = time.time()


async def main(database_url: str, nats_url: str, stream: str, subject: str,
               seconds: float) -> None:
    db = Database(database_url, pool_size=4)
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    spec = ConsumerSpec("bench-consumer", stream, [subject], {"BenchEvent.v1": record})
    stop = asyncio.Event()
    task = asyncio.create_task(run_jetstream_consumer(
        InboxConsumer(spec, db, JetStreamPublisher(js)), nc, stop))
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    stop.set()
    await task
    await nc.close()
    await db.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    for name in ("database_url", "nats_url", "stream", "subject"):
        parser.add_argument(name)
    parser.add_argument("seconds", type=float)
    parser.add_argument("out")
    a = parser.parse_args()
    import uvloop

    uvloop.install()
    asyncio.run(main(a.database_url, a.nats_url, a.stream, a.subject, a.seconds))
    Path(a.out).write_text(json.dumps(handled))
