"""The edge's side of the coexistence: the monolith and the ACL as clusters, and per
capability the routes that split its legacy paths between the two sides.

Pure functions of the ports and the switches (``flags.Share``); the gateway renders them
into rds.yaml and cds.yaml beside the services' routes. Per legacy path, most specific
first (Envoy takes the first route that matches):

1. reads of shifted customers picked for shadow → ACL, primary services, shadow on;
2. reads picked for shadow → ACL, primary the fallback side, shadow on;
3. shifted customers (``mercato-bucket`` below the share) → ACL, primary services;
4. everyone else → the fallback side: the monolith, or the ACL (primary services) at 100 %.

Checkout, while the cart's share is above its own (ADR 0035): the customers whose cart is on
the services and whose checkout is not (cart bucket range minus checkout range; everyone not
shifted once the cart is at 100 %) → ACL, primary the monolith, ``mercato-cart: services``,
so the ACL fills the monolith's checkout from the services' cart.

Shifted means a bucket header in ``[0, percent)`` (Envoy ``range_match``): sticky, the same
customer always lands on the same side while the share holds. A request without a bucket
stays on the monolith until the share is 100 %. Shadow picks requests at random
(``runtime_fraction``): a comparison needs no stickiness.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mercato.migration.buckets import BUCKETS, HEADER
from mercato.migration.capabilities import (
    BY_NAME,
    CAPABILITIES,
    LEGACY_ROOT,
    Capability,
    Path,
)
from mercato.migration.flags import Share

# Hyphenated: registry service names have none, so these never clash with a service.
LEGACY_CLUSTER = "migration-legacy"
ACL_CLUSTER = "migration-acl"
PRIMARY = "mercato-primary"
SHADOW = "mercato-shadow"
CAPABILITY = "mercato-capability"
# On a checkout the monolith serves for a customer whose cart is on the services (ADR 0035).
CART = "mercato-cart"
# On every answer to a legacy path: which side served it (operators, tests, the bench).
SERVED_BY = "mercato-served-by"
LEGACY, SERVICES = "legacy", "services"
READS = "^(GET|HEAD)$"
TIMEOUT = "15s"


@dataclass(frozen=True)
class Coexistence:
    """Where the monolith and the ACL listen, and every capability's switches."""

    legacy_port: int
    acl_port: int
    shares: Mapping[str, Share] = field(default_factory=dict)
    host: str = "127.0.0.1"

    def share(self, capability: str) -> Share:
        return self.shares.get(capability) or Share(capability)


def _cluster(name: str, host: str, port: int) -> dict[str, Any]:
    ext = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    return {
        "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{
            "endpoint": {"address": {"socket_address": {"address": host,
                                                        "port_value": port}}}}]}]},
        # Both are uvicorn/aiohttp servers closing idle keep-alives after 5 s: close first.
        "typed_extension_protocol_options": {ext: {
            "@type": f"type.googleapis.com/{ext}",
            "common_http_protocol_options": {"idle_timeout": "4s"},
            "explicit_http_config": {"http_protocol_options": {}}}},
        "health_checks": [{"timeout": "1s", "interval": "2s", "no_traffic_interval": "2s",
                           "unhealthy_interval": "0.5s", "unhealthy_threshold": 2,
                           "healthy_threshold": 1,
                           "http_health_check": {"path": "/health/ready"}}],
        "common_lb_config": {"healthy_panic_threshold": {"value": 0}},
    }


def clusters(c: Coexistence) -> list[dict[str, Any]]:
    return [_cluster(LEGACY_CLUSTER, c.host, c.legacy_port),
            _cluster(ACL_CLUSTER, c.host, c.acl_port)]


def _path_match(p: Path) -> dict[str, Any]:
    return {"path_separated_prefix": p.path} if p.prefix else {"path": p.path}


def _bucket_below(percent: int) -> dict[str, Any]:
    # range_match: the whole header value must be a base-10 integer in [start, end).
    return {"name": HEADER, "range_match": {"start": 0, "end": percent}}


def _shadow_fraction(cap: Capability, percent: int) -> dict[str, Any]:
    return {"default_value": {"numerator": percent, "denominator": "HUNDRED"},
            "runtime_key": f"mercato.migration.{cap.name}.shadow"}


def _header(k: str, v: str) -> dict[str, Any]:
    return {"header": {"key": k, "value": v}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}


def _to_acl(cap: Capability, primary: str, shadow: bool,
            cart: str | None = None) -> dict[str, Any]:
    # Overwritten, never trusted: a client cannot pick its side or ask for a shadow.
    add = [_header(PRIMARY, primary), _header(CAPABILITY, cap.name),
           _header(SHADOW, "1" if shadow else "0")]
    route: dict[str, Any] = {"route": {"cluster": ACL_CLUSTER, "timeout": TIMEOUT},
                             "request_headers_to_add": add,
                             "response_headers_to_add": [_header(SERVED_BY, primary)]}
    if cart is not None:
        add.append(_header(CART, cart))
    else:
        route["request_headers_to_remove"] = [CART]
    return route


def _to_legacy() -> dict[str, Any]:
    return {"route": {"cluster": LEGACY_CLUSTER, "timeout": TIMEOUT},
            "request_headers_to_remove": [PRIMARY, SHADOW, CAPABILITY, CART],
            "response_headers_to_add": [_header(SERVED_BY, LEGACY)]}


def effective(cap: Capability, share: Share) -> tuple[int, int]:
    """The share and the shadow the edge applies: none for a capability the ACL cannot
    translate (its customers would get 501s), whatever a hand-edited flag file says, and no
    shadow for one that writes."""
    if not cap.translated:
        return 0, 0
    return (BUCKETS if share.finished else share.percent,
            share.shadow if cap.shadow_reads else 0)


def capability_routes(cap: Capability, share: Share, per_filter: Mapping[str, Any],
                      cart: int = 0) -> list[dict[str, Any]]:
    """``cart``: the cart's effective share, for checkout's routes."""
    percent, shadow = effective(cap, share)
    fallback = SERVICES if percent >= BUCKETS else LEGACY
    # Checkout customers whose cart is on the services but whose checkout is not.
    bridge = cap.name == "checkout" and cart > percent and percent < BUCKETS
    routes: list[dict[str, Any]] = []
    for p in cap.legacy:
        base = _path_match(p)
        reads = {"name": ":method", "string_match": {"safe_regex": {"regex": READS}}}
        variants: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        if shadow and 0 < percent < BUCKETS:
            variants.append(("shifted shadow", {**base, "headers": [reads, _bucket_below(percent)],
                                                "runtime_fraction": _shadow_fraction(cap, shadow)},
                             _to_acl(cap, SERVICES, True)))
        if shadow:
            variants.append(("shadow", {**base, "headers": [reads],
                                        "runtime_fraction": _shadow_fraction(cap, shadow)},
                             _to_acl(cap, fallback, True)))
        if 0 < percent < BUCKETS:
            variants.append(("shifted", {**base, "headers": [_bucket_below(percent)]},
                             _to_acl(cap, SERVICES, False)))
        if bridge and cart < BUCKETS:
            variants.append(("cart on services", {**base, "headers": [
                {"name": HEADER, "range_match": {"start": percent, "end": cart}}]},
                _to_acl(cap, LEGACY, False, cart=SERVICES)))
        if bridge and cart >= BUCKETS:
            # Everyone's cart is on the services, with or without a bucket.
            variants.append(("legacy, cart on services", base,
                             _to_acl(cap, LEGACY, False, cart=SERVICES)))
        else:
            variants.append((fallback, base, _to_legacy() if fallback == LEGACY
                             else _to_acl(cap, SERVICES, False)))
        routes += [{"name": f"{cap.name} {p.label} {variant}", "match": match, **action,
                    "typed_per_filter_config": dict(per_filter)}
                   for variant, match, action in variants]
    return routes


def coexistence_routes(c: Coexistence, per_filter: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every capability's routes, then the rest of the monolith's paths (its back office,
    anything no capability claims yet), which stay on the monolith. ``per_filter``: the
    edge's per-route filter config for these routes (the monolith checks its own
    sessions, so the edge's token check is off)."""
    cart = effective(BY_NAME["cart"], c.share("cart"))[0]
    routes = [r for cap in CAPABILITIES
              for r in capability_routes(cap, c.share(cap.name), per_filter, cart=cart)]
    routes.append({"name": f"legacy {LEGACY_ROOT}/*",
                   "match": {"path_separated_prefix": LEGACY_ROOT}, **_to_legacy(),
                   "typed_per_filter_config": dict(per_filter)})
    return routes
