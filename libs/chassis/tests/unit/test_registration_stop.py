"""Stopping a registration ends its heartbeat even when a cancel is lost on the way, and
never swallows a cancel aimed at the caller."""

from __future__ import annotations

import asyncio

import pytest
from chassis import registry as reg


class _LosesCancels:
    """A registry whose put returns normally when cancelled, as nats-py's request does on
    Python 3.11 when the reply and the cancel meet inside ``asyncio.wait_for``."""

    def __init__(self) -> None:
        self.puts = 0
        self.deleted: list[str] = []

    async def put(self, instance: reg.Instance) -> None:
        self.puts += 1
        try:
            await asyncio.sleep(0.005)
        except asyncio.CancelledError:
            return  # the cancel is lost here

    async def delete(self, instance: reg.Instance) -> None:
        self.deleted.append(instance.key)


def _registration(client: _LosesCancels) -> reg.Registration:
    return reg.Registration(client, service="busy", instance_id="busy-1",  # type: ignore[arg-type]
                            host="127.0.0.1", port=5000)


async def _heartbeat_in_put(client: _LosesCancels, before: int) -> None:
    while client.puts <= before:
        await asyncio.sleep(0)


async def test_a_lost_cancel_does_not_keep_the_heartbeat_running(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reg, "HEARTBEAT_EVERY_S", 0.001)
    client = _LosesCancels()
    registration = _registration(client)
    await registration.start()
    await _heartbeat_in_put(client, client.puts)  # the cancel will land inside put
    stopping = asyncio.create_task(registration.stop())
    done, _ = await asyncio.wait({stopping}, timeout=5)
    assert stopping in done, "stop() still waits for a heartbeat whose cancel was lost"
    stopping.result()
    assert client.deleted == [registration.instance.key]
    puts = client.puts
    await asyncio.sleep(0.05)
    assert client.puts == puts, "the heartbeat went on after stop()"


async def test_a_timeout_around_stop_still_fires(monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller's own cancel must reach it: before, stop() awaited the heartbeat under
    suppress(CancelledError), which swallowed a timeout around it too."""
    registration = _registration(_LosesCancels())
    never_ends = asyncio.Event()
    registration._task = asyncio.create_task(never_ends.wait())  # a heartbeat deaf to cancels
    registration._task.cancel = lambda *a, **k: False  # type: ignore[method-assign]

    async def stop_within_a_timeout() -> None:
        async with asyncio.timeout(0.1):
            await registration.stop()

    stopping = asyncio.create_task(stop_within_a_timeout())
    done, _ = await asyncio.wait({stopping}, timeout=5)
    never_ends.set()
    assert stopping in done, "the timeout around stop() was swallowed"
    with pytest.raises(TimeoutError):
        stopping.result()
