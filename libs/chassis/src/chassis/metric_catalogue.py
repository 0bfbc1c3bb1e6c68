"""Every metric the chassis exports, in one place: name, type, labels, help.

The chassis creates its metrics from these specs, the alert rules and dashboards under
``deploy/observability`` may name only metrics listed here (or a service's own catalogue, or
the few from outside listed in ``EXTERNAL_METRICS``), and a test scrapes a running platform
to check that the list is what the services really serve.

Every series a service serves also carries ``service`` (``ServiceRegistry`` adds it), so
``labels`` here leave it out. Gauges sampled from shared state (the same durable consumer,
outbox table or saga table seen from every instance) read alike in every instance:
aggregate them with ``max``, not ``sum``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

Kind = Literal["counter", "gauge", "histogram"]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
HANDLER_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


@dataclass(frozen=True)
class MetricSpec:
    name: str  # as served: a counter's name ends in _total
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()
    group: str = ""  # where it comes from, for the docs: http, messaging, saga, ...

    def series_names(self) -> tuple[str, ...]:
        """The sample names a scrape shows (a histogram's buckets, sum and count)."""
        if self.kind == "histogram":
            return (f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count")
        return (self.name,)

    def counter(self, registry: CollectorRegistry) -> Counter:
        assert self.kind == "counter", self.name
        return Counter(self.name, self.help, self.labels, registry=registry)

    def gauge(self, registry: CollectorRegistry) -> Gauge:
        assert self.kind == "gauge", self.name
        return Gauge(self.name, self.help, self.labels, registry=registry)

    def histogram(self, registry: CollectorRegistry) -> Histogram:
        assert self.kind == "histogram", self.name
        return Histogram(self.name, self.help, self.labels, buckets=self.buckets,
                         registry=registry)


def _c(name: str, help_: str, labels: Iterable[str] = (), group: str = "") -> MetricSpec:
    return MetricSpec(name, "counter", help_, tuple(labels), group=group)


def _g(name: str, help_: str, labels: Iterable[str] = (), group: str = "") -> MetricSpec:
    return MetricSpec(name, "gauge", help_, tuple(labels), group=group)


def _h(name: str, help_: str, labels: Iterable[str], buckets: tuple[float, ...],
       group: str = "") -> MetricSpec:
    return MetricSpec(name, "histogram", help_, tuple(labels), buckets, group)


# -- HTTP server (chassis.metrics) ------------------------------------------------------------
HTTP_REQUESTS = _c("http_requests_total", "HTTP requests served, by route template",
                   ("method", "route", "status"), "http")
HTTP_ERRORS = _c("http_request_errors_total", "HTTP requests answered with 5xx",
                 ("method", "route", "status"), "http")
HTTP_DURATION = _h("http_request_duration_seconds", "HTTP request latency in seconds",
                   ("method", "route"), LATENCY_BUCKETS, "http")

# -- messaging (chassis.messaging) ------------------------------------------------------------
OUTBOX_BACKLOG = _g("outbox_backlog", "Outbox rows not yet published (sampled)", (),
                    "outbox")
OUTBOX_OLDEST_AGE = _g("outbox_oldest_unpublished_age_seconds",
                       "Age in seconds of the oldest unpublished outbox row (sampled)", (),
                       "outbox")
OUTBOX_PUBLISHED = _c("outbox_published_total",
                      "Outbox rows published, by path: commit (by the process that committed "
                      "them, right after its commit) or relay (the relay's pass: rows staged "
                      "by a tool, or left unpublished by a crash or a broker outage)",
                      ("path",), "outbox")
OUTBOX_PUBLISH_ERRORS = _c("outbox_publish_errors_total",
                           "Failed outbox publishes: a relay pass, or a batch handed off at "
                           "commit (either is published later by the relay)", (), "outbox")
CONSUMER_MESSAGES = _c("consumer_messages_total",
                       "Messages a consumer finished with, by type and outcome (handled, "
                       "duplicate, dropped, retry, dead_lettered)",
                       ("consumer", "type", "outcome"), "consumer")
CONSUMER_HANDLER_SECONDS = _h("consumer_handler_seconds",
                              "Time per message in seconds, handler and transaction "
                              "included (a batch's time shared by its messages)",
                              ("consumer", "type"), HANDLER_BUCKETS, "consumer")
CONSUMER_LAG = _g("consumer_lag_messages",
                  "Messages of the consumer's stream not yet acknowledged: waiting to be "
                  "delivered plus delivered and not acknowledged (sampled)",
                  ("consumer",), "consumer")
CONSUMER_ACK_PENDING = _g("consumer_ack_pending_messages",
                          "Messages delivered to the consumer and not yet acknowledged "
                          "(sampled)", ("consumer",), "consumer")
CONSUMER_DROPPED = _c("consumer_messages_dropped_total",
                      "Messages acknowledged without effect or dead-lettered, by reason",
                      ("consumer", "reason"), "consumer")
DEAD_LETTERS = _c("dead_letters_total", "Messages this service moved to the dead-letter "
                  "stream", ("consumer",), "consumer")
DEAD_LETTERS_WAITING = _g("dead_letters_waiting",
                          "The consumer's dead letters in the dead-letter stream now, "
                          "waiting for an operator to replay or discard them (sampled)",
                          ("consumer",), "consumer")

# -- service-to-service calls (chassis.http_client) -------------------------------------------
CLIENT_CALLS = _c("http_client_calls_total", "Service calls by target and outcome (ok, "
                  "client_error, failed, circuit_open, bulkhead_full)", ("target", "outcome"),
                  "client")
CLIENT_RETRIES = _c("http_client_retries_total", "Retried attempts by target", ("target",),
                    "client")
BREAKER_STATE = _g("http_client_breaker_state",
                   "Circuit breaker state per target (0 closed, 1 half-open, 2 open)",
                   ("target",), "client")
BREAKER_TRANSITIONS = _c("http_client_breaker_transitions_total",
                         "Circuit breaker state changes per target, by the state entered "
                         "(closed, half_open, open)", ("target", "state"), "client")

# -- sagas (chassis.saga) ---------------------------------------------------------------------
SAGA_RUNNING = _g("saga_running", "Running sagas by the step they wait in (sampled)",
                  ("saga", "step"), "saga")
SAGA_OVERDUE = _g("saga_overdue", "Running sagas past their current step's deadline "
                  "(sampled)", ("saga",), "saga")
SAGA_OVERDUE_SECONDS = _g("saga_overdue_seconds",
                          "Seconds the most overdue running saga is past its step's "
                          "deadline; 0 when none is (sampled)", ("saga",), "saga")
SAGA_STARTED = _c("saga_started_total", "Sagas started", ("saga",), "saga")
SAGA_FINISHED = _c("saga_finished_total", "Sagas finished, by final status (completed, "
                   "compensated, failed)", ("saga", "status"), "saga")
SAGA_RESENDS = _c("saga_resends_total", "Step commands re-sent after their deadline",
                  ("saga", "step"), "saga")
SAGA_TIMEOUTS = _c("saga_timeouts_total", "Steps given up after their last deadline "
                   "(the saga compensates)", ("saga", "step"), "saga")

# -- dependencies (chassis.health) ------------------------------------------------------------
DEPENDENCY_UP = _g("dependency_up", "1 while the service reaches the dependency (database, "
                   "nats), 0 while it does not", ("dependency",), "dependency")

# -- background tasks (chassis.background) ----------------------------------------------------
BACKGROUND_RUNS = _c("background_task_runs_total", "Rounds of a background task (expiry sweep, "
                     "saga reconciler, sender, ...) by outcome (ok, failed)",
                     ("task", "outcome"), "background")

# -- the process (prometheus_client's ProcessCollector; Linux only) ---------------------------
PROCESS_METRICS = (
    _g("process_start_time_seconds", "Start time of the process since the epoch, in seconds",
       (), "process"),
    _c("process_cpu_seconds_total", "User and system CPU time spent in seconds", (),
       "process"),
    _g("process_resident_memory_bytes", "Resident memory size in bytes", (), "process"),
    _g("process_virtual_memory_bytes", "Virtual memory size in bytes", (), "process"),
    _g("process_open_fds", "Number of open file descriptors", (), "process"),
    _g("process_max_fds", "Maximum number of open file descriptors", (), "process"),
)

HTTP_METRICS = (HTTP_REQUESTS, HTTP_ERRORS, HTTP_DURATION)
OUTBOX_METRICS = (OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE, OUTBOX_PUBLISHED, OUTBOX_PUBLISH_ERRORS)
CONSUMER_METRICS = (CONSUMER_MESSAGES, CONSUMER_HANDLER_SECONDS, CONSUMER_LAG,
                    CONSUMER_ACK_PENDING, CONSUMER_DROPPED, DEAD_LETTERS, DEAD_LETTERS_WAITING)
CLIENT_METRICS = (CLIENT_CALLS, CLIENT_RETRIES, BREAKER_STATE, BREAKER_TRANSITIONS)
SAGA_METRICS = (SAGA_RUNNING, SAGA_OVERDUE, SAGA_OVERDUE_SECONDS, SAGA_STARTED, SAGA_FINISHED,
                SAGA_RESENDS, SAGA_TIMEOUTS)

CHASSIS_METRICS: tuple[MetricSpec, ...] = (
    *HTTP_METRICS, DEPENDENCY_UP, *PROCESS_METRICS, *OUTBOX_METRICS, *CONSUMER_METRICS,
    *CLIENT_METRICS, *SAGA_METRICS, BACKGROUND_RUNS)
