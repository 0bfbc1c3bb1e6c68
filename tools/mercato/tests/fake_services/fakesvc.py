"""A stand-in service for the supervisor tests: ``python -m fakesvc``.

It honours the runtime's contract the way a real service does (``<P>_PORT`` and friends,
``GET /health/ready`` and ``/health/live``, JSON log lines, clean exit on SIGTERM) in a
fraction of the start-up time. ``FAKESVC_NAME`` picks the env prefix (default ``fake``);
``<P>_CRASH=1`` makes it exit at once, ``<P>_NEVER_READY=1`` answers 503 forever,
``<P>_CHECK_DB=1`` makes it connect to its database before answering ready,
``<P>_LISTEN_AFTER_S=N`` makes it start listening only after N seconds (a slow start), and
``<P>_HELPER=1`` starts a helper process in its group (its pid is in the "listening" line).
``POST /debug/block`` blocks its event loop for good, like a handler stuck in a sync call.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
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


LIVE_PROBES = [0]


async def live(_: web.Request) -> web.Response:
    LIVE_PROBES[0] += 1
    return web.json_response({"status": "alive"})


async def probes(_: web.Request) -> web.Response:
    return web.json_response({"live": LIVE_PROBES[0]})


async def block(_: web.Request) -> web.Response:
    time.sleep(3600)  # the point: nothing else runs on this loop any more
    return web.json_response({"status": "unblocked"})


async def own_env(_: web.Request) -> web.Response:
    # The environment this process runs with: /proc/<pid>/environ shows the one it was
    # exec'd with, which for a child forked by the zygote is the zygote's (runtime/zygote.py).
    return web.json_response({k: v for k, v in os.environ.items() if k.startswith(P)})


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
    if env("LISTEN_AFTER_S"):
        time.sleep(float(env("LISTEN_AFTER_S")))
    helper = None
    if env("HELPER") == "1":
        helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    app = web.Application()
    app.router.add_get("/health/ready", ready)
    app.router.add_get("/health/live", live)
    app.router.add_post("/debug/block", block)
    app.router.add_get("/debug/env", own_env)
    app.router.add_get("/debug/probes", probes)
    log("listening", port=int(env("PORT")), pid=os.getpid(), trace_id="abc123",
        helper_pid=helper.pid if helper else None)
    web.run_app(app, host=env("HOST", "127.0.0.1"), port=int(env("PORT")), print=None,
                shutdown_timeout=1)
    if helper is not None:
        helper.terminate()
    log("stopped")


if __name__ == "__main__":
    main()
