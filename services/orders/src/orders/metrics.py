"""The metrics orders adds to the chassis's (``chassis.metric_catalogue``): the dashboards
and alert rules may name these too."""

from __future__ import annotations

from chassis.metric_catalogue import MetricSpec

SAGAS_RUNNING = MetricSpec("orders_sagas_running", "gauge",
                           "Order sagas running, as last counted by admission control",
                           group="orders")
REFUSED_OVERLOAD = MetricSpec("orders_refused_overload_total", "counter",
                              "New orders refused while too many sagas were running",
                              group="orders")

ORDERS_METRICS = (SAGAS_RUNNING, REFUSED_OVERLOAD)
