"""The Grafana dashboards under ``deploy/observability/grafana/dashboards/``, generated.

One overview (the edge, every service side by side, what fires), one dashboard per service
from one template (its routes, its process, and, as its deploy facts say, its consumers,
outbox, calls and sagas), one for messaging and one for sagas. Written by ``mercato deploy
render`` like the other generated files; a test parses every query and checks that it names
only metrics the platform exports (``chassis.metric_catalogue``, a service's own catalogue,
and ``EXTERNAL_METRICS`` below).

Queries read the raw metrics, not recorded series, so a dashboard works on any Prometheus
that scrapes the platform, with or without the rules loaded. Gauges sampled from shared
state (lag, outbox, dead letters waiting, saga counts) are aggregated with ``max``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from chassis.metric_catalogue import MetricSpec

from mercato.deploy.units import Unit, k8s_name, units
from mercato.runtime.broker import SERVICE_BROKER_NEEDS

DASHBOARDS_DIR = "deploy/observability/grafana/dashboards"
SCHEMA_VERSION = 39  # Grafana 10.4 / 11
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
EDGE = 'envoy_http_conn_manager_prefix="edge"'

# What the dashboards and rules read from outside the services. Envoy's names are checked
# against a running edge's /stats/prometheus (tests/e2e/test_observability.py).
EXTERNAL_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("envoy_http_downstream_rq_xx", "counter",
               "Edge requests by response code class",
               ("envoy_http_conn_manager_prefix", "envoy_response_code_class"), group="envoy"),
    MetricSpec("envoy_http_downstream_rq_time", "histogram",
               "Edge request time in milliseconds", ("envoy_http_conn_manager_prefix",),
               group="envoy"),
    MetricSpec("envoy_http_local_rate_limit_rate_limited", "counter",
               "Requests the edge refused with 429, per limit",
               ("envoy_local_http_ratelimit_prefix",), group="envoy"),
    MetricSpec("envoy_cluster_upstream_rq_xx", "counter",
               "Requests to each service by response code class",
               ("envoy_cluster_name", "envoy_response_code_class"), group="envoy"),
    MetricSpec("envoy_cluster_upstream_rq_time", "histogram",
               "Time of the services' answers at the edge in milliseconds",
               ("envoy_cluster_name",), group="envoy"),
    MetricSpec("envoy_cluster_membership_healthy", "gauge",
               "Instances of each service the edge sends requests to", ("envoy_cluster_name",),
               group="envoy"),
    MetricSpec("envoy_cluster_membership_total", "gauge",
               "Instances of each service the edge knows", ("envoy_cluster_name",),
               group="envoy"),
    MetricSpec("kube_pod_container_status_restarts_total", "counter",
               "Container restarts (kube-state-metrics)", ("namespace", "pod", "container"),
               group="kubernetes"),
    MetricSpec("up", "gauge", "1 when Prometheus could scrape the target (Prometheus)",
               ("job", "instance"), group="prometheus"),
    MetricSpec("ALERTS", "gauge", "Alerts pending or firing (Prometheus)",
               ("alertname", "alertstate", "severity"), group="prometheus"),
)


@dataclass
class Board:
    """Panels laid out left to right on Grafana's 24-column grid."""

    uid: str
    title: str
    description: str
    tags: tuple[str, ...] = ("mercato",)
    variables: list[dict[str, Any]] = field(default_factory=list)
    panels: list[dict[str, Any]] = field(default_factory=list)
    _x: int = 0
    _y: int = 0
    _row_h: int = 0

    def _place(self, w: int, h: int) -> dict[str, int]:
        if self._x + w > 24:
            self._x, self._y, self._row_h = 0, self._y + self._row_h, 0
        pos = {"h": h, "w": w, "x": self._x, "y": self._y}
        self._x += w
        self._row_h = max(self._row_h, h)
        return pos

    def row(self, title: str) -> None:
        self._x, self._y, self._row_h = 0, self._y + self._row_h, 0
        self.panels.append({"id": len(self.panels) + 1, "type": "row", "title": title,
                            "collapsed": False, "gridPos": self._place(24, 1), "panels": []})
        self._x, self._y, self._row_h = 0, self._y + 1, 0

    def add(self, kind: str, title: str, description: str,
            queries: Iterable[tuple[str, str]], *, unit: str = "short", w: int = 12,
            h: int = 8, options: dict[str, Any] | None = None,
            custom: dict[str, Any] | None = None) -> None:
        targets = [{"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr,
                    "legendFormat": legend, "range": kind != "table",
                    "instant": kind == "table", **({"format": "table"} if kind == "table"
                                                   else {})}
                   for i, (expr, legend) in enumerate(queries)]
        self.panels.append({
            "id": len(self.panels) + 1, "type": kind, "title": title,
            "description": description, "datasource": DATASOURCE,
            "gridPos": self._place(w, h), "targets": targets,
            "fieldConfig": {"defaults": {"unit": unit, "custom": custom or {}},
                            "overrides": []},
            "options": options or {}})

    def series(self, title: str, description: str, *queries: tuple[str, str],
               unit: str = "short", w: int = 12, stacked: bool = False) -> None:
        custom = {"stacking": {"mode": "normal", "group": "A"}} if stacked else {}
        self.add("timeseries", title, description, queries, unit=unit, w=w, custom=custom,
                 options={"legend": {"displayMode": "list", "placement": "bottom",
                                     "showLegend": True},
                          "tooltip": {"mode": "multi", "sort": "desc"}})

    def stat(self, title: str, description: str, expr: str, *, unit: str = "short",
             w: int = 6, h: int = 4) -> None:
        self.add("stat", title, description, [(expr, "")], unit=unit, w=w, h=h,
                 options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": "",
                                            "values": False},
                          "colorMode": "value", "graphMode": "area"})

    def table(self, title: str, description: str, expr: str, *, w: int = 24,
              h: int = 8) -> None:
        self.add("table", title, description, [(expr, "")], w=w, h=h,
                 options={"showHeader": True})

    def model(self) -> dict[str, Any]:
        return {
            "uid": self.uid, "title": self.title, "description": self.description,
            "tags": list(self.tags), "editable": True, "graphTooltip": 1,
            "schemaVersion": SCHEMA_VERSION, "version": 1, "refresh": "30s",
            "time": {"from": "now-1h", "to": "now"}, "timepicker": {}, "timezone": "",
            "annotations": {"list": []},
            "links": [{"type": "dashboards", "tags": ["mercato"], "asDropdown": True,
                       "title": "mercato", "includeVars": False, "keepTime": True}],
            "templating": {"list": [_datasource_variable(), *self.variables]},
            "panels": self.panels,
        }


def _datasource_variable() -> dict[str, Any]:
    return {"name": "datasource", "label": "Prometheus", "type": "datasource",
            "query": "prometheus", "current": {}, "hide": 0, "refresh": 1, "options": [],
            "regex": ""}


def _query_variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {"name": name, "label": label, "type": "query", "datasource": DATASOURCE,
            "query": {"query": query, "refId": f"{name}-variable"}, "definition": query,
            "refresh": 2, "includeAll": True, "multi": True, "allValue": ".*",
            "current": {}, "options": [], "hide": 0, "sort": 1, "regex": ""}


# -- the overview --------------------------------------------------------------------------------

def overview() -> Board:
    b = Board("mercato-overview", "mercato: overview",
              "The edge, every service side by side, and what fires now.")
    b.row("Alerts")
    b.table("Alerts firing", "Every alert Prometheus fires now (rules: "
            "deploy/observability/prometheus/rules).",
            'sum by (alertname, severity, service) (ALERTS{alertstate="firing"})', h=6)
    b.row("Edge (Envoy)")
    b.series("Edge requests per second by status class",
             "Everything clients sent through the edge, by response code class (2xx, 4xx…).",
             (f"sum by (envoy_response_code_class) (rate(envoy_http_downstream_rq_xx{{{EDGE}}}"
              f"[{RATE}]))", "{{envoy_response_code_class}}xx"), unit="reqps", w=8,
             stacked=True)
    b.series("Edge latency", "Time from a request's arrival at the edge to its answer.",
             (f"histogram_quantile(0.5, sum by (le) (rate(envoy_http_downstream_rq_time_bucket"
              f"{{{EDGE}}}[{RATE}])))", "p50"),
             (f"histogram_quantile(0.99, sum by (le) (rate(envoy_http_downstream_rq_time_bucket"
              f"{{{EDGE}}}[{RATE}])))", "p99"), unit="ms", w=8)
    b.series("Refused by rate limits", "429s the edge answered itself, per limit.",
             (f"sum by (envoy_local_http_ratelimit_prefix) (rate("
              f"envoy_http_local_rate_limit_rate_limited[{RATE}]))",
              "{{envoy_local_http_ratelimit_prefix}}"), unit="reqps", w=8)
    b.series("5xx from each service at the edge", "Answers 5xx per service, as the edge saw "
             "them (includes the edge's own 503 when no instance is healthy).",
             (f'sum by (envoy_cluster_name) (rate(envoy_cluster_upstream_rq_xx'
              f'{{envoy_response_code_class="5"}}[{RATE}]))', "{{envoy_cluster_name}}"),
             unit="reqps")
    b.series("Healthy instances per service", "Instances the edge sends requests to, out of "
             "those it knows.",
             ("sum by (envoy_cluster_name) (envoy_cluster_membership_healthy)",
              "{{envoy_cluster_name}} healthy"),
             ("sum by (envoy_cluster_name) (envoy_cluster_membership_total)",
              "{{envoy_cluster_name}} known"))
    b.row("Services")
    api = 'route=~"/api/.+"'
    b.series("Requests per second", "Public routes (/api/…) of each service.",
             (f"sum by (service) (rate(http_requests_total{{{api}}}[{RATE}]))", "{{service}}"),
             unit="reqps", w=8, stacked=True)
    b.series("5xx ratio", "Share of each service's public requests answered 5xx (SLO: "
             "0.5 % per route).",
             (f"sum by (service) (rate(http_request_errors_total{{{api}}}[{RATE}])) / "
              f"sum by (service) (rate(http_requests_total{{{api}}}[{RATE}]))", "{{service}}"),
             unit="percentunit", w=8)
    b.series("p99 latency", "99th percentile of each service's public requests (SLO: 99 % "
             "within 1 s per route).",
             (f"histogram_quantile(0.99, sum by (service, le) (rate("
              f"http_request_duration_seconds_bucket{{{api}}}[{RATE}])))", "{{service}}"),
             unit="s", w=8)
    b.series("CPU per service", "Cores used by all instances of each service.",
             (f"sum by (service) (rate(process_cpu_seconds_total[{RATE}]))", "{{service}}"),
             unit="percentunit", w=8, stacked=True)
    b.series("Memory per service", "Resident memory of all instances of each service.",
             ("sum by (service) (process_resident_memory_bytes)", "{{service}}"),
             unit="bytes", w=8, stacked=True)
    b.series("Restarts in the last hour", "Processes that started again (a crash, a kill, "
             "a failed liveness probe).",
             ("sum by (service) (changes(process_start_time_seconds[1h]))", "{{service}}"),
             w=8)
    b.series("Dependencies down", "1 while a service cannot reach its database or the "
             "broker.", ("1 - min by (service, dependency) (dependency_up)",
                         "{{service}} → {{dependency}}"), w=24)
    b.row("Messaging and sagas")
    b.series("Consumer lag", "Messages not yet handled, per durable consumer.",
             ("max by (consumer) (consumer_lag_messages)", "{{consumer}}"), w=8)
    b.series("Oldest unpublished outbox row", "Age of what each service committed and has "
             "not yet published.",
             ("max by (service) (outbox_oldest_unpublished_age_seconds)", "{{service}}"),
             unit="s", w=8)
    b.series("Dead letters waiting", "Messages in DEAD_LETTERS per consumer, waiting for "
             "`mercato dlq replay` or `discard`.",
             ("max by (consumer) (dead_letters_waiting)", "{{consumer}}"), w=8)
    b.series("Sagas running", "Running sagas (all steps).",
             ("sum by (saga) (max by (saga, step) (saga_running))", "{{saga}} running"),
             ("max by (saga) (saga_overdue)", "{{saga}} overdue"), w=12)
    b.series("Sagas finished per second", "How sagas end: completed, compensated (a refusal "
             "or a timeout), failed (needs a person).",
             (f"sum by (saga, status) (rate(saga_finished_total[{RATE}]))",
              "{{saga}} {{status}}"), unit="ops", w=12, stacked=True)
    return b


# -- one service ---------------------------------------------------------------------------------

def service_board(unit: Unit) -> Board:
    s = unit.service
    sel = f'service="{s}"'
    api = f'{sel},route=~"/api/.+"'
    b = Board(f"mercato-service-{k8s_name(s)}", f"mercato: {s}",
              f"The {s} service: its public routes, its process"
              + (", its messages" if unit.consumers else "")
              + (", its outbox" if _produces(s) else "")
              + (", its calls" if unit.calls else "")
              + (", its sagas" if unit.sagas else "") + ".",
              tags=("mercato", "mercato-service"))
    b.variables.append(_query_variable(
        "instance", "Instance", f"label_values(process_start_time_seconds{{{sel}}}, instance)"))
    inst = f'{sel},instance=~"$instance"'
    b.row("HTTP (public routes)")
    b.series("Requests per second by route", f"Every public route of {s}.",
             (f"sum by (method, route) (rate(http_requests_total{{{api}}}[{RATE}]))",
              "{{method}} {{route}}"), unit="reqps", w=8)
    b.series("5xx ratio by route", "Share answered 5xx (SLO: at most 0.5 % per route).",
             (f"sum by (method, route) (rate(http_request_errors_total{{{api}}}[{RATE}])) / "
              f"sum by (method, route) (rate(http_requests_total{{{api}}}[{RATE}]))",
              "{{method}} {{route}}"), unit="percentunit", w=8)
    b.series("p99 latency by route", "SLO: 99 % of each route's requests within 1 s.",
             (f"histogram_quantile(0.99, sum by (method, route, le) (rate("
              f"http_request_duration_seconds_bucket{{{api}}}[{RATE}])))",
              "{{method}} {{route}}"), unit="s", w=8)
    b.series("Answers by status", "Every answer of every route, by status code.",
             (f"sum by (status) (rate(http_requests_total{{{sel}}}[{RATE}]))", "{{status}}"),
             unit="reqps", stacked=True)
    b.series("p50 latency by route", "The typical request.",
             (f"histogram_quantile(0.5, sum by (method, route, le) (rate("
              f"http_request_duration_seconds_bucket{{{api}}}[{RATE}])))",
              "{{method}} {{route}}"), unit="s")
    b.row("Process")
    b.series("CPU", "Cores used per instance (a Python process uses at most one).",
             (f"rate(process_cpu_seconds_total{{{inst}}}[{RATE}])", "{{instance}}"),
             unit="percentunit", w=6)
    b.series("Memory", "Resident memory per instance.",
             (f"process_resident_memory_bytes{{{inst}}}", "{{instance}}"), unit="bytes", w=6)
    b.series("Restarts in the last hour", "Starts of each instance's process.",
             (f"changes(process_start_time_seconds{{{inst}}}[1h])", "{{instance}}"), w=6)
    b.series("Dependencies", "1 up, 0 down: the database and the broker, per instance.",
             (f"dependency_up{{{inst}}}", "{{instance}} {{dependency}}"), w=6)
    if unit.consumers:
        b.row("Messages handled")
        b.series("Messages per second by consumer and outcome", "handled, duplicate (the "
                 "inbox had it), dropped, retry, dead_lettered.",
                 (f"sum by (consumer, outcome) (rate(consumer_messages_total{{{sel}}}"
                  f"[{RATE}]))", "{{consumer}} {{outcome}}"), unit="ops", w=8)
        b.series("Handled per second by message type", "What the handlers did.",
                 (f'sum by (type) (rate(consumer_messages_total{{{sel},outcome="handled"}}'
                  f"[{RATE}]))", "{{type}}"), unit="ops", w=8, stacked=True)
        b.series("Handler p99 by message type", "Time per message, handler and transaction.",
                 (f"histogram_quantile(0.99, sum by (consumer, type, le) (rate("
                  f"consumer_handler_seconds_bucket{{{sel}}}[{RATE}])))",
                  "{{consumer}} {{type}}"), unit="s", w=8)
        b.series("Lag", "Messages not yet handled (waiting + delivered, not acknowledged).",
                 (f"max by (consumer) (consumer_lag_messages{{{sel}}})", "{{consumer}}"),
                 w=8)
        b.series("Dead letters waiting", "In DEAD_LETTERS, for an operator.",
                 (f"max by (consumer) (dead_letters_waiting{{{sel}}})", "{{consumer}}"), w=8)
        b.series("Dropped or dead-lettered by reason", "Messages acknowledged without effect, "
                 "or dead-lettered, and why.",
                 (f"sum by (consumer, reason) (rate(consumer_messages_dropped_total{{{sel}}}"
                  f"[{RATE}]))", "{{consumer}} {{reason}}"), unit="ops", w=8)
    if _produces(s):
        b.row("Outbox")
        b.series("Outbox backlog", "Rows committed, not yet published.",
                 (f"max(outbox_backlog{{{sel}}})", "backlog"), w=8)
        b.series("Oldest unpublished row", "Normally milliseconds; grows while the broker "
                 "is away.",
                 (f"max(outbox_oldest_unpublished_age_seconds{{{sel}}})", "age"), unit="s",
                 w=8)
        b.series("Published per second", "Rows published, and failed relay passes.",
                 (f"sum(rate(outbox_published_total{{{sel}}}[{RATE}]))", "published"),
                 (f"sum(rate(outbox_publish_errors_total{{{sel}}}[{RATE}]))", "failed passes"),
                 unit="ops", w=8)
    if unit.calls:
        b.row("Calls to other services")
        b.series("Calls per second by target and outcome", "ok, client_error, failed, "
                 "circuit_open, bulkhead_full.",
                 (f"sum by (target, outcome) (rate(http_client_calls_total{{{sel}}}"
                  f"[{RATE}]))", "{{target}} {{outcome}}"), unit="ops", w=8)
        b.series("Circuit breakers", "0 closed, 1 half-open, 2 open.",
                 (f"max by (target) (http_client_breaker_state{{{sel}}})", "{{target}}"),
                 w=8)
        b.series("Breaker changes and retries", "Breaker state changes by the state "
                 "entered, and retried attempts.",
                 (f"sum by (target, state) (increase(http_client_breaker_transitions_total"
                  f"{{{sel}}}[{RATE}]))", "{{target}} → {{state}}"),
                 (f"sum by (target) (increase(http_client_retries_total{{{sel}}}[{RATE}]))",
                  "{{target}} retries"), w=8)
    if unit.sagas:
        b.row("Sagas")
        _saga_panels(b, sel)
    return b


def _produces(service: str) -> bool:
    """A service with an outbox: the broker lets it publish (mercato.runtime.broker, tested
    against each service's Messaging declaration)."""
    needs = SERVICE_BROKER_NEEDS.get(service)
    return bool(needs and needs.publishes)


def _saga_panels(b: Board, sel: str) -> None:
    b.series("Running sagas by step", "Where running sagas wait.",
             (f"max by (saga, step) (saga_running{{{sel}}})", "{{saga}} {{step}}"), w=8,
             stacked=True)
    b.series("Overdue sagas", "Running sagas past their step's deadline, and how late the "
             "worst is (the reconciler drives them within seconds).",
             (f"max by (saga) (saga_overdue{{{sel}}})", "{{saga}} overdue"),
             (f"max by (saga) (saga_overdue_seconds{{{sel}}})", "{{saga}} worst (s)"), w=8)
    b.series("Started and finished per second", "Finished by status.",
             (f"sum by (saga) (rate(saga_started_total{{{sel}}}[{RATE}]))", "{{saga}} started"),
             (f"sum by (saga, status) (rate(saga_finished_total{{{sel}}}[{RATE}]))",
              "{{saga}} {{status}}"), unit="ops", w=8)


# -- messaging and sagas -------------------------------------------------------------------------

def messaging() -> Board:
    b = Board("mercato-messaging", "mercato: messaging",
              "Every consumer and outbox of the platform (docs/messaging.md).")
    b.variables += [
        _query_variable("service", "Service", "label_values(consumer_lag_messages, service)"),
        _query_variable("consumer", "Consumer",
                        'label_values(consumer_lag_messages{service=~"$service"}, consumer)')]
    sel = 'service=~"$service",consumer=~"$consumer"'
    b.row("Consumers")
    b.series("Messages per second by outcome", "handled, duplicate, dropped, retry, "
             "dead_lettered.",
             (f"sum by (consumer, outcome) (rate(consumer_messages_total{{{sel}}}[{RATE}]))",
              "{{consumer}} {{outcome}}"), unit="ops", w=8)
    b.series("Handler p50 and p99", "Time per message, handler and transaction.",
             (f"histogram_quantile(0.5, sum by (consumer, le) (rate(consumer_handler_seconds_"
              f"bucket{{{sel}}}[{RATE}])))", "{{consumer}} p50"),
             (f"histogram_quantile(0.99, sum by (consumer, le) (rate(consumer_handler_seconds_"
              f"bucket{{{sel}}}[{RATE}])))", "{{consumer}} p99"), unit="s", w=8)
    b.series("Handled per second by message type", "",
             (f'sum by (type) (rate(consumer_messages_total{{{sel},outcome="handled"}}'
              f"[{RATE}]))", "{{type}}"), unit="ops", w=8, stacked=True)
    b.series("Lag", "Waiting to be delivered plus delivered and not acknowledged (KEDA "
             "scales consumers on the same number).",
             (f"max by (consumer) (consumer_lag_messages{{{sel}}})", "{{consumer}}"), w=8)
    b.series("Delivered, not yet acknowledged", "In handlers now, or waiting for a retry.",
             (f"max by (consumer) (consumer_ack_pending_messages{{{sel}}})", "{{consumer}}"),
             w=8)
    b.series("Dead letters waiting", "`mercato dlq list --consumer NAME` shows them.",
             (f"max by (consumer) (dead_letters_waiting{{{sel}}})", "{{consumer}}"), w=8)
    b.series("Dead-lettered per 5 minutes", "",
             (f"sum by (consumer) (increase(dead_letters_total{{{sel}}}[5m]))",
              "{{consumer}}"), w=12)
    b.series("Dropped or dead-lettered by reason", "",
             (f"sum by (consumer, reason) (rate(consumer_messages_dropped_total{{{sel}}}"
              f"[{RATE}]))", "{{consumer}} {{reason}}"), unit="ops", w=12)
    b.row("Outboxes")
    b.series("Backlog", "Rows committed and not yet published, per service.",
             ("max by (service) (outbox_backlog)", "{{service}}"), w=8)
    b.series("Oldest unpublished row", "", (
        "max by (service) (outbox_oldest_unpublished_age_seconds)", "{{service}}"), unit="s",
        w=8)
    b.series("Published per second", "", (
        f"sum by (service) (rate(outbox_published_total[{RATE}]))", "{{service}}"),
        (f"sum by (service) (rate(outbox_publish_errors_total[{RATE}]))",
         "{{service}} failed passes"), unit="ops", w=8)
    return b


def sagas() -> Board:
    b = Board("mercato-sagas", "mercato: sagas",
              "The order saga and any other orchestrated saga (docs/saga.md).")
    b.row("Sagas")
    _saga_panels(b, 'service=~".+"')
    b.series("Share compensated", "Compensated of all finished (declined cards and "
             "out-of-stock orders are normal; a jump is not).",
             (f'sum by (saga) (rate(saga_finished_total{{status="compensated"}}[{RATE}])) / '
              f"sum by (saga) (rate(saga_finished_total[{RATE}]))", "{{saga}}"),
             unit="percentunit", w=8)
    b.series("Step re-sends and time-outs per 5 minutes", "A step re-sent past its deadline, "
             "and given up after its last resend (the saga compensates).",
             ("sum by (saga, step) (increase(saga_resends_total[5m]))", "{{step}} resent"),
             ("sum by (saga, step) (increase(saga_timeouts_total[5m]))", "{{step}} timed out"),
             w=8)
    b.series("Failed sagas per hour", "FAILED needs a person (a compensation could not be "
             "built).", ('sum by (saga) (increase(saga_finished_total{status="failed"}[1h]))',
                         "{{saga}}"), w=8)
    b.row("Orders admission")
    b.series("Order sagas running (admission count)", "What admission control compares with "
             "ORDERS_MAX_SAGAS_IN_FLIGHT.", ("max(orders_sagas_running)", "running"), w=12)
    b.series("Orders refused for overload", "503s with Retry-After while too many sagas run.",
             (f"sum(rate(orders_refused_overload_total[{RATE}]))", "refused"), unit="reqps",
             w=12)
    b.row("Orders replicas")
    b.series("Replica lookups", "What placing an order found in orders' replicas (ADR 0036, "
             "0041). A miss is a synchronous call to catalog, identity or payments, and fills "
             "the replica.",
             (f"sum by (replica, result) (rate(orders_replica_lookups_total[{RATE}]))",
              "{{replica}} {{result}}"), unit="ops", w=24)
    return b


def dashboards() -> dict[str, dict[str, Any]]:
    """File name -> dashboard model, every dashboard."""
    boards = [overview(), messaging(), sagas(), *(service_board(u) for u in units())]
    return {f"{b.uid.removeprefix('mercato-')}.json": b.model() for b in boards}
