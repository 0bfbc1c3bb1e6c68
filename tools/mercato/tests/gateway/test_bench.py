"""The gateway benchmark: reading the platform's state, the raw client's HTTP parsing, and a
short real run against Envoy and a stand-in catalog."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiohttp import web
from chassis.registry import Instance
from gateway_test_support import die_with_parent, free_port, start_envoy, stop_process
from mercato.bench.gateway import BenchError, read_targets, run_gateway_bench
from mercato.bench.loadgen import run as loadgen_run
from mercato.gateway.control import write_endpoints
from mercato.gateway.routes import load_routes


def _write_home(home: Path, *, edge: int, catalog: dict[str, dict[str, object]],
                envoy_pid: int | None = 4242) -> None:
    """A home shaped like the supervisor's (mercato.runtime.supervisor.write_state)."""
    (home / "run").mkdir(parents=True, exist_ok=True)
    (home / "config.json").write_text(json.dumps({"ports": {"edge": edge, "envoy_admin": 1}}))
    processes: dict[str, dict[str, object]] = {
        "postgres": {"kind": "engine", "service": None, "pid": 1, "port": 5, "state": "ready"},
        "envoy": {"kind": "gateway", "service": None, "pid": envoy_pid, "port": edge,
                  "state": "ready"},
    }
    for name, proc in catalog.items():
        processes[name] = {"kind": "service", "service": "catalog", "state": "ready", **proc}
    (home / "run" / "state.json").write_text(json.dumps({
        "version": 1, "phase": "ready", "ports": {"edge": edge}, "processes": processes}))


def test_targets_come_from_state_and_config(tmp_path: Path) -> None:
    _write_home(tmp_path, edge=8080, catalog={
        "catalog-2": {"pid": 12, "port": 7002},
        "catalog-1": {"pid": 11, "port": 7001, "state": "restarting"},
    })
    targets = read_targets(tmp_path)
    # The first ready instance; the edge URL uses the loopback address Envoy listens on.
    assert targets.instance == "catalog-2"
    assert targets.direct_url == "http://127.0.0.1:7002/api/catalog/products?page_size=20"
    assert targets.edge_url == "http://127.0.0.1:8080/api/catalog/products?page_size=20"
    assert (targets.service_pid, targets.envoy_pid, targets.catalog_instances) == (12, 4242, 2)


def test_not_running_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="mercato up"):
        read_targets(tmp_path)
    _write_home(tmp_path, edge=8080, catalog={})
    with pytest.raises(BenchError, match="no catalog instance"):
        read_targets(tmp_path)
    assert run_gateway_bench(tmp_path, duration_s=0.1, reports_dir=tmp_path / "r") == 2


async def test_raw_client_parses_content_length_chunked_and_close() -> None:
    async def fixed(_: web.Request) -> web.Response:
        return web.json_response({"x": "y" * 300})

    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for part in (b"a" * 10, b"b" * 5000, b"c"):
            await resp.write(part)
        await resp.write_eof()
        return resp

    async def closing(_: web.Request) -> web.Response:
        return web.Response(text="bye", headers={"Connection": "close"}, status=201)

    app = web.Application()
    app.router.add_get("/fixed", fixed)
    app.router.add_get("/chunked", chunked)
    app.router.add_get("/close", closing)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        for path, status in (("/fixed", "200"), ("/chunked", "200"), ("/close", "201")):
            result = await loadgen_run(f"http://127.0.0.1:{port}{path}", connections=4,
                                       duration=0.5, warmup=0.1, client="raw")
            assert result["errors"] == 0, (path, result)
            assert result["requests"] > 20, (path, result)
            assert set(result["statuses"]) == {status}, (path, result)
            other = await loadgen_run(f"http://127.0.0.1:{port}{path}", connections=4,
                                      duration=0.5, warmup=0.1, client="aiohttp")
            assert other["errors"] == 0 and set(other["statuses"]) == {status}
    finally:
        await runner.cleanup()


@pytest.mark.integration
def test_short_run_against_envoy_and_a_stand_in_catalog(tmp_path: Path) -> None:
    port = free_port()
    standin = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("standin_catalog.py")), str(port), "-",
         "catalog-1"], preexec_fn=die_with_parent)
    edge = start_envoy(tmp_path / "platform")
    try:
        now = time.time()
        write_endpoints(edge.cfg, load_routes(),
                        [Instance("catalog", "catalog-1", "127.0.0.1", port, standin.pid, now,
                                  now)])
        home = tmp_path / "home"
        _write_home(home, edge=edge.cfg.edge_port,
                    catalog={"catalog-1": {"pid": standin.pid, "port": port}},
                    envoy_pid=edge.proc.pid)

        async def through_edge() -> None:
            import aiohttp

            deadline = time.monotonic() + 20
            async with aiohttp.ClientSession() as http:
                while time.monotonic() < deadline:
                    try:
                        async with http.get(f"{edge.url}/api/catalog/products") as resp:
                            if resp.status == 200:
                                return
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.1)
            raise AssertionError("stand-in catalog not reachable through the edge")

        asyncio.run(through_edge())
        reports = tmp_path / "reports"
        code = run_gateway_bench(home, duration_s=1.0, connections=4, repeats=2, warmup_s=0.5,
                                 reports_dir=reports)
        assert code == 0
        (report_file,) = reports.glob("gateway-*.json")
        report = json.loads(report_file.read_text())
        assert [p["side"] for p in report["phases"]] == ["direct", "edge", "edge", "direct"]
        for side in ("direct", "edge"):
            assert report[side]["rps"] > 50, report[side]
            assert report[side]["errors"] == 0 and report[side]["non_200"] == 0
            assert report[side]["p99_ms"] >= report[side]["p50_ms"] > 0
        assert report["edge"]["envoy_us_per_req"] > 0 and report["ratio"] > 0
        assert report["machine"]["cpus"] and report["client"] == "raw"
    finally:
        stop_process(edge.proc)
        stop_process(standin)
