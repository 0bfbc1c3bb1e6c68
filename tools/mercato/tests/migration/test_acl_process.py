"""The ACL as the supervisor starts it with `--with legacy`: its argv runs, answers its
health check and its legacy paths, and stops on SIGTERM."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
from acl_standins import Side, legacy_app, serve, services_app
from mercato.runtime.paths import Home, free_port
from mercato.runtime.supervisor import Spec, Supervisor


def _specs(tmp_path: Path, legacy_port: int, edge_port: int) -> dict[str, Spec]:
    sup = Supervisor(Home(tmp_path), services={"catalog": "catalog"}, scale={},
                     with_=["legacy"])
    sup.legacy_port, sup.acl_port = legacy_port, free_port()
    sup.ports = dataclasses.replace(sup.ports, edge=edge_port)
    sup.db_urls["legacy"] = "postgresql+asyncpg://legacy@127.0.0.1:1/legacy"
    added: dict[str, Spec] = {}

    def add(spec: Spec) -> Any:  # record what would be supervised, start nothing
        added[spec.name] = spec

    sup.add = add  # type: ignore[method-assign]
    assert sup.start_optional() == ["legacy", "acl", "sync"]
    return added


async def test_the_supervised_acl_serves_and_stops(tmp_path: Path) -> None:
    legacy, services = Side(), Side()
    async with serve(legacy_app(legacy)) as lurl, serve(services_app(services)) as surl:
        legacy_port, services_port = int(lurl.rsplit(":", 1)[1]), int(surl.rsplit(":", 1)[1])
        # The services stand-in plays the edge: the ACL reaches the services through it.
        acl = _specs(tmp_path, legacy_port, services_port)["acl"]
        port = acl.port()
        assert port is not None
        proc = subprocess.Popen(acl.argv(port))
        try:
            async with aiohttp.ClientSession() as http:
                for _ in range(100):
                    try:
                        async with http.get(f"http://127.0.0.1:{port}/health/ready") as r:
                            if r.status == 200:
                                break
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.1)
                headers = {"mercato-primary": "services", "mercato-capability": "catalog"}
                async with http.get(f"http://127.0.0.1:{port}/shop/products/8",
                                    headers=headers) as r:
                    assert r.status == 200 and (await r.json())["sku"] == "SKU-8"
                async with http.get(f"http://127.0.0.1:{port}/shop/categories") as r:
                    assert r.status == 200 and legacy.requests == [("GET", "/shop/categories")]
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(proc.wait, 10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
