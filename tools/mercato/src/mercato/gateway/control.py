"""The gateway control plane: routes + registry + signing keys in, Envoy's file-based xDS out.

``prepare`` writes everything Envoy needs to start; ``run_control_plane`` then keeps each
cluster's EDS file equal to the registry's live instances. It re-lists on every registry
change and every ``resync_every_s`` as well, because an instance that dies without
deregistering produces no event: its entry just stops being fresh.

It also reads identity's JWKS (every ``jwt.refresh_s``) and renders the keys into the
listener, so Envoy checks tokens against keys it was handed rather than fetched itself:
until the first keys arrive, routes that need a user answer 503 with Retry-After, never a
401 to a valid token. Known keys are kept while identity cannot be reached.

Releases (``mercato release``) split a service's traffic: the supervisor sets a ``Split`` in
the ``TrafficSplits`` it shares with the control plane, which renders a ``<service>-next``
cluster for the new instances and weighted clusters in the routes (rds.yaml), at once.

The migration off the monolith (`mercato migrate`, ADR 0028) puts the monolith and the
anti-corruption layer behind the edge when their ports are configured: each pass reads the
flag file's switches and renders the legacy paths' routes from them (rds.yaml) when they
changed, then records what it rendered in ``migration-applied.json`` for the CLI to wait on.

A registry that cannot be reached (the broker is down) changes nothing: the last endpoints
stay. Right after it comes back, instances missing from its answers are kept for a while
too: their heartbeats could not be written during the outage, so their entries look stale
until they have beaten again, although the processes never went away.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import structlog
import yaml
from chassis.registry import STALE_AFTER_S, Instance, RegistryClient
from nats.js.kv import KeyValue

from mercato.gateway import render
from mercato.gateway.envoy import envoy_argv
from mercato.gateway.files import write_doc, write_if_changed
from mercato.gateway.routes import RouteTable, load_routes
from mercato.migration import flags as migration_flags
from mercato.migration.routes import Coexistence

log = structlog.get_logger("mercato.gateway")


@dataclass(frozen=True)
class GatewayConfig:
    envoy_dir: Path
    logs_dir: Path
    edge_port: int = 8080
    admin_port: int = 9901
    routes_file: Path | None = None
    # Loopback by default: the edge is not reachable from other machines unless asked.
    listen_host: str = "127.0.0.1"
    admin_host: str = "127.0.0.1"
    # When set, the admin listens on this unix socket instead (the runtime always sets it).
    admin_socket: Path | None = None
    resync_every_s: float = 2.0
    log_level: str = "warn"
    # While the edge has no keys yet, identity's JWKS is asked for this often.
    jwks_retry_s: float = 0.5
    # Where the edge exports its spans; None: no tracer (`mercato up --no-telemetry`).
    telemetry: render.EdgeTelemetry | None = None
    # The monolith and the ACL (`mercato up --with legacy`): fixed ports, not registered.
    legacy_port: int | None = None
    acl_port: int | None = None
    flags_file: Path | None = None

    @property
    def bootstrap_file(self) -> Path:
        return self.envoy_dir / "bootstrap.yaml"

    @property
    def jwks_file(self) -> Path:
        """The keys the listener was last rendered with (a restarted control plane starts
        from them; ``prepare`` clears them)."""
        return self.envoy_dir / "jwks.json"

    @property
    def migration_applied_file(self) -> Path:
        return self.envoy_dir / "migration-applied.json"


def coexistence(cfg: GatewayConfig) -> Coexistence | None:
    """The monolith's and the ACL's place at the edge with the flag file's switches; None
    without a monolith. A flag file that cannot be read keeps everything on the monolith
    (the safe side) and says so in the log."""
    if cfg.legacy_port is None or cfg.acl_port is None:
        return None
    shares: dict[str, migration_flags.Share] = {}
    if cfg.flags_file is not None:
        try:
            shares = migration_flags.evaluate(cfg.flags_file)
        except Exception as exc:
            log.warning("gateway.migration_flags_unreadable", error=repr(exc))
    return Coexistence(legacy_port=cfg.legacy_port, acl_port=cfg.acl_port, shares=shares)


# Instances missing from the registry's answers right after it was unreachable are kept this
# long (they beat every few seconds; this is when a reader would call them gone).
REJOIN_GRACE_S = STALE_AFTER_S
REGISTRY_TIMEOUT_S = 5.0


class TrafficSplits:
    """The releases under way, shared by the supervisor (which sets them) and the control
    plane (which renders them). Not persisted: a release lives as long as the supervisor that
    runs its instances."""

    def __init__(self) -> None:
        self._splits: dict[str, render.Split] = {}
        self.changed = asyncio.Event()

    def set(self, split: render.Split) -> None:
        self._splits[split.service] = split
        self.changed.set()

    def clear(self, service: str) -> None:
        if self._splits.pop(service, None) is not None:
            self.changed.set()

    def get(self, service: str) -> render.Split | None:
        return self._splits.get(service)

    def snapshot(self) -> dict[str, render.Split]:
        return dict(self._splits)


@dataclass
class _Seen:
    """What the control plane knows between passes."""

    instances: list[Instance] = field(default_factory=list)
    registry_trouble_at: float = -math.inf
    jwks: dict[str, Any] | None = None
    splits: TrafficSplits = field(default_factory=TrafficSplits)
    # The splits the static files were last written with (rendering them costs a pass).
    rendered_splits: dict[str, render.Split] = field(default_factory=dict)
    rendered_coexistence: Coexistence | None = None


def _cds_clusters(cfg: GatewayConfig) -> set[str]:
    try:
        doc = yaml.safe_load(render.cds_file(cfg.envoy_dir).read_text())
        return {c["name"] for c in doc["resources"]}
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return set()


def write_static(cfg: GatewayConfig, table: RouteTable, jwks: render.Jwks | None = None,
                 splits: render.Splits | None = None,
                 coexist: Coexistence | None = None) -> list[Path]:
    """Bootstrap, LDS, CDS and RDS; returns the files that changed.

    Envoy reads each file as it is renamed into place, so the order matters: a cluster is
    added before the routes that name it, and removed only after the routes stopped naming
    it (a route to a missing cluster answers 503)."""
    docs = {cfg.bootstrap_file: render.bootstrap(cfg.envoy_dir, admin_host=cfg.admin_host,
                                                 admin_port=cfg.admin_port,
                                                 admin_socket=cfg.admin_socket,
                                                 telemetry=cfg.telemetry)}
    docs.update(render.documents(table, envoy_dir=cfg.envoy_dir, logs_dir=cfg.logs_dir,
                                 listen_host=cfg.listen_host, listen_port=cfg.edge_port,
                                 jwks=jwks, telemetry=cfg.telemetry, splits=splits,
                                 coexistence=coexist))
    cds_path = render.cds_file(cfg.envoy_dir)
    wanted = set(render.cluster_names(table, splits, coexist))
    changed = []
    leaving = _cds_clusters(cfg) - wanted
    if leaving:  # the routes first, then the clusters they no longer name
        order = [p for p in docs if p != cds_path] + [cds_path]
    else:
        order = list(docs)
    for path in order:
        if write_doc(path, docs[path]):
            changed.append(path)
    if coexist is not None:
        applied = {n: {"percent": x.percent, "shadow": x.shadow, "finished": x.finished}
                   for n, x in sorted(coexist.shares.items())}
        write_if_changed(cfg.migration_applied_file,
                         json.dumps({"shares": applied}, sort_keys=True) + "\n")
    return changed


def write_endpoints(cfg: GatewayConfig, table: RouteTable, instances: Sequence[Instance],
                    splits: render.Splits | None = None) -> list[str]:
    """One EDS file per cluster; returns the clusters whose file changed."""
    docs = render.split_eds(table, instances, splits)
    return [name for name, doc in docs.items()
            if write_doc(render.eds_file(cfg.envoy_dir, name), doc)]


def prepare(cfg: GatewayConfig) -> list[str]:
    """Write the bootstrap and initial LDS/CDS/EDS files; return Envoy's argv.

    Every cluster starts empty: endpoints left from an earlier run may point at ports now used
    by other processes; and without keys (routes that need a user answer 503 until the control
    plane has read identity's). Call it once per platform start; to restart only Envoy, re-run
    the argv and it picks up the control plane's current files.
    """
    table = load_routes(cfg.routes_file)
    cfg.envoy_dir.mkdir(parents=True, exist_ok=True)
    cfg.logs_dir.mkdir(parents=True, exist_ok=True)
    cfg.jwks_file.unlink(missing_ok=True)
    cfg.migration_applied_file.unlink(missing_ok=True)
    write_static(cfg, table, coexist=coexistence(cfg))
    write_endpoints(cfg, table, [])
    return envoy_argv(cfg.bootstrap_file, log_level=cfg.log_level)


async def run_control_plane(cfg: GatewayConfig, registry: RegistryClient,
                            stop_event: asyncio.Event,
                            splits: TrafficSplits | None = None) -> None:
    """Keep the EDS files in step with the registry, the listener's keys in step with
    identity's JWKS and the routes' weights in step with ``splits``, until ``stop_event``
    is set."""
    table = load_routes(cfg.routes_file)
    seen = _Seen(jwks=_saved_jwks(cfg), splits=splits or TrafficSplits())
    seen.rendered_splits = seen.splits.snapshot()
    seen.rendered_coexistence = coexistence(cfg)
    write_static(cfg, table, seen.jwks, seen.rendered_splits, seen.rendered_coexistence)
    wake = asyncio.Event()
    watcher = asyncio.create_task(_watch(registry, wake), name="gateway-registry-watch")
    keys = asyncio.create_task(_keep_keys(cfg, table, seen, stop_event), name="gateway-jwks")
    stopping = asyncio.create_task(stop_event.wait(), name="gateway-stop")
    try:
        while not stop_event.is_set():
            wake.clear()
            seen.splits.changed.clear()
            await _sync(cfg, table, registry, seen)
            waker = asyncio.create_task(wake.wait())
            split_changed = asyncio.create_task(seen.splits.changed.wait())
            await asyncio.wait({waker, split_changed, stopping}, timeout=cfg.resync_every_s,
                               return_when=asyncio.FIRST_COMPLETED)
            waker.cancel()
            split_changed.cancel()
    finally:
        for task in (watcher, keys, stopping):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _sync(cfg: GatewayConfig, table: RouteTable, registry: RegistryClient,
                seen: _Seen) -> None:
    try:
        # Bounded: a hung broker would otherwise hold every pass (and the keys' view of
        # identity's instances) for as long as it hangs.
        instances = await asyncio.wait_for(registry.instances(), REGISTRY_TIMEOUT_S)
    except Exception as exc:
        # Keep serving the last known endpoints: an unreachable registry says nothing about
        # whether the services are up, and emptying every cluster would take the site down.
        seen.registry_trouble_at = time.monotonic()
        log.warning("gateway.registry_unavailable", error=repr(exc))
        # The migration's switches need no registry: a rollback to the monolith must reach
        # the edge while the broker is down too.
        coexist = coexistence(cfg)
        if coexist != seen.rendered_coexistence:
            seen.rendered_coexistence = coexist
            write_static(cfg, table, seen.jwks, seen.rendered_splits, coexist)
        return
    if time.monotonic() - seen.registry_trouble_at < REJOIN_GRACE_S:
        instances = _keep_missing(instances, seen.instances)
    seen.instances = instances
    splits = seen.splits.snapshot()
    # Endpoints before routes: a new cluster has its hosts before any route names it.
    changed = write_endpoints(cfg, table, instances, splits)
    if changed:
        log.info("gateway.endpoints_updated", clusters=changed)
    coexist = coexistence(cfg)
    if splits == seen.rendered_splits and coexist == seen.rendered_coexistence:
        return
    seen.rendered_splits = splits
    seen.rendered_coexistence = coexist
    routed = write_static(cfg, table, seen.jwks, splits, coexist)
    if routed:
        log.info("gateway.routes_updated", files=[p.name for p in routed],
                 splits={s: {"weight": x.weight, "new": sorted(x.new),
                             "promoting": x.promoting} for s, x in splits.items()})


def _keep_missing(listed: list[Instance], before: list[Instance]) -> list[Instance]:
    """``listed`` plus the instances of ``before`` it lacks (an instance listed again, maybe
    restarted on another port, is taken as listed). Envoy's health checks still take out any
    of them that is really gone."""
    keys = {i.key for i in listed}
    return listed + [i for i in before if i.key not in keys]


# -- signing keys ----------------------------------------------------------------------------

def _usable_jwks(document: Any) -> dict[str, Any] | None:
    """The RS256 signing keys of a JWKS, in a stable order; None if it holds none.

    Only what Envoy needs is kept: one malformed or foreign key must not make Envoy reject
    the whole listener, and the same keys must always render the same bytes.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        return None
    keys = []
    for jwk in document["keys"]:
        if not isinstance(jwk, dict) or jwk.get("kty") != "RSA":
            continue
        if jwk.get("alg", "RS256") != "RS256" or jwk.get("use", "sig") != "sig":
            continue
        if not all(isinstance(jwk.get(f), str) and jwk[f] for f in ("kid", "n", "e")):
            continue
        keys.append({"kty": "RSA", "kid": jwk["kid"], "alg": "RS256", "use": "sig",
                     "n": jwk["n"], "e": jwk["e"]})
    if not keys:
        return None
    return {"keys": sorted(keys, key=lambda k: k["kid"])}


def _saved_jwks(cfg: GatewayConfig) -> dict[str, Any] | None:
    try:
        return _usable_jwks(json.loads(cfg.jwks_file.read_text()))
    except (OSError, ValueError):
        return None


async def _fetch_jwks(http: aiohttp.ClientSession, table: RouteTable,
                      instances: Sequence[Instance]) -> dict[str, Any] | None:
    """identity's keys, from the first of its instances that answers; None if none does."""
    for instance in (i for i in instances if i.service == table.jwt.jwks_service):
        try:
            async with http.get(f"{instance.base_url}{table.jwt.jwks_path}") as resp:
                if resp.status != 200:
                    continue
                keys = _usable_jwks(await resp.json(content_type=None))
        except (aiohttp.ClientError, TimeoutError, ValueError):
            continue
        if keys is not None:
            return keys
    return None


async def _keep_keys(cfg: GatewayConfig, table: RouteTable, seen: _Seen,
                     stop_event: asyncio.Event) -> None:
    timeout = aiohttp.ClientTimeout(total=2, connect=1)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        while not stop_event.is_set():
            try:
                fetched = await _fetch_jwks(http, table, seen.instances)
                if fetched is not None and fetched != seen.jwks:
                    write_static(cfg, table, fetched, seen.splits.snapshot(),
                                 seen.rendered_coexistence)
                    write_if_changed(cfg.jwks_file, json.dumps(fetched, indent=1) + "\n")
                    log.info("gateway.jwks_updated",
                             kids=[k["kid"] for k in fetched["keys"]],
                             first=seen.jwks is None)
                    seen.jwks = fetched
            except Exception as exc:  # never let the keys loop die: the edge needs it
                log.warning("gateway.jwks_refresh_failed", error=repr(exc))
            wait = table.jwt.refresh_s if seen.jwks is not None else cfg.jwks_retry_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_event.wait(), wait)


def _heartbeat_only(entry: KeyValue.Entry | None, known: dict[str, object]) -> bool:
    """True when ``entry`` only refreshes a known instance's heartbeat: the same process at
    the same address. Those are most of the registry's writes (every instance beats every few
    seconds) and change no endpoint; re-listing the registry and rendering every cluster on
    each cost the supervisor more than anything else it did idle (ADR 0037). Freshness is
    still judged by the periodic resync."""
    if entry is None or entry.key is None:
        return False
    if entry.operation in ("DEL", "PURGE") or not entry.value:
        known.pop(entry.key, None)
        return False
    try:
        fields = orjson.loads(entry.value)
        where = (fields["host"], fields["port"], fields["pid"], fields["started_at"])
    except (orjson.JSONDecodeError, TypeError, KeyError):
        return False
    before, known[entry.key] = known.get(entry.key), where
    return before == where


async def _watch(registry: RegistryClient, wake: asyncio.Event) -> None:
    backoff = 0.5
    known: dict[str, object] = {}
    while True:
        try:
            async for entry in registry.changes():
                backoff = 0.5
                if not _heartbeat_only(entry, known):
                    wake.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The periodic resync still runs; the watch only makes changes show up sooner.
            log.warning("gateway.registry_watch_failed", error=repr(exc), retry_in_s=backoff)
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, 10.0)
