"""The TCP fault proxy: a real upstream server on loopback, real client connections."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mercato.runtime.faultproxy import Fault, FaultProxy, read_faults, write_faults


@pytest.fixture
async def echo() -> AsyncIterator[tuple[str, int]]:
    async def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while data := await r.read(1024):
                w.write(data)
                await w.drain()
        except ConnectionError:
            pass
        finally:
            w.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    yield "127.0.0.1", server.sockets[0].getsockname()[1]
    server.close()


@pytest.fixture
async def proxy(tmp_path: Path) -> AsyncIterator[FaultProxy]:
    p = FaultProxy(tmp_path / "faults.json")
    await p.start()
    yield p
    await p.close()


async def round_trip(port: int, payload: bytes = b"ping") -> tuple[bytes, float]:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    try:
        t0 = time.monotonic()
        w.write(payload)
        await w.drain()
        got = await asyncio.wait_for(r.readexactly(len(payload)), 5)
        return got, time.monotonic() - t0
    finally:
        w.close()


async def apply_via_file(proxy: FaultProxy, faults: dict[str, Fault]) -> None:
    """As `mercato chaos` does: rewrite the file, then wait for the watcher to read it."""
    write_faults(proxy.faults_file, faults)
    for _ in range(50):
        await asyncio.sleep(0.05)
        if all(r.fault == faults.get(n, Fault(reset_seq=r.fault.reset_seq))
               for n, r in proxy.routes.items()):
            return
    raise AssertionError("the proxy did not pick the faults file up")


async def test_bytes_pass_unchanged_without_a_fault(proxy: FaultProxy,
                                                    echo: tuple[str, int]) -> None:
    port = await proxy.add("orders->postgres", echo)
    assert await proxy.add("orders->postgres", echo) == port  # one route per name
    got, _ = await round_trip(port, b"x" * 200_000)
    assert got == b"x" * 200_000


async def test_latency_delays_each_direction(proxy: FaultProxy, echo: tuple[str, int]) -> None:
    port = await proxy.add("orders->postgres", echo)
    _, quick = await round_trip(port)
    await apply_via_file(proxy, {"orders->postgres": Fault(latency_ms=150)})
    _, slow = await round_trip(port)
    assert slow >= 0.29 > quick  # 150 ms there and 150 ms back
    other = await proxy.add("orders->nats", echo)
    _, unaffected = await round_trip(other)
    assert unaffected < 0.29


async def test_a_new_reset_seq_cuts_open_connections_with_a_reset(
        proxy: FaultProxy, echo: tuple[str, int]) -> None:
    port = await proxy.add("payments->nats", echo)
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"a")
    assert await r.readexactly(1) == b"a"
    await apply_via_file(proxy, {"payments->nats": Fault(reset_seq=1)})
    with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
        w.write(b"b")
        await w.drain()
        await asyncio.wait_for(r.readexactly(1), 5)
    w.close()
    assert proxy.routes["payments->nats"].resets == 1
    # The same counter again cuts nothing; new connections work.
    await apply_via_file(proxy, {"payments->nats": Fault(reset_seq=1)})
    assert (await round_trip(port))[0] == b"ping"
    assert proxy.routes["payments->nats"].resets == 1


async def test_refuse_resets_new_connections_until_lifted(
        proxy: FaultProxy, echo: tuple[str, int]) -> None:
    port = await proxy.add("orders->postgres", echo)
    await apply_via_file(proxy, {"orders->postgres": Fault(refuse=True)})
    with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
        await round_trip(port)
    await apply_via_file(proxy, {})
    assert (await round_trip(port))[0] == b"ping"


async def test_an_upstream_that_is_down_resets_the_client(proxy: FaultProxy) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    port = await proxy.add("orders->postgres", ("127.0.0.1", dead))
    with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
        await round_trip(port)


async def test_start_clears_faults_left_by_an_earlier_run(tmp_path: Path) -> None:
    path = tmp_path / "faults.json"
    write_faults(path, {"orders->postgres": Fault(refuse=True)})
    p = FaultProxy(path)
    await p.start()
    try:
        assert read_faults(path) == {}
    finally:
        await p.close()


@pytest.mark.parametrize("doc, message", [
    ({"routes": {"a->b": {"latency_ms": -1}}}, "latency_ms"),
    ({"routes": {"a->b": {"refuse": "yes"}}}, "refuse"),
    ({"routes": {"a->b": {"reset_seq": 1.5}}}, "reset_seq"),
    ({"routes": {"a->b": {"drop": 1}}}, "unknown fault field"),
    ({"routes": []}, "expected"),
])
def test_a_bad_faults_file_is_refused_with_what_is_wrong(tmp_path: Path, doc: object,
                                                         message: str) -> None:
    path = tmp_path / "faults.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=message):
        read_faults(path)


async def test_a_bad_file_keeps_the_faults_and_is_reported_once(
        proxy: FaultProxy, echo: tuple[str, int]) -> None:
    errors: list[str] = []
    proxy._on_error = errors.append
    await proxy.add("orders->postgres", echo)
    await apply_via_file(proxy, {"orders->postgres": Fault(latency_ms=10)})
    proxy.faults_file.write_text("{not json")
    await asyncio.sleep(0.6)
    assert proxy.routes["orders->postgres"].fault.latency_ms == 10
    assert len(errors) == 1 and "not JSON" in errors[0]


def test_with_port_keeps_credentials_path_and_scheme() -> None:
    from mercato.runtime.faultproxy import with_port

    assert with_port("postgresql+asyncpg://orders:s3cr%40t@127.0.0.1:5432/orders", 40001) == \
        "postgresql+asyncpg://orders:s3cr%40t@127.0.0.1:40001/orders"
    assert with_port("nats://127.0.0.1:4222", 40002) == "nats://127.0.0.1:40002"
    with pytest.raises(ValueError, match="no host"):
        with_port("orders", 1)
