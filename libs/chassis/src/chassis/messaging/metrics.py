"""Prometheus metrics of the messaging loop, registered on the service's own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class MessagingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.outbox_backlog = Gauge("outbox_backlog", "Outbox rows not yet published",
                                    registry=registry)
        self.outbox_oldest_age = Gauge("outbox_oldest_unpublished_age_seconds",
                                       "Age of the oldest unpublished outbox row",
                                       registry=registry)
        self.outbox_published = Counter("outbox_published_total", "Outbox rows published",
                                        registry=registry)
        self.publish_errors = Counter("outbox_publish_errors_total",
                                      "Failed outbox publish attempts (batches)",
                                      registry=registry)
        self.handled = Counter("consumer_messages_total", "Messages handled by consumers",
                               ["consumer", "outcome"], registry=registry)
        self.handler_latency = Histogram(
            "consumer_handler_seconds", "Handler time including its transaction", ["consumer"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=registry)
        self.consumer_lag = Gauge("consumer_lag_messages",
                                  "Messages in the stream not yet delivered to the consumer",
                                  ["consumer"], registry=registry)
        # Every message acked without effect, by why: declared by a handler (a late reply),
        # unmatched or malformed (dead-lettered at once), or out of deliveries.
        self.dropped = Counter("consumer_messages_dropped_total",
                               "Messages acked without taking effect, by reason",
                               ["consumer", "reason"], registry=registry)
        self.dead_letters = Counter("dead_letters_total",
                                    "Messages moved to the dead-letter stream", ["consumer"],
                                    registry=registry)
