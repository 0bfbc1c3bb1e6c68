"""prepare() and the control plane loop over a fake registry: what gets written, and when."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from chassis.registry import Instance
from gateway_test_support import wait_for
from mercato.gateway import GatewayConfig, prepare, run_control_plane
from mercato.gateway.files import write_if_changed


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
    assert names == sorted(["bootstrap.yaml", "cds.yaml", *eds, "lds.yaml"])
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


async def test_an_unreachable_registry_keeps_the_last_endpoints(tmp_path: Path) -> None:
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
