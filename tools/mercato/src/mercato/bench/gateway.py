"""``mercato bench gateway``: what the edge costs, measured against a running platform.

The same request, ``GET /api/catalog/products?page_size=20``, is sent straight to one catalog
instance and through Envoy, by the same client with the same closed-loop load (fixed
connections, fixed duration). Phases alternate (direct, edge, edge, direct, ...) after a
warm-up of each, so drift in the machine's load hits both sides alike; each side's numbers
are the median over the repeats. The result is printed as a table and saved as JSON under
``bench/reports/`` in the checkout.

Choosing the load generator. The machine has 2 cores shared by the client, Envoy and the
service, so every microsecond the client spends is taken from what it measures. Measured here
(2 vCPU, 16 connections, 3 alternating 4 s runs per cell, medians) against a FastAPI/uvicorn
stand-in that serves the same page without a database (~165 us CPU per request):

==============================  ==============  ============  ==========
client, in its own process      client CPU/req  direct req/s  edge req/s
==============================  ==============  ============  ==========
aiohttp ClientSession           123-143 us      2,536         1,669
raw asyncio Protocol on uvloop  36-38 us        3,731         2,784
==============================  ==============  ============  ==========

The aiohttp client burns 3.5x the CPU per request and costs about a third of the measured
throughput, so the raw client (pre-encoded request; parses the status line, Content-Length
or chunked framing and nothing else) is the default; ``client="aiohttp"`` remains for
cross-checking. ``wrk`` is not installed and not needed.

Reading the result: Envoy 1.40 costs ~135 us CPU per proxied request on this machine (~110 us
with a bare router-only config; the access log and the jwt_authn, rate-limit and buffer
filters add the rest). Against the database-less stand-in that is almost as much as the
service itself, and the ratio lands near 0.75. Against the real catalog (~3.2 ms CPU per page
of 20 products, ~300 req/s) the service dominates: two runs gave 1.18 and 1.00. Client, service and
Envoy CPU per request are reported next to throughput so a miss can be traced; other load on
the machine moves single runs by +-30 %, hence alternation and medians.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PATH = "/api/catalog/products?page_size=20"
TARGET_RATIO = 0.9


class BenchError(Exception):
    pass


@dataclass(frozen=True)
class Targets:
    direct_url: str
    edge_url: str
    instance: str
    catalog_instances: int
    service_pid: int | None
    envoy_pid: int | None


@dataclass
class Phase:
    side: str  # direct | edge
    result: dict[str, Any]
    cpu_s: dict[str, float] = field(default_factory=dict)

    def per_request_us(self, who: str) -> float | None:
        n = self.result["requests"]
        if who == "client":
            cpu = float(self.result["client_cpu_s"])
        elif who in self.cpu_s:
            cpu = self.cpu_s[who]
        else:
            return None
        return cpu / n * 1e6 if n else None


def _load_json(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError as exc:
        raise BenchError(f"{path} not found: is the platform running (mercato up)?") from exc
    except ValueError as exc:
        raise BenchError(f"{path} is not valid JSON: {exc}") from exc


def read_targets(home: Path) -> Targets:
    """Where to send load, from the supervisor's ``run/state.json`` and ``config.json``."""
    state = _load_json(home / "run" / "state.json")
    config = _load_json(home / "config.json")
    edge_port = (config.get("ports") or {}).get("edge") or (state.get("ports") or {}).get("edge")
    if not isinstance(edge_port, int):
        raise BenchError(f"no edge port in {home / 'config.json'}")
    processes: dict[str, dict[str, Any]] = state.get("processes") or {}
    catalog = sorted((name, p) for name, p in processes.items()
                     if p.get("service") == "catalog" and isinstance(p.get("port"), int))
    if not catalog:
        raise BenchError("no catalog instance in run/state.json; is the platform up?")
    ready = [(n, p) for n, p in catalog if p.get("state") in (None, "ready")] or catalog
    name, proc = ready[0]
    envoy = next((p for p in processes.values() if p.get("kind") == "gateway"), {})
    return Targets(direct_url=f"http://127.0.0.1:{proc['port']}{PATH}",
                   edge_url=f"http://127.0.0.1:{edge_port}{PATH}",
                   instance=name, catalog_instances=len(catalog),
                   service_pid=proc.get("pid"), envoy_pid=envoy.get("pid"))


def _cpu_seconds(pid: int | None) -> float | None:
    if pid is None:
        return None
    import psutil

    try:
        t = psutil.Process(pid).cpu_times()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return float(t.user + t.system)


def run_phase(side: str, url: str, *, connections: int, duration_s: float, warmup_s: float,
              client: str, pids: dict[str, int | None]) -> Phase:
    """One load generator process; CPU of ``pids`` sampled over exactly its window."""
    argv = [sys.executable, "-m", "mercato.bench.loadgen", "--url", url,
            "--connections", str(connections), "--duration", str(duration_s),
            "--warmup", str(warmup_s), "--client", client]
    before: dict[str, float | None] = {}
    after: dict[str, float | None] = {}
    result: dict[str, Any] | None = None
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)  # noqa: S603
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.strip()
            if line == "measure-start":
                before = {who: _cpu_seconds(pid) for who, pid in pids.items()}
            elif line == "measure-end":
                after = {who: _cpu_seconds(pid) for who, pid in pids.items()}
            elif line.startswith("{"):
                result = json.loads(line)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0 or result is None:
        raise BenchError(f"load generator failed (exit {proc.returncode}) against {url}")
    cpu = {who: float(after[who]) - float(b)  # type: ignore[arg-type]
           for who, b in before.items() if b is not None and after.get(who) is not None}
    return Phase(side=side, result=result, cpu_s=cpu)


def _preflight(url: str) -> None:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - our own URL
            if resp.status != 200:
                raise BenchError(f"GET {url} answered {resp.status}")
    except OSError as exc:
        raise BenchError(f"GET {url} failed: {exc}") from exc


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarise(phases: list[Phase], side: str) -> dict[str, Any]:
    mine = [p for p in phases if p.side == side]
    return {
        "runs": len(mine),
        "rps": _median([p.result["rps"] for p in mine]),
        "p50_ms": _median([p.result["p50_ms"] for p in mine]),
        "p99_ms": _median([p.result["p99_ms"] for p in mine]),
        "errors": sum(p.result["errors"] for p in mine),
        "non_200": sum(v for p in mine for k, v in p.result["statuses"].items() if k != "200"),
        "client_us_per_req": _median([p.per_request_us("client") for p in mine]),
        "service_us_per_req": _median([p.per_request_us("service") for p in mine]),
        "envoy_us_per_req": _median([p.per_request_us("envoy") for p in mine]),
        "rps_each": [round(p.result["rps"], 1) for p in mine],
    }


def default_reports_dir() -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        pyproject = parent / "pyproject.toml"
        if pyproject.is_file() and "[tool.uv.workspace]" in pyproject.read_text():
            return parent / "bench" / "reports"
    return Path.cwd() / "bench" / "reports"


def _envoy_version() -> str | None:
    try:
        from mercato.gateway.envoy import envoy_path

        out = subprocess.run([envoy_path(), "--version"], capture_output=True,  # noqa: S603
                             text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError, ImportError):
        return None
    return out.strip().split("version:")[-1].strip() or None


def _print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    def num(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    console = Console()
    table = Table(title=f"GET {PATH}",
                  caption=f"{report['connections']} connections, {report['duration_s']:g} s x "
                          f"{report['repeats']} runs per side (medians), client: "
                          f"{report['client']}; direct = {report['instance']}")
    for col in ("path", "req/s", "p50\nms", "p99\nms", "errors",
                "client\nCPU us/req", "service\nCPU us/req", "envoy\nCPU us/req"):
        table.add_column(col, justify="left" if col == "path" else "right")
    for side in ("direct", "edge"):
        s = report[side]
        table.add_row(side, num(s["rps"], ",.0f"), num(s["p50_ms"], ".2f"),
                      num(s["p99_ms"], ".2f"), str(s["errors"] + s["non_200"]),
                      num(s["client_us_per_req"], ".0f"), num(s["service_us_per_req"], ".0f"),
                      num(s["envoy_us_per_req"], ".0f"))
    console.print(table)
    ratio = report["ratio"]
    ok = ratio is not None and ratio >= TARGET_RATIO
    style = "green" if ok else "yellow"
    console.print(f"edge/direct throughput: [{style}]{num(ratio, '.3f')}[/{style}] "
                  f"(target >= {TARGET_RATIO})")
    if report["catalog_instances"] > 1:
        console.print(f"[yellow]note:[/yellow] the edge spreads load over "
                      f"{report['catalog_instances']} catalog instances, direct hits one")
    console.print(f"report: {report['report_file']}")


def run_gateway_bench(home: Path, duration_s: float = 10, connections: int = 16, *,
                      repeats: int = 3, warmup_s: float = 2.0, client: str = "raw",
                      reports_dir: Path | None = None) -> int:
    """Measure direct vs edge; print the table, save the JSON report; 0 when measured."""
    from rich.console import Console

    console = Console(stderr=True)
    try:
        targets = read_targets(Path(home))
        _preflight(targets.direct_url)
        _preflight(targets.edge_url)
    except BenchError as exc:
        console.print(f"[red]bench gateway:[/red] {exc}")
        return 2
    pids = {"service": targets.service_pid, "envoy": targets.envoy_pid}
    urls = {"direct": targets.direct_url, "edge": targets.edge_url}
    load_before = os.getloadavg()
    phases: list[Phase] = []
    try:
        # A discarded first pass per side: connection pools, caches and the JIT-less
        # interpreter's own warm-up (imports, first allocations) settle before measuring.
        for side in ("direct", "edge"):
            run_phase(side, urls[side], connections=connections, duration_s=warmup_s,
                      warmup_s=0.5, client=client, pids={})
        for i in range(repeats):
            order = ("direct", "edge") if i % 2 == 0 else ("edge", "direct")
            for side in order:
                console.print(f"  {side} run {i + 1}/{repeats} ...")
                phases.append(run_phase(side, urls[side], connections=connections,
                                        duration_s=duration_s, warmup_s=1.0, client=client,
                                        pids=pids))
    except BenchError as exc:
        console.print(f"[red]bench gateway:[/red] {exc}")
        return 1
    direct, edge = summarise(phases, "direct"), summarise(phases, "edge")
    ratio = edge["rps"] / direct["rps"] if direct["rps"] and edge["rps"] else None
    now = datetime.now(UTC)
    out_dir = reports_dir or default_reports_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    report_file = out_dir / f"gateway-{now.strftime('%Y%m%dT%H%M%SZ')}.json"
    report: dict[str, Any] = {
        "benchmark": "gateway", "at": now.isoformat(), "path": PATH,
        "connections": connections, "duration_s": duration_s, "repeats": repeats,
        "client": client, "instance": targets.instance,
        "catalog_instances": targets.catalog_instances,
        "direct": direct, "edge": edge, "ratio": ratio, "target_ratio": TARGET_RATIO,
        "meets_target": ratio is not None and ratio >= TARGET_RATIO,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(), "envoy": _envoy_version(),
                    "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
        "phases": [{"side": p.side, **p.result, "cpu_s": p.cpu_s} for p in phases],
        "report_file": str(report_file),
    }
    report_file.write_text(json.dumps(report, indent=2) + "\n")
    _print_report(report)
    return 0


if __name__ == "__main__":  # pragma: no cover - convenience for running without the CLI
    code = run_gateway_bench(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".mercato"))
    raise SystemExit(code)
