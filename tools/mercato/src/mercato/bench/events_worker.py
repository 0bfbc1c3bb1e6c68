"""The consuming side of `mercato bench events`, run as its own process (as a service is).

It consumes the bench stream through the chassis's InboxConsumer, and its handler records,
inside the handler's transaction, the wall-clock time it ran for each message id.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import nats
from chassis.db import Database
from chassis.messaging.broker import JetStreamPublisher
from chassis.messaging.consumer import ConsumerSpec, InboxConsumer, run_jetstream_consumer
from chassis.messaging.envelope import Envelope
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

_RECORD = text("INSERT INTO bench_handled (message_id, handled_at) VALUES (:m, :t)")


async def record(session: AsyncSession, env: Envelope) -> None:
    await session.execute(_RECORD, {"m": env.message_id, "t": time.time()})


async def main(database_url: str, nats_url: str, stream: str, subject: str, seconds: float) -> None:
    db = Database(database_url, pool_size=4)
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    spec = ConsumerSpec("bench-consumer", stream, [subject], {"BenchEvent.v1": record})
    stop = asyncio.Event()
    task = asyncio.create_task(run_jetstream_consumer(
        InboxConsumer(spec, db, JetStreamPublisher(js)), js, stop))
    print("ready", flush=True)
    await asyncio.sleep(seconds)
    stop.set()
    await task
    await nc.close()
    await db.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    for name in ("database_url", "nats_url", "stream", "subject"):
        parser.add_argument(name)
    parser.add_argument("seconds", type=float)
    a = parser.parse_args()
    import uvloop

    uvloop.install()
    asyncio.run(main(a.database_url, a.nats_url, a.stream, a.subject, a.seconds))
