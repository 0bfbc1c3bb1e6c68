"""The supervisor's command channel: a unix socket in the home's 0700 ``sockets/`` that takes
one JSON line (``{"command": "restart"|"stop"|"start", "process": NAME}``) and answers one.

The console's restart button and the tests use it; like Envoy's admin socket, only the
home's owner can reach it. ``mercato release`` sends ``{"command": "release", "process":
SERVICE, "args": {"action": ...}}`` through the same channel (not one of ``COMMANDS``: the
console offers only those).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

COMMANDS = ("restart", "stop", "start")
RELEASE = "release"
Handler = Callable[[str, str], Awaitable[dict[str, Any]]]
ReleaseHandler = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


def socket_path(sockets_dir: Path) -> Path:
    return sockets_dir / "supervisor.sock"


async def serve(path: Path, handle: Handler,
                release: ReleaseHandler | None = None) -> asyncio.AbstractServer:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # left by a killed supervisor

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5.0)
            try:
                req = json.loads(line)
                command, process = str(req["command"]), str(req["process"])
                args = req.get("args") or {}
                if not isinstance(args, dict):
                    raise TypeError("args")
            except (ValueError, KeyError, TypeError):
                answer: dict[str, Any] = {"ok": False, "error": "expected one JSON line with "
                                          "command and process"}
            else:
                if command == RELEASE and release is not None:
                    answer = await release(process, args)
                elif command not in COMMANDS:
                    answer = {"ok": False, "error": f"unknown command {command!r}; "
                              f"commands are {', '.join(COMMANDS)}"}
                else:
                    answer = await handle(command, process)
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    server = await asyncio.start_unix_server(on_client, path=str(path))
    os.chmod(path, 0o600)
    return server


async def send(path: Path, command: str, process: str, timeout: float = 30.0,
               args: dict[str, Any] | None = None) -> dict[str, Any]:
    """One command to the supervisor of a home; raises OSError when none listens."""
    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), 5.0)
    try:
        request: dict[str, Any] = {"command": command, "process": process}
        if args is not None:
            request["args"] = args
        writer.write(json.dumps(request).encode() + b"\n")
        await writer.drain()
        return dict(json.loads(await asyncio.wait_for(reader.readline(), timeout)))
    finally:
        writer.close()
