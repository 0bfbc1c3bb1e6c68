"""Prometheus metrics of the messaging loop, registered on the service's own registry.

Counters move with the messages; the gauges (outbox backlog, consumer lag, dead letters
waiting) are sampled on a timer, never per message (``chassis.messaging.sampler``). Names
and help live in ``chassis.metric_catalogue``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from chassis import metric_catalogue as m


class MessagingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.outbox_backlog = m.OUTBOX_BACKLOG.gauge(registry)
        self.outbox_oldest_age = m.OUTBOX_OLDEST_AGE.gauge(registry)
        self.outbox_published = m.OUTBOX_PUBLISHED.counter(registry)
        for path in ("commit", "relay"):
            self.outbox_published.labels(path)
        self.publish_errors = m.OUTBOX_PUBLISH_ERRORS.counter(registry)
        self.handled = m.CONSUMER_MESSAGES.counter(registry)
        self.handler_latency = m.CONSUMER_HANDLER_SECONDS.histogram(registry)
        self.consumer_lag = m.CONSUMER_LAG.gauge(registry)
        self.consumer_ack_pending = m.CONSUMER_ACK_PENDING.gauge(registry)
        # Every message acked without effect, by why: declared by a handler (a late reply),
        # unmatched or malformed (dead-lettered at once), or out of deliveries.
        self.dropped = m.CONSUMER_DROPPED.counter(registry)
        self.dead_letters = m.DEAD_LETTERS.counter(registry)
        self.dead_letters_waiting = m.DEAD_LETTERS_WAITING.gauge(registry)

    def declare_consumer(self, consumer: str) -> None:
        """Create the consumer's series at zero when it starts: a counter whose first sample
        is already 1 shows no increase, so the first dead letter would raise no alert."""
        self.dead_letters.labels(consumer)
        self.consumer_lag.labels(consumer)
        self.consumer_ack_pending.labels(consumer)
        self.dead_letters_waiting.labels(consumer)
