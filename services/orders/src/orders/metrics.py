"""The metrics orders adds to the chassis's (``chassis.metric_catalogue``): the dashboards
and alert rules may name these too."""

from __future__ import annotations

from chassis.metric_catalogue import MetricSpec
from prometheus_client import CollectorRegistry

SAGAS_RUNNING = MetricSpec("orders_sagas_running", "gauge",
                           "Order sagas running, as last counted by admission control",
                           group="orders")
REFUSED_OVERLOAD = MetricSpec("orders_refused_overload_total", "counter",
                              "New orders refused while too many sagas were running",
                              group="orders")

REPLICA_LOOKUPS = MetricSpec(
    "orders_replica_lookups_total", "counter",
    "What placing an order found in orders' replicas (product, address, payment_method): "
    "hit, or miss (asked of catalog, identity or payments)",
    labels=("replica", "result"), group="orders")

ORDERS_METRICS = (SAGAS_RUNNING, REFUSED_OVERLOAD, REPLICA_LOOKUPS)
REPLICAS = ("product", "address", "payment_method")


class ReplicaLookups:
    """Counts what placing an order found in the replicas (ADR 0036, 0041): how often a
    synchronous call is still made, and to whom. Every series starts at zero."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._lookups = REPLICA_LOOKUPS.counter(registry)
        for replica in REPLICAS:
            for result in ("hit", "miss"):
                self._lookups.labels(replica, result)

    def count(self, replica: str, *, hits: int = 0, misses: int = 0) -> None:
        if hits:
            self._lookups.labels(replica, "hit").inc(hits)
        if misses:
            self._lookups.labels(replica, "miss").inc(misses)
