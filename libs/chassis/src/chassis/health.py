"""Readiness: can this instance take requests, and how are the things it depends on?

``/health/ready`` answers 200 while every *required* dependency answers: the database and
any check the service adds. The broker (NATS) is not required: while it is gone, writes wait
in the outbox, consumers and the registry entry resume on reconnect, and calls to other
services use the instances discovery last saw. So the edge keeps routing to the instance;
the broker shows as ``degraded: …`` under ``checks`` (and ``"status": "degraded"``).

``/health/ready?strict=true`` requires the broker too — connected, JetStream answering, the
instance registered and its messaging started: a process that is fully up. ``mercato up``
waits for that; the edge's health checks use the lenient form.

Every dependency's state is also the gauge ``dependency_up{dependency}`` (1 up, 0 down) in
``/metrics``, so an outage shows on dashboards while the service keeps serving.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import nats.js.errors
import structlog
from nats.aio.client import Client as NATS
from prometheus_client import CollectorRegistry

from chassis.metric_catalogue import DEPENDENCY_UP
from chassis.nats_conn import NatsConnection
from chassis.registry import BUCKET, HEARTBEAT_EVERY_S

log = structlog.get_logger("chassis.health")

ReadinessCheck = Callable[[], Awaitable[None]]

BROKER = "nats"
CHECK_TIMEOUT_S = 2.0
BROKER_PROBE_EVERY_S = 2.0
BROKER_PROBE_TIMEOUT_S = 1.0
# An answer from JetStream this recent stands for a probe: a heartbeat's (every 3 s) covers
# every probe while the broker answers.
HEARTBEAT_ANSWER_COUNTS_FOR_S = HEARTBEAT_EVERY_S + 0.5
REGISTRY_STREAM = f"KV_{BUCKET}"


class DependencyGauge:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._gauge = DEPENDENCY_UP.gauge(registry)

    def set(self, dependency: str, up: bool) -> None:
        self._gauge.labels(dependency).set(1 if up else 0)


async def probe_jetstream(nc: NATS) -> str | None:
    """None if JetStream answers, else what is wrong.

    A JetStream API request, answered by the server itself: a hung broker keeps its TCP
    connection open (nats-py still says "connected" until its pings go unanswered), and
    JetStream is what the outbox, the consumers and the registry need. It asks about the
    registry's stream, which every identity may read (the broker's permissions); any answer,
    "not found" included, means JetStream is there. A request that times out is harmless; a
    timed-out ``flush()`` is not (nats-py 2.16 then fails its read loop on the late PONG).
    """
    try:
        await nc.jetstream(timeout=BROKER_PROBE_TIMEOUT_S).stream_info(REGISTRY_STREAM)
    except nats.js.errors.APIError as exc:
        # JetStream answered; a 503 says it is there but cannot serve.
        return None if exc.code != 503 else "JetStream unavailable"
    except Exception as exc:
        return f"no answer from JetStream ({type(exc).__name__})"
    return None


class BrokerMonitor:
    """Probes the broker every couple of seconds; readiness reads the last verdict.

    ``answered_at`` (optional) tells when JetStream last answered this process otherwise
    (the registry heartbeat's acknowledged put, every ``HEARTBEAT_EVERY_S``): an answer that
    recent is the probe's answer, and no request is sent. The probes were ~0.26 ms of CPU
    each (the service and NATS), every 2 s in every process (ADR 0049). A hung broker stops
    the answers, and the probe then asks: it is seen within ~7 s instead of ~3.
    """

    def __init__(self, connection: NatsConnection, gauge: DependencyGauge, *,
                 on_back: Callable[[], None] | None = None,
                 answered_at: Callable[[], float] | None = None) -> None:
        self._conn = connection
        self._gauge = gauge
        self._on_back = on_back
        self._answered_at = answered_at
        self.problem: str | None = "not connected yet"
        gauge.set(BROKER, False)

    def _answered_lately(self) -> bool:
        return self._answered_at is not None and \
            time.monotonic() - self._answered_at() < HEARTBEAT_ANSWER_COUNTS_FOR_S

    async def probe(self) -> None:
        nc = self._conn.nc
        if nc is None or not nc.is_connected:
            problem: str | None = "not connected" if nc is not None else "not connected yet"
        elif self._answered_lately():
            problem = None
        else:
            problem = await probe_jetstream(nc)
        if problem != self.problem:
            if problem is None:
                log.info("dependency_up", dependency=BROKER)
                if self._on_back is not None:
                    # Back without a reconnect (a broker that hung, then answered again): it
                    # may have dropped what the connection was waiting on meanwhile.
                    self._on_back()
            else:
                log.warning("dependency_down", dependency=BROKER, problem=problem)
        self.problem = problem
        self._gauge.set(BROKER, problem is None)

    async def run(self) -> None:
        while True:
            await self.probe()
            await asyncio.sleep(BROKER_PROBE_EVERY_S)

    def state(self, *, strict: bool) -> str:
        """``ok``, or what is wrong: ``degraded: …`` (``failing: …`` when ``strict``)."""
        problem = self.problem
        if not self._conn.is_connected:
            problem = "not connected" if self._conn.nc is not None else "not connected yet"
        elif problem is None and strict and not self._conn.is_set_up:
            problem = "connected; registration and messaging still starting"
        if problem is None:
            return "ok"
        return f"{'failing' if strict else 'degraded'}: {problem}"


@dataclass(frozen=True)
class Readiness:
    ready: bool
    status: str  # ready | degraded | not ready
    checks: dict[str, str]


async def evaluate(required: Mapping[str, ReadinessCheck], broker: BrokerMonitor | None,
                   gauge: DependencyGauge, *, strict: bool = False) -> Readiness:
    """Run the required checks (concurrently, each bounded) and add the broker's state."""
    results: dict[str, str] = {}

    async def run(name: str, check: ReadinessCheck) -> None:
        try:
            await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
            results[name] = "ok"
        except Exception as exc:
            results[name] = f"failing: {exc.__class__.__name__}: {exc}"[:200]
        gauge.set(name, results[name] == "ok")

    await asyncio.gather(*(run(n, c) for n, c in required.items()))
    ready = all(v == "ok" for v in results.values())
    degraded = False
    if broker is not None:
        # The live connection state beats the monitor's last probe, for the gauge as well.
        gauge.set(BROKER, broker.state(strict=False) == "ok")
        results[BROKER] = broker.state(strict=strict)
        if results[BROKER] != "ok":
            ready = ready and not strict
            degraded = True
    status = "not ready" if not ready else "degraded" if degraded else "ready"
    return Readiness(ready, status, dict(sorted(results.items())))
