"""The embedded NATS server: JetStream on, loopback only, clean stop."""

from __future__ import annotations

import nats
import psutil
import pytest
from mercato.runtime.nats import Nats
from mercato.runtime.paths import Home, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


async def test_start_jetstream_monitor_and_stop(home: Home):
    server = Nats(home.nats_dir, free_port(), monitor_port=free_port())
    server.start()
    try:
        assert server.is_ready()
        assert server.proc is not None
        assert psutil.Process(server.proc.pid).environ().get("GOMAXPROCS") == "1"  # ADR 0050
        nc = await nats.connect(server.url)
        kv = await nc.jetstream().create_key_value(bucket="t")
        await kv.put("a", b"1")
        await nc.close()
        assert any(server.store_dir.rglob("*")), "JetStream stores under home/nats/jetstream"
    finally:
        server.stop()
    assert not server.is_ready()

    # The store survives a restart.
    again = Nats(home.nats_dir, free_port())
    again.start()
    try:
        nc = await nats.connect(again.url)
        kv = await nc.jetstream().key_value("t")
        assert (await kv.get("a")).value == b"1"
        await nc.close()
    finally:
        again.stop()
