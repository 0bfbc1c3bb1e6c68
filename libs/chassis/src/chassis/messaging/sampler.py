"""The consumers' gauges, sampled on a timer: lag and dead letters waiting.

Asking the broker per message would put a round trip on the hot path; asking from the
consumer loop would freeze the gauge exactly when a handler hangs. So one task per service
asks every ``interval_s``: the durable consumer's info (lag = messages not yet delivered +
delivered and not acknowledged) and the dead-letter stream's count for the consumer's
subject. Every instance of a service reads the same durable consumer, so the gauges agree
across instances (aggregate them with ``max``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

import structlog
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from chassis.messaging.consumer import ConsumerSpec
from chassis.messaging.metrics import MessagingMetrics
from chassis.messaging.streams import DEAD_LETTER_PREFIX, DEAD_LETTER_STREAM

log = structlog.get_logger("chassis.messaging")

SAMPLE_INTERVAL_S = 5.0


async def sample_consumers(js: JetStreamContext, consumers: Sequence[ConsumerSpec],
                           metrics: MessagingMetrics) -> list[str]:
    """Read each consumer's lag and dead letters once and set the gauges; the names of the
    durables the broker does not have (not created yet, or lost)."""
    missing: list[str] = []
    for spec in consumers:
        try:
            info = await js.consumer_info(spec.stream, spec.name)
        except NotFoundError:
            missing.append(spec.name)
            continue
        pending, ack_pending = info.num_pending or 0, info.num_ack_pending or 0
        metrics.consumer_lag.labels(spec.name).set(pending + ack_pending)
        metrics.consumer_ack_pending.labels(spec.name).set(ack_pending)
        subject = f"{DEAD_LETTER_PREFIX}.{spec.name}"
        try:
            stream = await js.stream_info(DEAD_LETTER_STREAM, subjects_filter=subject)
        except NotFoundError:
            waiting = 0
        else:
            waiting = (stream.state.subjects or {}).get(subject, 0)
        metrics.dead_letters_waiting.labels(spec.name).set(waiting)
    return missing


async def run_consumer_sampler(js: JetStreamContext, consumers: Sequence[ConsumerSpec],
                               metrics: MessagingMetrics, stop: asyncio.Event, *,
                               interval_s: float = SAMPLE_INTERVAL_S,
                               on_missing: Callable[[], None] | None = None) -> None:
    """Sample until ``stop``; a failed round (the broker away) keeps the last values and is
    logged once until a round succeeds again. A durable the broker lacks (deleted by hand;
    a push consumer is not told) calls ``on_missing``: the runtime wakes its consumers, and
    each creates its durable again."""
    failing, first = False, True
    while not stop.is_set():
        try:
            missing = await sample_consumers(js, consumers, metrics)
            # The first round may run before the consumers' loops have made their durables.
            if missing and on_missing is not None and not first:
                log.warning("consumer_missing", consumers=missing)
                on_missing()
            first = False
            if failing:
                log.info("consumer_sampling_recovered")
            failing = False
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not failing:
                log.warning("consumer_sampling_failed", error=f"{type(exc).__name__}: {exc}")
            failing = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
