"""A closed-loop HTTP/1.1 load generator, run as its own process by the benchmarks.

``python -m mercato.bench.loadgen --url URL --connections N --duration S --warmup W
[--client raw|aiohttp]`` keeps N keep-alive connections busy (each sends its next request as
soon as the previous answer is complete), ignores the first W seconds, measures S seconds and
prints one JSON line with the counts, latency percentiles and its own CPU time. It prints
``measure-start`` / ``measure-end`` lines at the window edges so the parent can sample the
CPU of the processes under test over exactly the same window.

Two clients, same loop. ``raw`` writes a pre-encoded request and parses just enough of the
response (status line, Content-Length or chunked) on an asyncio Protocol; ``aiohttp`` uses a
ClientSession. See ``mercato.bench.gateway`` for which one the benchmark uses and why.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Window:
    """Completed requests that ended inside the measured window."""

    start: float = 0.0
    end: float = 0.0
    measuring: bool = False
    done: bool = False
    latencies_ns: list[int] = field(default_factory=list)
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)

    def record(self, status: int, latency_ns: int) -> None:
        if not self.measuring:
            return
        self.latencies_ns.append(latency_ns)
        self.statuses[status] = self.statuses.get(status, 0) + 1

    def error(self) -> None:
        if self.measuring:
            self.errors += 1


class _RawConnection(asyncio.Protocol):
    """One keep-alive connection: send, parse the answer, send again until told to stop."""

    def __init__(self, request: bytes, window: Window, closed: asyncio.Future[None]) -> None:
        self.request = request
        self.window = window
        self.closed = closed
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.sent_at = 0
        self.status = 0
        self.body_left = -1  # -1: still reading headers
        self.chunked = False
        self.close_after = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, hence no isinstance check.
        self.transport = transport  # type: ignore[assignment]
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        if self.window.done:
            self.transport.close()
            return
        self.sent_at = time.perf_counter_ns()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while self._parse():
            self.window.record(self.status, time.perf_counter_ns() - self.sent_at)
            if self.close_after:
                assert self.transport is not None
                self.transport.close()
                return
            self._send()

    def _parse(self) -> bool:
        """Consume one complete response from the buffer if there is one."""
        if self.body_left < 0:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return False
            head = bytes(self.buf[:end]).lower()
            del self.buf[:end + 4]
            self.status = int(head[9:12])
            self.chunked = b"transfer-encoding: chunked" in head
            self.close_after = b"connection: close" in head
            self.body_left = 0
            if not self.chunked:
                pos = head.find(b"content-length:")
                if pos >= 0:
                    line_end = head.find(b"\r\n", pos)
                    self.body_left = int(head[pos + 15:line_end if line_end >= 0 else None])
        if self.chunked:
            return self._parse_chunks()
        if len(self.buf) < self.body_left:
            return False
        del self.buf[:self.body_left]
        self.body_left = -1
        return True

    def _parse_chunks(self) -> bool:
        while True:
            line_end = self.buf.find(b"\r\n")
            if line_end < 0:
                return False
            size = int(bytes(self.buf[:line_end]).split(b";")[0], 16)
            if size == 0:
                trailer_end = self.buf.find(b"\r\n\r\n", line_end)
                if trailer_end < 0:
                    return False
                del self.buf[:trailer_end + 4]
                self.body_left = -1
                return True
            if len(self.buf) < line_end + 2 + size + 2:
                return False
            del self.buf[:line_end + 2 + size + 2]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.body_left >= 0 or exc is not None:
            self.window.error()
        if not self.closed.done():
            self.closed.set_result(None)


async def _raw_worker(host: str, port: int, request: bytes, window: Window) -> None:
    loop = asyncio.get_running_loop()
    while not window.done:
        closed: asyncio.Future[None] = loop.create_future()
        try:
            await loop.create_connection(functools.partial(_RawConnection, request, window, closed),
                                         host, port)
        except OSError:
            window.error()
            await asyncio.sleep(0.01)
            continue
        await closed


async def _aiohttp_worker(session: object, url: str, window: Window) -> None:
    import aiohttp

    assert isinstance(session, aiohttp.ClientSession)
    while not window.done:
        started = time.perf_counter_ns()
        try:
            async with session.get(url) as resp:
                await resp.read()
                window.record(resp.status, time.perf_counter_ns() - started)
        except (aiohttp.ClientError, OSError):
            window.error()


def _percentile(sorted_values: list[int], q: float) -> float:
    if not sorted_values:
        return float("nan")
    idx = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[idx] / 1e6


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def run(url: str, connections: int, duration: float, warmup: float, client: str,
              announce: Callable[[str], None] = lambda _line: None) -> dict[str, object]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    window = Window()
    session = None
    if client == "raw":
        request = (f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                   "User-Agent: mercato-bench\r\nAccept: application/json\r\n\r\n").encode()
        workers = [_raw_worker(host, port, request, window) for _ in range(connections)]
    elif client == "aiohttp":
        import aiohttp

        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=connections, force_close=False),
            headers={"User-Agent": "mercato-bench"})
        workers = [_aiohttp_worker(session, url, window) for _ in range(connections)]
    else:
        raise ValueError(f"unknown client {client!r}")
    tasks = [asyncio.create_task(w) for w in workers]
    try:
        await asyncio.sleep(warmup)
        window.measuring, window.start, cpu0 = True, time.perf_counter(), _cpu_s()
        announce("measure-start")
        await asyncio.sleep(duration)
        window.measuring, window.end, cpu1 = False, time.perf_counter(), _cpu_s()
        announce("measure-end")
        window.done = True
        # In-flight requests finish on their own (they are outside the window now).
        await asyncio.wait(tasks, timeout=5)
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
        if session is not None:
            await session.close()
    lat = sorted(window.latencies_ns)
    elapsed = window.end - window.start
    return {
        "url": url, "client": client, "connections": connections, "duration_s": elapsed,
        "requests": len(lat), "errors": window.errors,
        "statuses": {str(k): v for k, v in sorted(window.statuses.items())},
        "rps": len(lat) / elapsed if elapsed > 0 else 0.0,
        "p50_ms": _percentile(lat, 0.50), "p90_ms": _percentile(lat, 0.90),
        "p99_ms": _percentile(lat, 0.99),
        "client_cpu_s": cpu1 - cpu0,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--client", choices=("raw", "aiohttp"), default="raw")
    args = ap.parse_args(argv)

    def announce(line: str) -> None:
        print(line, flush=True)

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is installed with the chassis
        runner = asyncio.run
    else:
        runner = uvloop.run
    result = runner(run(args.url, args.connections, args.duration, args.warmup, args.client,
                        announce))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
