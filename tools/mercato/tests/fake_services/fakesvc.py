"""A stand-in service for the supervisor tests: ``python -m fakesvc``.

It honours the runtime's contract the way a real service does (``<P>_PORT`` and friends,
``GET /health/ready``, JSON log lines, clean exit on SIGTERM) in a fraction of the start-up
time. ``FAKESVC_NAME`` picks the env prefix (default ``fake``); ``<P>_CRASH=1`` makes it
exit at once, ``<P>_NEVER_READY=1`` answers 503 forever,
``<P>_CHECK_DB=1`` makes it connect to its database before answering ready.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import UTC, datetime

from aiohttp import web

NAME = os.environ.get("FAKESVC_NAME", "fake")
P = NAME.upper() + "_"


def env(key: str, default: str = "") -> str:
    return os.environ.get(P + key, default)


def log(event: str, **kw: object) -> None:
    doc = {"timestamp": datetime.now(UTC).isoformat(), "level": "info", "event": event,
           "service": NAME, "instance": env("INSTANCE_ID", NAME + "-0"), **kw}
    print(json.dumps(doc), flush=True)


async def ready(_: web.Request) -> web.Response:
    if env("NEVER_READY") == "1":
        return web.json_response({"status": "waiting for godot"}, status=503)
    return web.json_response({"status": "ready"})


async def check_db() -> None:
    import asyncpg

    url = env("DATABASE_URL").replace("postgresql+asyncpg://", "postgresql://", 1)
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            # Instances start together; CREATE TABLE IF NOT EXISTS alone races.
            await conn.execute("SELECT pg_advisory_xact_lock(42)")
            await conn.execute("CREATE TABLE IF NOT EXISTS boots (at timestamptz DEFAULT now())")
            await conn.execute("INSERT INTO boots DEFAULT VALUES")
    finally:
        await conn.close()


def main() -> None:
    if env("CRASH") == "1":
        print("fakesvc: crashing on purpose", file=sys.stderr, flush=True)
        sys.exit(3)
    if env("CHECK_DB") == "1":
        asyncio.run(check_db())
    app = web.Application()
    app.router.add_get("/health/ready", ready)
    log("listening", port=int(env("PORT")), pid=os.getpid(), trace_id="abc123")
    web.run_app(app, host=env("HOST", "127.0.0.1"), port=int(env("PORT")), print=None,
                shutdown_timeout=1)
    log("stopped")


if __name__ == "__main__":
    main()
