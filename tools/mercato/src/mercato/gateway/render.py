"""Envoy configuration as plain dicts: the bootstrap, LDS, CDS and one EDS document per cluster.

Everything here is a pure function of the route table, the ports, the token signing keys
and the live instances, so the same input always gives byte-identical files: the control
plane relies on that to skip writes that would change nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any, Final, Literal

from chassis.registry import Instance

from mercato.gateway.routes import READ_METHODS, USER, Bucket, RateLimit, Route, RouteTable
from mercato.migration.routes import Coexistence, coexistence_routes
from mercato.migration.routes import clusters as coexistence_clusters

LISTENER = "edge"
JWT_PROVIDER = "mercato"
REQUIRE_USER = "user"
HEALTH_PATH = "/health/ready"

_T = "type.googleapis.com/envoy"
HCM_TYPE = f"{_T}.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
JWT_TYPE = f"{_T}.extensions.filters.http.jwt_authn.v3.JwtAuthentication"
JWT_ROUTE_TYPE = f"{_T}.extensions.filters.http.jwt_authn.v3.PerRouteConfig"
RATELIMIT_TYPE = f"{_T}.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
BUFFER_TYPE = f"{_T}.extensions.filters.http.buffer.v3.Buffer"
BUFFER_ROUTE_TYPE = f"{_T}.extensions.filters.http.buffer.v3.BufferPerRoute"
ROUTER_TYPE = f"{_T}.extensions.filters.http.router.v3.Router"
FILE_LOG_TYPE = f"{_T}.extensions.access_loggers.file.v3.FileAccessLog"
UPSTREAM_HTTP_EXT = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
UPSTREAM_HTTP_TYPE = f"type.googleapis.com/{UPSTREAM_HTTP_EXT}"
LISTENER_TYPE = f"{_T}.config.listener.v3.Listener"
CLUSTER_TYPE = f"{_T}.config.cluster.v3.Cluster"
CLA_TYPE = f"{_T}.config.endpoint.v3.ClusterLoadAssignment"
ROUTE_CONFIG_TYPE = f"{_T}.config.route.v3.RouteConfiguration"
CEL_FILTER_TYPE = f"{_T}.extensions.access_loggers.filters.cel.v3.ExpressionFilter"
REQ_WITHOUT_QUERY_TYPE = (f"{_T}.extensions.formatter.req_without_query.v3."
                          "ReqWithoutQuery")
OTEL_TRACER_TYPE = f"{_T}.config.trace.v3.OpenTelemetryConfig"
TELEMETRY_CLUSTER = "mercato_telemetry"
CONN_LIMIT_TYPE = (f"{_T}.extensions.resource_monitors.downstream_connections.v3."
                   "DownstreamConnectionsConfig")

JWT_FILTER = "envoy.filters.http.jwt_authn"
IDEMPOTENCY_KEY = "idempotency-key"
# How long a client should wait before trying again after a 503 the edge answers itself.
RETRY_AFTER_S = "2"
KEYS_NOT_LOADED = ("tokens cannot be checked yet: the edge has not loaded the signing keys; "
                   "try again shortly")
RATELIMIT_FILTER = "envoy.filters.http.local_ratelimit"
BUFFER_FILTER = "envoy.filters.http.buffer"

# Envoy's own replies (401 from jwt_authn, 413, 429, 404 without a route, 503 without a
# healthy upstream ...) get the same problem+json shape as the services' errors.
PROBLEM_STATUSES = (400, 401, 403, 404, 405, 408, 413, 429, 431, 500, 502, 503, 504)
# The edge sets this request header to the client address it rate-limits by, replacing any
# the client sent; identity throttles sign-ins per (account, client) with it.
CLIENT_ADDRESS_HEADER = "x-mercato-client-address"
# Names of service instances are for operators (the access log's upstream_instance, direct
# calls to a service), not for the public: the edge drops the header the services set.
INTERNAL_RESPONSE_HEADERS = ("x-mercato-instance",)
NOSNIFF = {"header": {"key": "x-content-type-options", "value": "nosniff"},
           "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
# Per-client buckets live in an LRU of this many client addresses; one flooding from more
# addresses than this only recycles buckets, and meets the route's total ceiling.
MAX_CLIENT_BUCKETS = 10_000
ACCESS_LOG_FORMAT = {
    "time": "%START_TIME%",
    "logger": "envoy.access",
    "method": "%REQ(:METHOD)%",
    # Never the query string: clients put anything there, passwords and tokens included
    # (a password sent as ?password= was logged in clear). Services log what they need.
    "path": "%REQ_WITHOUT_QUERY(:PATH)%",
    "protocol": "%PROTOCOL%",
    "status": "%RESPONSE_CODE%",
    "flags": "%RESPONSE_FLAGS%",
    "details": "%RESPONSE_CODE_DETAILS%",
    "duration_ms": "%DURATION%",
    "upstream_ms": "%RESPONSE_DURATION%",
    "attempts": "%UPSTREAM_REQUEST_ATTEMPT_COUNT%",
    "upstream_cluster": "%UPSTREAM_CLUSTER%",
    "upstream_host": "%UPSTREAM_HOST%",
    "upstream_instance": "%UPSTREAM_HOST_NAME%",
    "bytes_in": "%BYTES_RECEIVED%",
    "bytes_out": "%BYTES_SENT%",
    "client": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    "traceparent": "%REQ(TRACEPARENT)%",
    # The trace the edge's own span belongs to (empty when the request was not sampled).
    "trace_id": "%TRACE_ID%",
    "user_agent": "%REQ(USER-AGENT)%",
}


@dataclass(frozen=True)
class EdgeTelemetry:
    """Where the edge sends its spans (OTLP/HTTP on loopback) and how many it starts."""

    port: int
    token: str
    sampling_percent: float = 100.0
    host: str = "127.0.0.1"


def telemetry_cluster(t: EdgeTelemetry) -> dict[str, Any]:
    return {"name": TELEMETRY_CLUSTER, "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": TELEMETRY_CLUSTER, "endpoints": [{
                "lb_endpoints": [{"endpoint": {"address": _addr(t.host, t.port)}}]}]}}


def tracing(t: EdgeTelemetry) -> dict[str, Any]:
    """Envoy's OpenTelemetry tracer: a span per request at the edge, its traceparent sent
    upstream, so a trace starts here; exported over OTLP/HTTP to the console."""
    return {
        "random_sampling": {"value": t.sampling_percent},
        "provider": {"name": "envoy.tracers.opentelemetry", "typed_config": {
            "@type": OTEL_TRACER_TYPE,
            "service_name": "envoy",
            "http_service": {
                "http_uri": {"uri": f"http://{t.host}:{t.port}/v1/traces",
                             "cluster": TELEMETRY_CLUSTER, "timeout": "2s"},
                "request_headers_to_add": [{"header": {
                    "key": "authorization", "value": f"Bearer {t.token}"}}],
            },
        }},
    }


def lds_file(envoy_dir: Path) -> Path:
    return envoy_dir / "lds.yaml"


def cds_file(envoy_dir: Path) -> Path:
    return envoy_dir / "cds.yaml"


def eds_file(envoy_dir: Path, cluster: str) -> Path:
    return envoy_dir / f"eds-{cluster}.yaml"


def rds_file(envoy_dir: Path) -> Path:
    return envoy_dir / "rds.yaml"


# -- traffic splits (releases) ---------------------------------------------------------------

NEXT_SUFFIX = "-next"
ROUTE_CONFIG = "edge"


def next_cluster(service: str) -> str:
    """The cluster of a release's new instances. Service names have no hyphen, so it never
    names a service of its own."""
    return f"{service}{NEXT_SUFFIX}"


@dataclass(frozen=True)
class Split:
    """A service under release: ``weight`` percent of its edge traffic goes to the instances
    named in ``new`` (cluster ``<service>-next``), the rest to its other instances (cluster
    ``<service>``). ``promoting``: the new instances are in both clusters, so the route can
    go back to the plain cluster once Envoy has health-checked them there."""

    service: str
    new: frozenset[str]
    weight: int = 0
    promoting: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.weight <= 100:
            raise ValueError(f"a split's weight is a percentage, got {self.weight}")


Splits = Mapping[str, Split]


def _path_source(path: Path, envoy_dir: Path) -> dict[str, Any]:
    # Envoy only notices a file replaced by rename when it watches the directory.
    return {"resource_api_version": "V3",
            "path_config_source": {"path": str(path),
                                   "watched_directory": {"path": str(envoy_dir)}}}


def _addr(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _seconds(value: float) -> str:
    return f"{value:g}s"


# -- bootstrap -----------------------------------------------------------------------------

def bootstrap(envoy_dir: Path, *, admin_host: str, admin_port: int,
              admin_socket: Path | None = None, max_connections: int = 10_000,
              telemetry: EdgeTelemetry | None = None) -> dict[str, Any]:
    # Envoy's admin has no authentication of its own: on a unix socket (0600, in a 0700
    # directory) only the home's owner can reach it; on loopback TCP every local user can.
    admin = ({"pipe": {"path": str(admin_socket), "mode": 0o600}} if admin_socket is not None
             else _addr(admin_host, admin_port))
    doc: dict[str, Any] = {
        "node": {"id": "mercato-edge", "cluster": "mercato-edge"},
        "admin": {"address": admin},
        "dynamic_resources": {
            "lds_config": _path_source(lds_file(envoy_dir), envoy_dir),
            "cds_config": _path_source(cds_file(envoy_dir), envoy_dir),
        },
        # Without a connection cap a flood of idle connections exhausts file descriptors.
        "overload_manager": {"resource_monitors": [{
            "name": "envoy.resource_monitors.global_downstream_max_connections",
            "typed_config": {"@type": CONN_LIMIT_TYPE,
                             "max_active_downstream_connections": max_connections},
        }]},
    }
    if telemetry is not None:
        # Static: the tracer's cluster must exist before LDS names it.
        doc["static_resources"] = {"clusters": [telemetry_cluster(telemetry)]}
    return doc


# -- CDS -----------------------------------------------------------------------------------

def cluster(service: str, envoy_dir: Path) -> dict[str, Any]:
    return {
        "@type": CLUSTER_TYPE,
        "name": service,
        "type": "EDS",
        "eds_cluster_config": {"service_name": service,
                               "eds_config": _path_source(eds_file(envoy_dir, service), envoy_dir)},
        "connect_timeout": "1s",
        "lb_policy": "ROUND_ROBIN",
        # The services close keep-alive connections idle for 20 s (chassis.serve); closing
        # ours first avoids sending a request down a connection the service is closing (a
        # spurious 503).
        "typed_extension_protocol_options": {UPSTREAM_HTTP_EXT: {
            "@type": UPSTREAM_HTTP_TYPE,
            "common_http_protocol_options": {"idle_timeout": "4s"},
            "explicit_http_config": {"http_protocol_options": {}},
        }},
        # A new instance gets traffic only once /health/ready answers 200 (it has started and
        # its database answers; a broker outage does not make it fail: writes wait in the
        # outbox); a hung one is out after two failed checks. One found unhealthy (still
        # starting, or its database was down) is checked again every half second, so it is
        # back as soon as it can serve.
        "health_checks": [{
            "timeout": "1s",
            "interval": "2s",
            "no_traffic_interval": "2s",
            "unhealthy_interval": "0.5s",
            "interval_jitter": "0.2s",
            "unhealthy_threshold": 2,
            "healthy_threshold": 1,
            "http_health_check": {"path": HEALTH_PATH},
        }],
        # A process killed without deregistering keeps its registry entry for up to 10 s;
        # a refused connection ejects it at once instead (as do resets and timeouts: with
        # the split, those are the local-origin failures).
        "outlier_detection": {
            "split_external_local_origin_errors": True,
            "consecutive_local_origin_failure": 1,
            "enforcing_consecutive_local_origin_failure": 100,
            # Application 5xx, 502/503/504 included, and success rates say nothing about
            # reachability: a service sheds load with 503 (a full bulkhead, an open circuit,
            # a database hiccup), and ejecting its only instance for that turned a burst of
            # orders into seconds of "no healthy upstream" for every orders request.
            "enforcing_consecutive_gateway_failure": 0,
            "enforcing_consecutive_5xx": 0,
            "enforcing_success_rate": 0,
            "interval": "1s",
            "base_ejection_time": "5s",
            "max_ejection_time": "30s",
            # At most half a cluster's hosts: a refused connection still takes one of two
            # instances out at once, but one slow answer (a timeout) no longer takes out a
            # service's only instance, which left seconds of "no healthy upstream" for every
            # request after it (ejecting it helps nobody: there is no other host to try).
            # A really dead lone instance fails its health checks and leaves the registry.
            "max_ejection_percent": 50,
        },
        "common_lb_config": {
            # The registry and the health checks are trusted: never spread traffic over hosts
            # known to be down (Envoy's default "panic" mode does below 50 % healthy).
            "healthy_panic_threshold": {"value": 0},
            # Apply host set changes at once instead of batching them for 1 s: the set is
            # small, and a just-healthy instance should take traffic now.
            "update_merge_window": "0s",
        },
        # The registry is the source of truth: a deregistered instance leaves at once rather
        # than lingering until its health check fails.
        "ignore_health_on_host_removal": True,
        "circuit_breakers": {"thresholds": [{
            "priority": "DEFAULT",
            "retry_budget": {"budget_percent": {"value": 20.0}, "min_retry_concurrency": 3},
        }]},
    }


def cluster_names(table: RouteTable, splits: Splits | None = None,
                  coexistence: Coexistence | None = None) -> list[str]:
    """Every cluster: one per service, a ``-next`` one per service under release, and the
    monolith's and the ACL's while the migration runs."""
    names = list(table.services)
    names += [next_cluster(s) for s in table.services if splits and s in splits]
    if coexistence is not None:
        names += [c["name"] for c in coexistence_clusters(coexistence)]
    return names


def cds(table: RouteTable, envoy_dir: Path, splits: Splits | None = None,
        coexistence: Coexistence | None = None) -> dict[str, Any]:
    services = [cluster(c, envoy_dir) for c in cluster_names(table, splits)]
    # The monolith and the ACL are not in the registry: fixed ports, STATIC clusters.
    fixed = coexistence_clusters(coexistence) if coexistence is not None else []
    return {"resources": services + fixed}


# -- EDS -----------------------------------------------------------------------------------

def load_assignment(service: str, instances: Iterable[Instance],
                    cluster_name: str | None = None) -> dict[str, Any]:
    """The service's live instances; none gives an empty assignment (Envoy answers 503)."""
    mine = sorted((i for i in instances if i.service == service), key=lambda i: i.key)
    cla: dict[str, Any] = {"@type": CLA_TYPE, "cluster_name": cluster_name or service,
                           "endpoints": []}
    if mine:
        cla["endpoints"] = [{"lb_endpoints": [
            {"endpoint": {"address": _addr(i.host, i.port), "hostname": i.instance_id}}
            for i in mine
        ]}]
    return cla


def eds(service: str, instances: Iterable[Instance]) -> dict[str, Any]:
    return {"resources": [load_assignment(service, instances)]}


def split_eds(table: RouteTable, instances: Iterable[Instance],
              splits: Splits | None = None) -> dict[str, dict[str, Any]]:
    """Cluster name -> its EDS document. A service under release has its new instances in
    ``<service>-next`` and the others in ``<service>`` (the new ones too while promoting)."""
    listed = list(instances)
    docs: dict[str, dict[str, Any]] = {}
    for service in table.services:
        split = (splits or {}).get(service)
        if split is None:
            docs[service] = eds(service, listed)
            continue
        new = [i for i in listed if i.service == service and i.instance_id in split.new]
        old = [i for i in listed if i.service == service and i.instance_id not in split.new]
        docs[service] = {"resources": [load_assignment(
            service, old + new if split.promoting else old)]}
        docs[next_cluster(service)] = {"resources": [load_assignment(
            service, new, next_cluster(service))]}
    return docs


# -- LDS -----------------------------------------------------------------------------------

Jwks = Mapping[str, Any]
# The edge's signing keys: a JWKS handed over by the control plane; REMOTE_JWKS for an edge
# with no control plane (the static production config), which fetches identity's JWKS
# itself; None while the control plane has none yet.
REMOTE_JWKS: Final = "remote"
EdgeKeys = Jwks | Literal["remote"] | None


def lds(table: RouteTable, *, listen_host: str, listen_port: int, logs_dir: Path,
        jwks: EdgeKeys = None, telemetry: EdgeTelemetry | None = None,
        rds_dir: Path | None = None, splits: Splits | None = None,
        coexistence: Coexistence | None = None) -> dict[str, Any]:
    return {"resources": [listener(table, listen_host=listen_host, listen_port=listen_port,
                                   logs_dir=logs_dir, jwks=jwks, telemetry=telemetry,
                                   rds_dir=rds_dir, splits=splits,
                                   coexistence=coexistence)]}


def listener(table: RouteTable, *, listen_host: str, listen_port: int,
             logs_dir: Path, jwks: EdgeKeys = None,
             telemetry: EdgeTelemetry | None = None,
             rds_dir: Path | None = None, splits: Splits | None = None,
             coexistence: Coexistence | None = None) -> dict[str, Any]:
    return {
        "@type": LISTENER_TYPE,
        "name": LISTENER,
        "address": _addr(listen_host, listen_port),
        # Envoy's edge guidance: small per-connection buffers; the buffer filter raises the
        # limit for request bodies up to max_body_bytes.
        "per_connection_buffer_limit_bytes": 32768,
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": http_connection_manager(table, logs_dir, jwks, telemetry,
                                                    rds_dir, splits, coexistence),
        }]}],
    }


def http_connection_manager(table: RouteTable, logs_dir: Path, jwks: EdgeKeys = None,
                            telemetry: EdgeTelemetry | None = None,
                            rds_dir: Path | None = None,
                            splits: Splits | None = None,
                            coexistence: Coexistence | None = None) -> dict[str, Any]:
    # Without keys no token can be checked: the jwt_authn filter is left out (Envoy refuses
    # a provider with no key) and every route that needs a user answers 503 itself.
    authenticate = [{"name": JWT_FILTER, "typed_config": jwt_authn(table, jwks)}] if jwks else []
    hcm: dict[str, Any] = {
        "@type": HCM_TYPE,
        "stat_prefix": LISTENER,
        "codec_type": "AUTO",
        "server_name": "mercato",
        # This is the edge: the client address is the peer, not whatever X-Forwarded-For says.
        "use_remote_address": True,
        "always_set_request_id_in_response": True,
        # Normalised paths make /api/identity//me or /api/identity/./me match the protected
        # route; an encoded slash could still dodge it, so refuse those outright.
        "normalize_path": True,
        "merge_slashes": True,
        "path_with_escaped_slashes_action": "REJECT_REQUEST",
        "request_headers_timeout": "10s",
        "stream_idle_timeout": "60s",
        "common_http_protocol_options": {"idle_timeout": "300s",
                                         "headers_with_underscores_action": "REJECT_REQUEST"},
        "http2_protocol_options": {"max_concurrent_streams": 100,
                                   "initial_stream_window_size": 65536,
                                   "initial_connection_window_size": 1048576},
        "access_log": [{
            "name": "envoy.access_loggers.file",
            "typed_config": {"@type": FILE_LOG_TYPE,
                             "path": str(logs_dir / "envoy-access.log"),
                             "log_format": {"json_format": ACCESS_LOG_FORMAT,
                                            "formatters": [{
                                                "name": "envoy.formatter.req_without_query",
                                                "typed_config": {
                                                    "@type": REQ_WITHOUT_QUERY_TYPE}}]}},
        }],
        "local_reply_config": local_reply_config(),
        **_routes(table, jwks, rds_dir, splits, coexistence),
        # Order matters: shed excess load first, then refuse unauthenticated requests before
        # reading (buffering) their bodies.
        "http_filters": [
            {"name": RATELIMIT_FILTER,
             "typed_config": {"@type": RATELIMIT_TYPE, "stat_prefix": "edge_rate_limit"}},
            *authenticate,
            {"name": BUFFER_FILTER,
             "typed_config": {"@type": BUFFER_TYPE, "max_request_bytes": 1 << 20}},
            {"name": "envoy.filters.http.router",
             "typed_config": {"@type": ROUTER_TYPE, "suppress_envoy_headers": True}},
        ],
    }
    if telemetry is not None:
        hcm["tracing"] = tracing(telemetry)
    return hcm


def _routes(table: RouteTable, jwks: EdgeKeys, rds_dir: Path | None,
            splits: Splits | None = None,
            coexistence: Coexistence | None = None) -> dict[str, Any]:
    """The routes inline, or (the laptop's control plane, once it has the keys) from
    rds.yaml: a release changes its weights there, and an RDS update swaps the routes of open
    connections in place, where a listener update drains every connection.

    Not before the keys: the listener gains its jwt_authn filter with them, and routes that
    need a user, handed over RDS to the listener still without that filter, would let
    requests through unchecked until the new listener took over. So the routes move to RDS
    in the same listener update that adds the filter (the control plane writes rds.yaml
    first); later key rotations change the listener only."""
    if rds_dir is None or not jwks:
        return {"route_config": route_config(table, keys_loaded=bool(jwks), splits=splits,
                                             coexistence=coexistence)}
    return {"rds": {"route_config_name": ROUTE_CONFIG,
                    "config_source": _path_source(rds_file(rds_dir), rds_dir)}}


def jwt_authn(table: RouteTable, jwks: Jwks | Literal["remote"]) -> dict[str, Any]:
    jwt = table.jwt
    keys: dict[str, Any]
    if jwks == REMOTE_JWKS:
        keys = {"remote_jwks": {
            "http_uri": {"uri": f"http://{jwt.jwks_service}{jwt.jwks_path}",
                         "cluster": jwt.jwks_service, "timeout": "2s"},
            "cache_duration": _seconds(jwt.refresh_s),
            # Fetch in the background and serve at once: identity may start after the edge.
            # Until the first fetch succeeds jwt_authn fails tokens with
            # Jwks_remote_fetch_is_failed, which local_reply_config turns into a 503.
            "async_fetch": {"fast_listener": True, "failed_refetch_duration": "1s"},
            "retry_policy": {"num_retries": 2,
                             "retry_back_off": {"base_interval": "0.1s",
                                                "max_interval": "1s"}},
        }}
    else:
        # The keys come inline from the control plane, which fetches identity's JWKS and
        # renders again when it changes. Envoy's own remote_jwks answered 401 to valid
        # tokens until its first fetch succeeded (a client may then throw good tokens
        # away), and never refetched for an unknown kid.
        keys = {"local_jwks": {"inline_string": json.dumps(jwks, sort_keys=True,
                                                           separators=(",", ":"))}}
    return {
        "@type": JWT_TYPE,
        "providers": {JWT_PROVIDER: {
            "issuer": jwt.issuer,
            "audiences": list(jwt.audiences),
            "require_expiration": True,
            # Services check the token again themselves, so it must reach them.
            "forward": True,
            # Only the header: the default also reads ?access_token=, which lands in logs.
            "from_headers": [{"name": "Authorization", "value_prefix": "Bearer "}],
            **keys,
        }},
        "requirement_map": {REQUIRE_USER: {"provider_name": JWT_PROVIDER}},
    }


def local_reply_config() -> dict[str, Any]:
    def body(title: str | None) -> dict[str, Any]:
        doc: dict[str, Any] = {"type": "about:blank"}
        if title:
            doc["title"] = title
        doc |= {"status": "%RESPONSE_CODE%", "detail": "%LOCAL_REPLY_BODY%"}
        return {"json_format": doc, "content_type": "application/problem+json"}

    # jwt_authn answers 403 to a valid token for another audience. For this resource server
    # such a token is simply invalid (RFC 6750 invalid_token: 401), and the services say 401.
    audience_to_401: dict[str, Any] = {
        "filter": {"extension_filter": {
            "name": "envoy.access_loggers.extension_filters.cel",
            "typed_config": {
                "@type": CEL_FILTER_TYPE,
                "expression": "response.code == 403 && "
                              "response.code_details.startsWith('jwt_authn_access_denied')",
            },
        }},
        "status_code": 401,
        "headers_to_add": [{"header": {"key": "www-authenticate",
                                       "value": 'Bearer realm="mercato", error="invalid_token"'},
                            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}, NOSNIFF],
        "body_format_override": body(HTTPStatus(401).phrase),
    }
    # An edge fetching the keys itself (REMOTE_JWKS) that could not fetch them yet cannot
    # tell a valid token from a forged one: come back (503), not "your token is bad" (401).
    keys_not_fetched: dict[str, Any] = {
        "filter": {"extension_filter": {
            "name": "envoy.access_loggers.extension_filters.cel",
            "typed_config": {
                "@type": CEL_FILTER_TYPE,
                "expression": "response.code == 401 && "
                              "response.code_details.contains('Jwks_remote_fetch_is_failed')",
            },
        }},
        "status_code": 503,
        "body": {"inline_string": KEYS_NOT_LOADED},
        "headers_to_add": [{"header": {"key": "retry-after", "value": RETRY_AFTER_S},
                            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}, NOSNIFF],
        "body_format_override": body(HTTPStatus(503).phrase),
    }
    mappers = [keys_not_fetched, audience_to_401]
    for status in PROBLEM_STATUSES:
        mapper: dict[str, Any] = {
            "filter": {"status_code_filter": {"comparison": {
                "op": "EQ",
                "value": {"default_value": status, "runtime_key": f"mercato.local_reply.{status}"},
            }}},
            "body_format_override": body(HTTPStatus(status).phrase),
            # Local replies pass no route's response headers when no route matched (404).
            "headers_to_add": [NOSNIFF],
        }
        if status == 404:
            mapper["body"] = {"inline_string": "no route matches this path"}
        if status == 429:
            # Every bucket refills each second (routes.py has per_second only).
            mapper["headers_to_add"] = [{"header": {"key": "retry-after", "value": "1"},
                                         "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"},
                                        NOSNIFF]
        if status == 503:
            # No instance can take the request right now (none started yet, or their
            # database is down): the client should come back, not give up.
            mapper["headers_to_add"] = [{"header": {"key": "retry-after",
                                                    "value": RETRY_AFTER_S},
                                         "append_action": "ADD_IF_ABSENT"}, NOSNIFF]
        mappers.append(mapper)
    # Any other status Envoy answers itself: same body shape, same header.
    mappers.append({
        "filter": {"status_code_filter": {"comparison": {
            "op": "GE", "value": {"default_value": 100, "runtime_key": "mercato.local_reply.any"},
        }}},
        "body_format_override": body(None),
        "headers_to_add": [NOSNIFF],
    })
    return {"mappers": mappers, "body_format": body(None)}


def route_config(table: RouteTable, *, keys_loaded: bool = True,
                 splits: Splits | None = None,
                 coexistence: Coexistence | None = None) -> dict[str, Any]:
    routes: list[dict[str, Any]] = []
    if coexistence is not None:
        # The monolith checks its own sessions: no token check at the edge on its paths.
        legacy_filters = ({JWT_FILTER: {"@type": JWT_ROUTE_TYPE, "disabled": True}}
                          if keys_loaded else {})
        routes.extend(coexistence_routes(coexistence, legacy_filters))
    for route in table.routes:
        routes.extend(envoy_routes(route, keys_loaded=keys_loaded,
                                   split=(splits or {}).get(route.service)))
    return {
        "name": ROUTE_CONFIG,
        "virtual_hosts": [{"name": "edge", "domains": ["*"], "routes": routes}],
        # The client address as the edge sees it (use_remote_address): a client-sent header
        # of the same name is replaced, never trusted.
        "request_headers_to_add": [{
            "header": {"key": CLIENT_ADDRESS_HEADER,
                       "value": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"},
            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}],
        "response_headers_to_add": [NOSNIFF],
        "response_headers_to_remove": list(INTERNAL_RESPONSE_HEADERS),
    }


def _match(route: Route, methods: tuple[str, ...] | None, negate: bool = False,
           keyed: bool = False) -> dict[str, Any]:
    match: dict[str, Any]
    if route.path is not None:
        match = {"path": route.path}
    elif route.prefix == "/":
        match = {"prefix": "/"}
    else:
        match = {"path_separated_prefix": route.prefix}
    if methods:
        regex = "^(" + "|".join(methods) + ")$"
        match["headers"] = [{"name": ":method",
                             "string_match": {"safe_regex": {"regex": regex}},
                             "invert_match": negate}]
    if keyed:
        match.setdefault("headers", []).append({"name": IDEMPOTENCY_KEY, "present_match": True})
    return match


def envoy_routes(route: Route, *, keys_loaded: bool = True,
                 split: Split | None = None) -> list[dict[str, Any]]:
    """Three Envoy routes per entry, most specific first: reads, and writes carrying an
    ``Idempotency-Key`` (both safe to repeat: retried when the request cannot have reached
    the service), then other writes (never retried)."""
    name = route.match
    # (name, match, retried, auth, rate limited): reads are not limited, the limits guard
    # the writes that cost work (a hash, a saga).
    variants = [(f"{name} read", _match(route, READ_METHODS), True, route.read_auth, False),
                (f"{name} write with key", _match(route, READ_METHODS, negate=True, keyed=True),
                 True, route.write_auth, True),
                (f"{name} write", _match(route, READ_METHODS, negate=True), False,
                 route.write_auth, True)]
    return [_envoy_route(route, variant, match, retry, auth, limited, keys_loaded, split)
            for variant, match, retry, auth, limited in variants]


def _envoy_route(route: Route, name: str, match: dict[str, Any], retry: bool, auth: str,
                 limited: bool, keys_loaded: bool, split: Split | None = None) -> dict[str, Any]:
    per_filter = _per_filter(route, auth, limited=limited, keys_loaded=keys_loaded)
    if auth == USER and not keys_loaded:
        # Not 401: the token may well be valid, and a client told so would throw it away.
        return {"name": name, "match": match,
                "direct_response": {"status": 503, "body": {"inline_string": KEYS_NOT_LOADED}},
                "response_headers_to_add": [{"header": {"key": "retry-after",
                                                        "value": RETRY_AFTER_S},
                                             "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}],
                "typed_per_filter_config": per_filter}
    return {"name": name, "match": match, "route": _route_action(route, retry=retry, split=split),
            "typed_per_filter_config": per_filter}


def _route_action(route: Route, *, retry: bool, split: Split | None = None) -> dict[str, Any]:
    action: dict[str, Any]
    if split is None:
        action = {"cluster": route.service}
    else:
        # Envoy picks the cluster per request by these weights; a weight of 0 sends nothing
        # there. Changing them is an RDS update: no listener drain, no connection closed.
        action = {"weighted_clusters": {"clusters": [
            {"name": route.service, "weight": 100 - split.weight},
            {"name": next_cluster(route.service), "weight": split.weight}]}}
    action["timeout"] = _seconds(route.timeout_s)
    if retry:
        # Only failures where the request cannot have reached the service: safe to resend.
        # A 503 the service answered is not retried: services shed load with it, and a
        # retry would add to the load it sheds.
        action["retry_policy"] = {
            "retry_on": "connect-failure,refused-stream,reset-before-request",
            "num_retries": 2,
            "retry_host_predicate": [{"name": "envoy.retry_host_predicates.previous_hosts",
                                      "typed_config": {"@type": f"{_T}.extensions.retry.host."
                                                       "previous_hosts.v3.PreviousHostsPredicate"}}],
            "host_selection_retry_max_attempts": 3,
            "retry_back_off": {"base_interval": "0.025s", "max_interval": "0.25s"},
        }
    return action


def _bucket(bucket: Bucket) -> dict[str, Any]:
    return {"max_tokens": bucket.burst, "tokens_per_fill": bucket.per_second,
            "fill_interval": "1s"}


def rate_limit(route: Route, limit: RateLimit) -> dict[str, Any]:
    """The route's local_ratelimit config: a bucket per client address (a dynamic descriptor:
    the entry without a value gets one bucket per value seen) and the route's total bucket."""
    always = {"numerator": 100, "denominator": "HUNDRED"}
    config: dict[str, Any] = {
        "@type": RATELIMIT_TYPE,
        "stat_prefix": f"rate_limit_{route.service}",
        "filter_enabled": {"runtime_key": "mercato.rate_limit.enabled", "default_value": always},
        "filter_enforced": {"runtime_key": "mercato.rate_limit.enforced",
                            "default_value": always},
    }
    # Envoy needs a route bucket; without a total it is the client's, consumed only when no
    # descriptor matches (never: every request has a remote address).
    route_bucket = limit.total if limit.total is not None else limit.per_client
    assert route_bucket is not None, "routes.py refuses a rate_limit without buckets"
    config["token_bucket"] = _bucket(route_bucket)
    if limit.per_client is not None:
        config |= {
            "always_consume_default_token_bucket": limit.total is not None,
            "rate_limits": [{"actions": [{"remote_address": {}}]}],
            "descriptors": [{"entries": [{"key": "remote_address"}],
                             "token_bucket": _bucket(limit.per_client)}],
            "max_dynamic_descriptors": MAX_CLIENT_BUCKETS,
        }
    return config


def _per_filter(route: Route, auth: str, *, limited: bool,
                keys_loaded: bool = True) -> dict[str, Any]:
    per: dict[str, Any] = {}
    if keys_loaded:  # without keys the jwt_authn filter is not there
        per[JWT_FILTER] = ({"@type": JWT_ROUTE_TYPE, "requirement_name": REQUIRE_USER}
                           if auth == USER else {"@type": JWT_ROUTE_TYPE, "disabled": True})
    # Reads are not limited: the limits guard the writes that cost work (a hash, a saga).
    if limited and route.rate_limit is not None:
        per[RATELIMIT_FILTER] = rate_limit(route, route.rate_limit)
    if route.max_body_bytes != 1 << 20:
        per[BUFFER_FILTER] = {"@type": BUFFER_ROUTE_TYPE,
                              "buffer": {"max_request_bytes": route.max_body_bytes}}
    return per


def documents(table: RouteTable, *, envoy_dir: Path, logs_dir: Path, listen_host: str,
              listen_port: int, jwks: Jwks | None = None,
              telemetry: EdgeTelemetry | None = None,
              splits: Splits | None = None,
              coexistence: Coexistence | None = None) -> Mapping[Path, dict[str, Any]]:
    """LDS, CDS and RDS: everything that depends on the routes, the signing keys and the
    releases under way, not on the registry. ``jwks`` None: the keys are not known yet.

    In the order to write them: a new cluster before the routes that name it, the routes
    before the listener that loads them."""
    return {
        cds_file(envoy_dir): cds(table, envoy_dir, splits, coexistence),
        rds_file(envoy_dir): {"resources": [{"@type": ROUTE_CONFIG_TYPE,
                                             **route_config(table, keys_loaded=bool(jwks),
                                                            splits=splits,
                                                            coexistence=coexistence)}]},
        lds_file(envoy_dir): lds(table, listen_host=listen_host, listen_port=listen_port,
                                 logs_dir=logs_dir, jwks=jwks, telemetry=telemetry,
                                 rds_dir=envoy_dir, splits=splits, coexistence=coexistence),
    }
