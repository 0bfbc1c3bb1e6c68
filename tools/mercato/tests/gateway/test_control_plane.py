"""prepare() and the control plane loop over a fake registry: what gets written, and when."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from chassis.registry import Instance
from gateway_test_support import Signer, start_identity, wait_for
from mercato.gateway import GatewayConfig, control, files, prepare, render, run_control_plane
from mercato.gateway.files import write_doc, write_if_changed
from nats.js.kv import KeyValue


def _instance(service: str, n: int, port: int) -> Instance:
    now = time.time()
    return Instance(service=service, instance_id=f"{service}-{n}", host="127.0.0.1", port=port,
                    pid=n, started_at=now, heartbeat_at=now)


class FakeRegistry:
    """The two RegistryClient methods the control plane uses, driven by the test."""

    def __init__(self) -> None:
        self.current: list[Instance] = []
        self.fail = False
        self.lists = 0
        self._events: asyncio.Queue[None] = asyncio.Queue()

    def set(self, instances: list[Instance], *, notify: bool) -> None:
        self.current = list(instances)
        if notify:
            self._events.put_nowait(None)

    async def instances(self, service: str | None = None) -> list[Instance]:
        self.lists += 1
        if self.fail:
            raise ConnectionError("registry down")
        return [i for i in self.current if service is None or i.service == service]

    async def changes(self) -> AsyncIterator[None]:
        while True:
            await self._events.get()
            yield None


def _cfg(tmp_path: Path, resync: float = 60.0) -> GatewayConfig:
    return GatewayConfig(envoy_dir=tmp_path / "envoy", logs_dir=tmp_path / "logs",
                         edge_port=18080, admin_port=19901, resync_every_s=resync)


def _ports(cfg: GatewayConfig, service: str) -> list[int]:
    doc = yaml.safe_load((cfg.envoy_dir / f"eds-{service}.yaml").read_text())
    cla = doc["resources"][0]
    return [e["endpoint"]["address"]["socket_address"]["port_value"]
            for group in cla["endpoints"] for e in group["lb_endpoints"]]


@contextlib.asynccontextmanager
async def running(cfg: GatewayConfig, registry: FakeRegistry) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(run_control_plane(cfg, registry, stop))  # type: ignore[arg-type]
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


def test_prepare_writes_every_file_and_returns_the_envoy_argv(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    argv = prepare(cfg)
    names = sorted(p.name for p in cfg.envoy_dir.iterdir())
    from mercato.gateway.routes import load_routes

    eds = [f"eds-{service}.yaml" for service in load_routes().services]
    assert names == sorted(["bootstrap.yaml", "cds.yaml", *eds, "lds.yaml", "rds.yaml"])
    assert _jwks(cfg) is None  # no keys yet: routes that need a user answer 503
    assert argv[1:3] == ["-c", str(cfg.bootstrap_file)]
    assert argv[argv.index("--concurrency") + 1] == "1"
    assert argv[argv.index("--log-level") + 1] == "warn"
    assert _ports(cfg, "catalog") == []
    assert cfg.logs_dir.is_dir()


def test_prepare_again_leaves_unchanged_files_untouched(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    prepare(cfg)
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in cfg.envoy_dir.iterdir()}
    prepare(cfg)
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in cfg.envoy_dir.iterdir()}
    assert after == before


def test_changed_content_replaces_the_file_by_rename(tmp_path: Path) -> None:
    path = tmp_path / "eds-x.yaml"
    assert write_if_changed(path, "a: 1\n")
    inode = path.stat().st_ino
    assert not write_if_changed(path, "a: 1\n")
    assert path.stat().st_ino == inode
    assert write_if_changed(path, "a: 2\n")
    # A new inode proves a rename, not an in-place edit (which Envoy would not notice).
    assert path.stat().st_ino != inode
    assert path.read_text() == "a: 2\n"
    assert os.listdir(tmp_path) == ["eds-x.yaml"]


async def test_registry_changes_are_rendered_at_once(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, resync=60.0)  # a long resync: only the change event can explain it
    prepare(cfg)
    registry = FakeRegistry()
    registry.set([_instance("catalog", 1, 7001)], notify=False)
    async with running(cfg, registry):
        await wait_for(lambda: _async(_ports(cfg, "catalog") == [7001]), 3, "first render")
        registry.set([_instance("catalog", 1, 7001), _instance("catalog", 2, 7002),
                      _instance("identity", 1, 7101), _instance("wishlist", 1, 7201)], notify=True)
        took = await wait_for(lambda: _async(_ports(cfg, "catalog") == [7001, 7002]), 3,
                              "re-render on change")
        assert took < 1.0
        assert _ports(cfg, "identity") == [7101]
        # No route names wishlist, so it gets no cluster and no file.
        assert not (cfg.envoy_dir / "eds-wishlist.yaml").exists()


async def test_periodic_resync_catches_silent_expiry(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, resync=0.2)
    prepare(cfg)
    registry = FakeRegistry()
    registry.set([_instance("catalog", 1, 7001), _instance("catalog", 2, 7002)], notify=False)
    async with running(cfg, registry):
        await wait_for(lambda: _async(_ports(cfg, "catalog") == [7001, 7002]), 3, "render")
        # A heartbeat going stale produces no event; only the resync sees it.
        registry.set([_instance("catalog", 1, 7001)], notify=False)
        await wait_for(lambda: _async(_ports(cfg, "catalog") == [7001]), 3, "resync")


def test_an_unchanged_document_is_not_even_rendered(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    rendered: list[object] = []
    dump = files.dump

    def counted(doc: object) -> str:
        rendered.append(doc)
        return dump(doc)

    monkeypatch.setattr(files, "dump", counted)
    path = tmp_path / "eds-x.yaml"
    doc: dict[str, Any] = {"resources": [{"cluster_name": "x", "endpoints": [{"port": 1}]}]}
    assert write_doc(path, doc)
    for _ in range(3):  # the control plane's resyncs of an unchanged cluster
        assert not write_doc(path, {"resources": [{"cluster_name": "x",
                                                   "endpoints": [{"port": 1}]}]})
    assert len(rendered) == 1
    doc["resources"][0]["endpoints"][0]["port"] = 2  # the caller's object changing later
    assert write_doc(path, doc)
    assert yaml.safe_load(path.read_text()) == doc
    assert len(rendered) == 2


@pytest.mark.parametrize("behind_its_back", ["removed", "replaced"])
def test_a_file_changed_behind_its_back_is_written_again(tmp_path: Path,
                                                        behind_its_back: str) -> None:
    path = tmp_path / "eds-x.yaml"
    doc = {"resources": [{"cluster_name": "x"}]}
    assert write_doc(path, doc)
    if behind_its_back == "removed":
        path.unlink()
    else:
        write_if_changed(path, "resources: []\n")
    assert write_doc(path, doc)
    assert yaml.safe_load(path.read_text()) == doc


async def test_unchanged_registry_rewrites_nothing(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, resync=0.05)
    prepare(cfg)
    registry = FakeRegistry()
    registry.set([_instance("catalog", 1, 7001)], notify=False)
    async with running(cfg, registry):
        await wait_for(lambda: _async(_ports(cfg, "catalog") == [7001]), 3, "render")
        stamp = {p.name: p.stat().st_ino for p in cfg.envoy_dir.iterdir()}
        lists = registry.lists
        await wait_for(lambda: _async(registry.lists >= lists + 5), 3, "several resyncs")
        # Heartbeats change the registry every few seconds but not the endpoints.
        registry.set([_instance("catalog", 1, 7001)], notify=True)
        await wait_for(lambda: _async(registry.lists >= lists + 7), 3, "more resyncs")
        assert {p.name: p.stat().st_ino for p in cfg.envoy_dir.iterdir()} == stamp


async def test_an_unreachable_registry_keeps_the_last_endpoints(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(control, "REJOIN_GRACE_S", 0.5)
    cfg = _cfg(tmp_path, resync=0.05)
    prepare(cfg)
    registry = FakeRegistry()
    registry.set([_instance("catalog", 1, 7001)], notify=False)
    async with running(cfg, registry):
        await wait_for(lambda: _async(_ports(cfg, "catalog") == [7001]), 3, "render")
        registry.fail = True
        lists = registry.lists
        await wait_for(lambda: _async(registry.lists >= lists + 5), 3, "failed resyncs")
        assert _ports(cfg, "catalog") == [7001]
        registry.fail = False
        registry.set([], notify=False)
        await wait_for(lambda: _async(_ports(cfg, "catalog") == []), 3, "recovery")


async def test_after_a_registry_outage_missing_instances_stay_until_they_could_beat_again(
        tmp_path: Path) -> None:
    """During the outage no heartbeat could be written: when the registry answers again its
    entries look stale (or expired), and it lists none of the instances that kept serving
    all along. Emptying the clusters then would take the site down just as it recovers."""
    cfg = _cfg(tmp_path, resync=0.05)
    prepare(cfg)
    registry = FakeRegistry()
    registry.set([_instance("catalog", 1, 7001), _instance("catalog", 2, 7002)], notify=False)
    async with running(cfg, registry):
        await wait_for(lambda: _async(_ports(cfg, "catalog") == [7001, 7002]), 3, "render")
        registry.fail = True
        lists = registry.lists
        await wait_for(lambda: _async(registry.lists >= lists + 3), 3, "failed resyncs")
        # Back, with only the entry that has beaten since (catalog-2 restarted elsewhere).
        registry.set([_instance("catalog", 2, 7012)], notify=False)
        registry.fail = False
        lists = registry.lists
        await wait_for(lambda: _async(registry.lists >= lists + 5), 3, "resyncs after it")
        assert _ports(cfg, "catalog") == [7001, 7012]
        assert _ports(cfg, "identity") == []


async def test_keys_are_rendered_once_identity_answers_and_kept_while_it_cannot(
        tmp_path: Path) -> None:
    cfg = GatewayConfig(envoy_dir=tmp_path / "envoy", logs_dir=tmp_path / "logs",
                        edge_port=18080, admin_port=19901, resync_every_s=0.05,
                        jwks_retry_s=0.05)
    prepare(cfg)
    signer = Signer()
    registry = FakeRegistry()
    async with running(cfg, registry):
        identity = await start_identity(signer)
        try:
            registry.set([_instance("identity", 1, identity.port)], notify=True)
            await wait_for(lambda: _async(_jwks(cfg) == _published(signer)), 15, "the keys")
            assert json.loads(cfg.jwks_file.read_text()) == _published(signer)
        finally:
            await identity.close()
        # identity gone: the edge keeps checking tokens with the keys it has.
        lists = registry.lists
        await wait_for(lambda: _async(registry.lists >= lists + 5), 3, "resyncs")
        assert _jwks(cfg) == _published(signer)
    # A control plane started again (the supervisor restarts it) starts from those keys.
    async with running(cfg, FakeRegistry()):
        assert _jwks(cfg) == _published(signer)
    prepare(cfg)  # a new platform start does not
    assert _jwks(cfg) is None and not cfg.jwks_file.exists()


def _published(signer: Signer) -> dict:
    """The signer's JWKS as the edge is handed it: each key's RS256 fields, by kid."""
    (jwk,) = signer.jwks()["keys"]
    return {"keys": [{"kty": "RSA", "kid": jwk["kid"], "alg": "RS256", "use": "sig",
                      "n": jwk["n"], "e": jwk["e"]}]}


def _jwks(cfg: GatewayConfig) -> dict | None:
    lds = yaml.safe_load((cfg.envoy_dir / "lds.yaml").read_text())
    hcm = lds["resources"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    jwt = next((f for f in hcm["http_filters"] if f["name"] == render.JWT_FILTER), None)
    if jwt is None:
        return None
    provider = jwt["typed_config"]["providers"][render.JWT_PROVIDER]
    return dict(json.loads(provider["local_jwks"]["inline_string"]))


async def test_stop_event_ends_the_loop_promptly(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, resync=60.0)
    prepare(cfg)
    stop = asyncio.Event()
    task = asyncio.create_task(run_control_plane(cfg, FakeRegistry(), stop))  # type: ignore[arg-type]
    await asyncio.sleep(0.1)
    start = time.monotonic()
    stop.set()
    await asyncio.wait_for(task, 2)
    assert time.monotonic() - start < 0.5


@pytest.mark.parametrize("bad", ["routes: []\n", "routes: [{prefix: /a, service: x, auth: nobody}]\n"])
def test_a_bad_routes_file_stops_prepare(tmp_path: Path, bad: str) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(bad)
    cfg = GatewayConfig(envoy_dir=tmp_path / "envoy", logs_dir=tmp_path / "logs",
                        routes_file=routes)
    with pytest.raises(ValueError):
        prepare(cfg)


async def _async(value: bool) -> bool:
    return value


def test_only_well_formed_rs256_signing_keys_reach_envoy() -> None:
    """One odd key in identity's answer must not make Envoy refuse the whole listener."""
    good = {"kty": "RSA", "kid": "b", "n": "n1", "e": "AQAB", "alg": "RS256", "use": "sig",
            "key_ops": ["verify"], "x5c": ["..."]}
    document = {"keys": [
        good,
        {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "x", "y": "y"},
        {"kty": "RSA", "kid": "hs", "n": "n", "e": "AQAB", "alg": "HS256"},
        {"kty": "RSA", "kid": "enc", "n": "n", "e": "AQAB", "use": "enc"},
        {"kty": "RSA", "kid": "", "n": "n", "e": "AQAB"},
        {"kty": "RSA", "kid": "no-n", "e": "AQAB"},
        {"kty": "RSA", "kid": "a", "n": "n0", "e": "AQAB"},
        "not a key",
    ]}
    assert control._usable_jwks(document) == {"keys": [
        {"kty": "RSA", "kid": "a", "alg": "RS256", "use": "sig", "n": "n0", "e": "AQAB"},
        {"kty": "RSA", "kid": "b", "alg": "RS256", "use": "sig", "n": "n1", "e": "AQAB"}]}
    for nothing in ({"keys": [document["keys"][1]]}, {"keys": []}, {}, [], "x", None):
        assert control._usable_jwks(nothing) is None


class EntryRegistry(FakeRegistry):
    """Yields the entries as the registry bucket's watch does (ADR 0037)."""

    def __init__(self) -> None:
        super().__init__()
        self._entries: asyncio.Queue[KeyValue.Entry] = asyncio.Queue()

    def write(self, instance: Instance, *, operation: str | None = None) -> None:
        value = b"" if operation else json.dumps(dataclasses.asdict(instance)).encode()
        self._entries.put_nowait(KeyValue.Entry(bucket="registry", key=instance.key,
                                                value=value, revision=None, delta=None,
                                                created=None, operation=operation))

    async def changes(self) -> AsyncIterator[KeyValue.Entry | None]:  # type: ignore[override]
        while True:
            yield await self._entries.get()


async def test_a_heartbeat_does_not_make_the_control_plane_list_again(tmp_path: Path) -> None:
    """Every instance beats every few seconds; only a new, moved or gone instance re-lists."""
    cfg = _cfg(tmp_path, resync=60.0)  # no resync during the test: only the watch lists
    prepare(cfg)
    registry = EntryRegistry()
    first = _instance("catalog", 1, 7001)
    registry.set([first], notify=False)
    async with running(cfg, registry):
        await wait_for(lambda: _async(_ports(cfg, "catalog") == [7001]), 3, "first render")
        registry.write(first)  # first seen by the watch: lists
        await wait_for(lambda: _async(registry.lists >= 2), 3, "a list on a new key")
        lists = registry.lists
        for _ in range(5):
            registry.write(dataclasses.replace(first, heartbeat_at=time.time()))
        await asyncio.sleep(0.3)
        assert registry.lists == lists, "a heartbeat re-listed the registry"
        moved = dataclasses.replace(first, port=7003, heartbeat_at=time.time())
        registry.set([moved], notify=False)
        registry.write(moved)
        await wait_for(lambda: _async(_ports(cfg, "catalog") == [7003]), 3, "moved instance")
        registry.set([], notify=False)
        registry.write(moved, operation="DEL")
        await wait_for(lambda: _async(_ports(cfg, "catalog") == []), 3, "gone instance")
