"""A broker outage seen from one service: a nats-server of the test's own is stopped or hung
(SIGSTOP) while the service runs. The service keeps taking requests (readiness 200, the
broker reported as degraded, a gauge at 0), calls other services through the instances
discovery last saw without waiting on the registry, and is whole again once NATS is back."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar

import aiohttp
import nats
import pytest
from aiohttp import web
from chassis import discovery
from chassis import registry as reg
from chassis.app import create_service_app
from chassis.errors import ServiceUnavailable
from chassis.http_client import ServiceClient
from chassis.nats_conn import NatsConnection
from chassis.settings import ServiceSettings
from fastapi.testclient import TestClient
from mercato.testing.infra import NatsProcess
from nats.aio.client import Client as NATS

pytestmark = pytest.mark.integration


class OutageSettings(ServiceSettings):
    service_name: ClassVar[str] = "outage"


class CountingRegistry(reg.RegistryClient):
    """The real registry client, counting the lookups discovery makes."""

    lookups = 0
    answered = 0

    async def instances(self, service: str | None = None) -> list[reg.Instance]:
        self.lookups += 1
        found = await super().instances(service)
        self.answered += 1
        return found


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def until(check: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


@pytest.fixture
async def upstream() -> AsyncIterator[int]:
    """A service instance to call: answers every path with 200."""
    app = web.Application()

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"path": request.path})

    app.router.add_route("*", "/{tail:.*}", ok)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield runner.addresses[0][1]
    await runner.cleanup()


@pytest.fixture
async def broker(private_nats: NatsProcess) -> AsyncIterator[NATS]:
    # Tight reconnects, no reconnect buffer surprises: a client like the chassis' own.
    nc = await nats.connect(private_nats.url, max_reconnect_attempts=-1,
                            reconnect_time_wait=0.2)
    yield nc
    private_nats.resume()
    await nc.close()


async def test_discovery_serves_the_last_instances_at_once_while_the_registry_hangs(
        private_nats: NatsProcess, broker: NATS, upstream: int) -> None:
    registry = CountingRegistry(broker)
    pricing = reg.Registration(registry, service="pricing", instance_id="pricing-1",
                               host="127.0.0.1", port=upstream)
    await pricing.start()
    clock = Clock()
    resolver = discovery.Resolver(lambda: registry, clock=clock)
    async with aiohttp.ClientSession() as session:
        # A budget well under the registry's own request timeout: a call that waited on the
        # hung registry could not finish in it.
        client = ServiceClient(lambda: session, resolver, timeout_s=0.5, retries=0)
        assert (await client.get("http://pricing/price")).status == 200
        looked_up = registry.lookups

        private_nats.stall()
        clock.now += discovery.FRESH_FOR_S + 1  # what discovery knows is stale now
        for _ in range(5):
            assert (await client.get("http://pricing/price")).status == 200
        # ... answered from what it knew, with one refresh going on in the background.
        assert registry.lookups == looked_up + 1
        assert registry.answered == looked_up

        private_nats.resume()
        await until(lambda: registry.answered == looked_up + 1, "the background refresh")
        second = reg.Registration(registry, service="pricing", instance_id="pricing-2",
                                  host="127.0.0.1", port=upstream)
        await second.start()
        clock.now += discovery.FRESH_FOR_S + 1
        assert (await client.get("http://pricing/price")).status == 200
        await until(lambda: len(resolver.known("pricing")) == 2,
                    "the refresh to bring in the new instance")
        await second.stop()
    await pricing.stop()
    await resolver.close()


async def test_a_service_never_resolved_fails_within_its_bound_while_the_registry_hangs(
        private_nats: NatsProcess, broker: NATS) -> None:
    resolver = discovery.Resolver(lambda: reg.RegistryClient(broker))
    await reg.RegistryClient(broker).bucket()
    private_nats.stall()
    # Guarded only so that a regression fails instead of hanging the run.
    async with asyncio.timeout(discovery.COLD_LOOKUP_S + 10):
        with pytest.raises(ServiceUnavailable) as caught:
            await resolver.resolve_url("http://never-seen/x")
    assert caught.value.headers == {"Retry-After": "2"}
    await resolver.close()


def _idle(resolver: discovery.Resolver) -> bool:
    """No listing in flight."""
    return resolver._listing is None or resolver._listing.done()


async def test_a_warmed_resolver_knows_every_service_through_an_outage_that_starts_first(
        private_nats: NatsProcess, broker: NATS) -> None:
    """The first call to a service may come after the broker went away: the listing made
    when the service connected already knows its instances."""
    registry = reg.RegistryClient(broker)
    ledger = reg.Registration(registry, service="ledger", instance_id="ledger-1",
                              host="127.0.0.1", port=4323)
    await ledger.start()
    resolver = discovery.Resolver(lambda: registry)
    assert await resolver.warm()
    private_nats.stall()
    assert await resolver.resolve_url("http://ledger/x") == "http://127.0.0.1:4323/x"
    private_nats.resume()
    await ledger.stop()
    await resolver.close()


async def test_an_empty_answer_right_after_an_outage_keeps_the_known_instances(
        private_nats: NatsProcess, broker: NATS) -> None:
    """Heartbeats could not be written during the outage: for a moment after it the
    registry holds only stale entries, which it does not list. Those processes never went
    away; discovery keeps them until they have had time to beat again."""
    registry = CountingRegistry(broker)
    clock = Clock()
    resolver = discovery.Resolver(lambda: registry, clock=clock)
    now = time.time()
    alive = reg.Instance(service="ledger", instance_id="ledger-2", host="127.0.0.1", port=7,
                         pid=1, started_at=now, heartbeat_at=now)
    await registry.put(alive)
    assert await resolver.instances("ledger") == [alive]
    private_nats.stall()
    clock.now += discovery.FRESH_FOR_S + 1
    assert await resolver.instances("ledger") == [alive]  # at once, refreshing meanwhile
    await until(lambda: _idle(resolver), "the listing to give up", timeout=15)
    private_nats.resume()
    # As the registry looks before the instance has beaten again.
    await registry.put(dataclasses.replace(alive, heartbeat_at=now - 60))
    clock.now += discovery.FRESH_FOR_S + 1
    assert await resolver.instances("ledger") == [alive]
    await until(lambda: _idle(resolver), "the listing after the outage")
    assert registry.answered >= 2  # the registry did answer: without the instance
    assert await resolver.instances("ledger") == [alive]
    # Long after the outage an empty answer means what it says.
    clock.now += discovery.REJOIN_GRACE_S + discovery.FRESH_FOR_S
    await resolver.instances("ledger")
    await until(lambda: _idle(resolver), "a listing")
    with pytest.raises(ServiceUnavailable):
        await resolver.resolve_url("http://ledger/x")
    await resolver.close()


async def test_work_done_on_connect_is_retried_until_it_succeeds(nats_url: str) -> None:
    """A broker that drops out during start-up must not leave the service unregistered
    (or its relay and consumers never started) for the rest of its life."""
    attempts = 0

    async def flaky(_: NATS) -> None:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise TimeoutError("nats: timeout")

    conn = NatsConnection(nats_url, name="flaky-start")
    conn.on_connect(flaky)
    conn.start()
    try:
        await until(lambda: conn.is_set_up, "the on-connect work to succeed")
        assert attempts == 3
    finally:
        await conn.close()


def _metric(client: TestClient, dependency: str) -> float | None:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f'dependency_up{{dependency="{dependency}",'):
            return float(line.split()[-1])
    return None


def _wait(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


async def _registered_ports(url: str) -> list[int]:
    nc = await nats.connect(url)
    try:
        return [i.port for i in await reg.RegistryClient(nc).instances("outage")]
    finally:
        await nc.close()


@pytest.mark.parametrize("outage", ["stopped", "hung"])
def test_ready_stays_200_with_the_broker_reported_degraded(
        outage: str, fresh_database: str, private_nats: NatsProcess) -> None:
    settings = OutageSettings(database_url=fresh_database, nats_url=private_nats.url,
                              instance_id="outage-1", port=5998)
    with TestClient(create_service_app(settings, routers=[])) as client:
        _wait(lambda: client.get("/health/ready", params={"strict": "true"}).status_code
              == 200, "the service to be fully up")
        assert client.get("/health/ready").json() == {
            "status": "ready", "checks": {"database": "ok", "nats": "ok"}}
        assert _metric(client, "nats") == 1 and _metric(client, "database") == 1

        if outage == "stopped":
            private_nats.stop()
        else:
            private_nats.stall()
        try:
            _wait(lambda: client.get("/health/ready").json()["status"] == "degraded",
                  "the broker to be reported degraded")
            ready = client.get("/health/ready")
            assert ready.status_code == 200  # still routable
            assert ready.json()["checks"]["database"] == "ok"
            assert ready.json()["checks"]["nats"].startswith("degraded: ")
            assert _metric(client, "nats") == 0 and _metric(client, "database") == 1
            # Fully up it is not: start-up (mercato up) would wait.
            strict = client.get("/health/ready", params={"strict": "true"})
            assert strict.status_code == 503
            assert strict.headers["content-type"] == "application/problem+json"
            assert strict.json()["checks"]["nats"].startswith("failing: ")
        finally:
            if outage == "stopped":
                private_nats.start()
            else:
                private_nats.resume()

        _wait(lambda: client.get("/health/ready", params={"strict": "true"}).status_code
              == 200, "the broker to be back")
        assert _metric(client, "nats") == 1
        # Registered again (at once on reconnect, not only at the next heartbeat).
        _wait(lambda: asyncio.run(_registered_ports(private_nats.url)) == [5998],
              "the registry entry")


async def test_a_broker_that_answers_again_after_hanging_wakes_the_consumers(
        private_nats: NatsProcess) -> None:
    """A hung broker keeps the connection (no reconnect) but may drop the consumers' waiting
    pull requests: when JetStream answers again the monitor calls back (the app wakes its
    consumers then, ADR 0037)."""
    from chassis.health import BrokerMonitor, DependencyGauge
    from prometheus_client import CollectorRegistry

    woken: list[float] = []
    conn = NatsConnection(private_nats.url, name="hung-then-back")
    conn.start()
    monitor = BrokerMonitor(conn, DependencyGauge(CollectorRegistry()),
                            on_back=lambda: woken.append(time.monotonic()))
    try:
        await until(lambda: conn.is_set_up, "the connection")
        await monitor.probe()
        assert monitor.problem is None and len(woken) == 1  # up for the first time
        await monitor.probe()
        assert len(woken) == 1  # still up: no call
        private_nats.stall()
        await monitor.probe()
        assert monitor.problem is not None
        private_nats.resume()
        await monitor.probe()
        assert monitor.problem is None and len(woken) == 2
    finally:
        private_nats.resume()
        await conn.close()


async def test_a_recent_answer_from_jetstream_stands_for_the_probe(
        private_nats: NatsProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry heartbeat's acknowledged put (every 3 s) answers for JetStream: no probe
    request is sent while it is recent, and one is once it is not (ADR 0049)."""
    import math

    from chassis import health
    from chassis.health import HEARTBEAT_ANSWER_COUNTS_FOR_S, BrokerMonitor, DependencyGauge
    from prometheus_client import CollectorRegistry

    asked: list[float] = []
    probe_jetstream = health.probe_jetstream

    async def counted(nc: Any) -> str | None:
        asked.append(time.monotonic())
        return await probe_jetstream(nc)

    monkeypatch.setattr(health, "probe_jetstream", counted)
    answered = -math.inf
    conn = NatsConnection(private_nats.url, name="answered")
    conn.start()
    monitor = BrokerMonitor(conn, DependencyGauge(CollectorRegistry()),
                            answered_at=lambda: answered)
    try:
        await until(lambda: conn.is_set_up, "the connection")
        await monitor.probe()
        assert monitor.problem is None and len(asked) == 1  # nothing answered yet: asked
        answered = time.monotonic()
        await monitor.probe()
        assert monitor.problem is None and len(asked) == 1  # the answer stands for it
        private_nats.stall()
        answered = time.monotonic() - HEARTBEAT_ANSWER_COUNTS_FOR_S - 0.1  # the heartbeats stopped
        await monitor.probe()
        assert len(asked) == 2 and monitor.problem is not None
    finally:
        private_nats.resume()
        await conn.close()
