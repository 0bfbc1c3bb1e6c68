"""The edge route table: ``routes.yaml`` parsed and checked into plain dataclasses.

Loading fails loudly on any unknown key or bad value: a typo in an auth setting must stop the
gateway from starting, not silently make a route public.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

PUBLIC = "public"
USER = "user"
AUTH_LEVELS = (PUBLIC, USER)
READ_METHODS = ("GET", "HEAD", "OPTIONS")

# Registry service names become Envoy cluster names and file names (eds-<service>.yaml).
_SERVICE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class RoutesError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Bucket:
    """A token bucket: ``burst`` requests at once, refilled by ``per_second`` every second."""

    per_second: int
    burst: int


@dataclass(frozen=True, slots=True)
class RateLimit:
    """Limits on a route's writes (every method but GET, HEAD, OPTIONS).

    ``per_client`` is one bucket per client address, so a flooding client runs out of its own
    tokens and nobody else's; ``total`` is one bucket over all clients, the last-resort
    ceiling that protects the service from many clients at once. Either may be absent.
    """

    per_client: Bucket | None = None
    total: Bucket | None = None


@dataclass(frozen=True, slots=True)
class Route:
    service: str
    prefix: str | None = None
    path: str | None = None
    read_auth: str = PUBLIC
    write_auth: str = PUBLIC
    rate_limit: RateLimit | None = None
    max_body_bytes: int = 1 << 20
    timeout_s: float = 15.0

    @property
    def match(self) -> str:
        return self.path if self.path is not None else f"{self.prefix}/*"

    def sort_key(self) -> tuple[int, int, str]:
        # Exact paths first, then the longest prefix: the most specific entry wins.
        target = self.path if self.path is not None else self.prefix or ""
        return (0 if self.path is not None else 1, -len(target), target)


@dataclass(frozen=True, slots=True)
class JwtSettings:
    issuer: str = "mercato-identity"
    audiences: tuple[str, ...] = ("mercato",)
    jwks_service: str = "identity"
    jwks_path: str = "/.well-known/jwks.json"
    # The control plane reads the JWKS this often and hands Envoy what changed.
    refresh_s: int = 5


@dataclass(frozen=True, slots=True)
class RouteTable:
    routes: tuple[Route, ...]
    jwt: JwtSettings

    @property
    def services(self) -> tuple[str, ...]:
        """Every service the edge needs a cluster for, sorted (stable file output)."""
        return tuple(sorted({r.service for r in self.routes} | {self.jwt.jwks_service}))


def default_routes_file() -> Path:
    return Path(str(resources.files("mercato.gateway").joinpath("routes.yaml")))


def load_routes(path: Path | None = None) -> RouteTable:
    path = path or default_routes_file()
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise RoutesError(f"{path}: {exc}") from exc
    try:
        return parse_routes(doc)
    except RoutesError as exc:
        raise RoutesError(f"{path}: {exc}") from exc


def parse_routes(doc: Any) -> RouteTable:
    doc = _mapping(doc, "the document", {"defaults", "jwt", "routes"})
    defaults = _mapping(doc.get("defaults") or {}, "defaults", {"timeout_s", "max_body_bytes"})
    jwt = _parse_jwt(doc.get("jwt") or {})
    entries = doc.get("routes")
    if not isinstance(entries, list) or not entries:
        raise RoutesError("`routes` must be a non-empty list")
    routes = [_parse_route(entry, i, defaults) for i, entry in enumerate(entries)]
    seen: dict[str, int] = {}
    for i, route in enumerate(routes):
        if route.match in seen:
            raise RoutesError(
                f"routes[{i}] repeats {route.match} (also routes[{seen[route.match]}])")
        seen[route.match] = i
    routes += [r for r in api_docs_routes(routes) if r.match not in seen]
    return RouteTable(routes=tuple(sorted(routes, key=Route.sort_key)), jwt=jwt)


def api_docs_routes(routes: list[Route]) -> list[Route]:
    """Every service's API docs page (with its static files) and OpenAPI document, public
    for reading whatever the service's own routes require.

    A service serves them under its API root, the shortest ``prefix`` entry it has
    (``/api/history`` for order_history): ``<root>/docs`` and ``<root>/openapi.json``. They
    describe the API and hold no data; a browser loading the docs page sends no token.
    """
    roots: dict[str, Route] = {}
    for route in routes:
        # The storefront's page prefixes (/products...) are no API root: a service's API
        # lives under /api/.
        if route.prefix is None or not route.prefix.startswith("/api"):
            continue
        known = roots.get(route.service)
        if known is None or len(route.prefix) < len(known.prefix or ""):
            roots[route.service] = route
    docs: list[Route] = []
    for service, root in sorted(roots.items()):
        base = (root.prefix or "").rstrip("/")
        common = {"service": service, "read_auth": PUBLIC, "write_auth": USER,
                  "timeout_s": root.timeout_s}
        docs += [Route(prefix=f"{base}/docs", **common),  # type: ignore[arg-type]
                 Route(path=f"{base}/openapi.json", **common)]  # type: ignore[arg-type]
    return docs


def _parse_jwt(raw: Any) -> JwtSettings:
    raw = _mapping(raw, "jwt", {"issuer", "audiences", "jwks_service", "jwks_path",
                                 "refresh_s"})
    base = JwtSettings()
    audiences = raw.get("audiences", list(base.audiences))
    if not isinstance(audiences, list) or not all(isinstance(a, str) and a for a in audiences):
        raise RoutesError("jwt.audiences must be a list of strings")
    settings = JwtSettings(
        issuer=_str(raw.get("issuer", base.issuer), "jwt.issuer"),
        audiences=tuple(audiences),
        jwks_service=_service(raw.get("jwks_service", base.jwks_service), "jwt.jwks_service"),
        jwks_path=_abs_path(raw.get("jwks_path", base.jwks_path), "jwt.jwks_path"),
        refresh_s=_positive_int(raw.get("refresh_s", base.refresh_s), "jwt.refresh_s"),
    )
    return settings


def _parse_route(raw: Any, i: int, defaults: dict[str, Any]) -> Route:
    where = f"routes[{i}]"
    raw = _mapping(raw, where, {"prefix", "path", "service", "auth", "rate_limit",
                                "max_body_bytes", "timeout_s"})
    if ("prefix" in raw) == ("path" in raw):
        raise RoutesError(f"{where}: give exactly one of `prefix` or `path`")
    prefix = path = None
    if "prefix" in raw:
        prefix = _abs_path(raw["prefix"], f"{where}.prefix")
        # "/api/x/" and "/api/x" mean the same subtree; only "/" itself keeps its slash.
        prefix = prefix.rstrip("/") or "/"
    else:
        path = _abs_path(raw["path"], f"{where}.path")
    read_auth, write_auth = _parse_auth(raw.get("auth", PUBLIC), where)
    rate_limit = _parse_rate_limit(raw["rate_limit"], where) if "rate_limit" in raw else None
    return Route(
        service=_service(raw.get("service"), f"{where}.service"),
        prefix=prefix,
        path=path,
        read_auth=read_auth,
        write_auth=write_auth,
        rate_limit=rate_limit,
        max_body_bytes=_positive_int(raw.get("max_body_bytes",
                                             defaults.get("max_body_bytes", 1 << 20)),
                                     f"{where}.max_body_bytes"),
        timeout_s=_positive_float(raw.get("timeout_s", defaults.get("timeout_s", 15)),
                                  f"{where}.timeout_s"),
    )


def _parse_rate_limit(raw: Any, where: str) -> RateLimit:
    where = f"{where}.rate_limit"
    rl = _mapping(raw, where, {"per_client", "total"})
    if not rl:
        raise RoutesError(f"{where}: give `per_client`, `total` or both")
    limit = RateLimit(
        per_client=_parse_bucket(rl["per_client"], f"{where}.per_client")
        if "per_client" in rl else None,
        total=_parse_bucket(rl["total"], f"{where}.total") if "total" in rl else None)
    if limit.per_client is not None and limit.total is not None \
            and limit.total.burst < limit.per_client.burst:
        raise RoutesError(f"{where}: the `total` burst is below one client's: the ceiling "
                          "would bite before any client's own limit")
    return limit


def _parse_bucket(raw: Any, where: str) -> Bucket:
    bucket = _mapping(raw, where, {"per_second", "burst"})
    per_second = _positive_int(bucket.get("per_second"), f"{where}.per_second")
    return Bucket(per_second=per_second,
                  burst=_positive_int(bucket.get("burst", per_second), f"{where}.burst"))


def _parse_auth(raw: Any, where: str) -> tuple[str, str]:
    if isinstance(raw, str):
        return _auth_level(raw, f"{where}.auth"), _auth_level(raw, f"{where}.auth")
    auth = _mapping(raw, f"{where}.auth", {"read", "write"})
    if set(auth) != {"read", "write"}:
        raise RoutesError(f"{where}.auth: give both `read` and `write`")
    return (_auth_level(auth["read"], f"{where}.auth.read"),
            _auth_level(auth["write"], f"{where}.auth.write"))


def _auth_level(value: Any, where: str) -> str:
    if value not in AUTH_LEVELS:
        raise RoutesError(f"{where}: must be one of {', '.join(AUTH_LEVELS)}, not {value!r}")
    return str(value)


def _mapping(value: Any, where: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RoutesError(f"{where} must be a mapping")
    unknown = set(value) - allowed
    if unknown:
        raise RoutesError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    return value


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise RoutesError(f"{where} must be a non-empty string")
    return value


def _service(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _SERVICE_NAME.match(value):
        raise RoutesError(f"{where} must be a service name like `catalog`, not {value!r}")
    return value


def _abs_path(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.startswith("/") or any(c in value for c in "?#"):
        raise RoutesError(f"{where} must be an absolute path without query, not {value!r}")
    return value


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise RoutesError(f"{where} must be a positive integer, not {value!r}")
    return value


def _positive_float(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise RoutesError(f"{where} must be a positive number, not {value!r}")
    return float(value)
