"""``mercato up``, ``down``, ``status`` and ``logs``: run the platform and look inside it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import time
from typing import Annotated, Any

import psutil
import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from mercato import logview
from mercato.cli.common import HomeOpt, err, fail, home_flag, home_of, out
from mercato.runtime import control
from mercato.runtime.memory import footprint, tree
from mercato.runtime.paths import Home, port_is_free
from mercato.runtime.services import SERVICES, parse_scale, parse_with

STATE_STYLE = {"ready": "green", "starting": "yellow", "restarting": "yellow",
               "stopping": "yellow", "stopped": "dim", "failed": "bold red"}

app = typer.Typer()


# -- up ----------------------------------------------------------------------------------------


def _check_ports(home: Home, edge_port: int | None, gateway: bool) -> None:
    ports = home.ports(edge_port=edge_port)
    if gateway and not port_is_free(ports.edge, "0.0.0.0"):
        fail(f"port {ports.edge} (the edge) is in use by another program",
             f"pick another one: mercato up --port {ports.edge + 1}{home_flag(home)}", 2)
    for name, port in (("postgres", ports.postgres), ("nats", ports.nats)):
        if not port_is_free(port):
            fail(f"port {port} ({name}, saved in {home.config_file}) is in use by another "
                 "program",
                 f"stop that program, or delete the \"ports\" entry of {home.config_file} to "
                 "choose new ports (data is kept)", 2)


def _progress_table(state: dict[str, Any] | None, elapsed: float) -> Group:
    phase = (state or {}).get("phase", "launching supervisor")
    head = Text.assemble(("mercato ", "bold"), (f"{phase}", "cyan"), (f"  {elapsed:4.1f}s", "dim"))
    table = Table(box=None, pad_edge=False, show_header=False)
    table.add_column(width=2)
    table.add_column(min_width=14)
    table.add_column()
    table.add_column(justify="right")
    for name, proc in ((state or {}).get("processes") or {}).items():
        st = proc.get("state", "?")
        mark = {"ready": "[green]✓[/]", "failed": "[red]✗[/]"}.get(st, "[yellow]…[/]")
        extra = f"restarts {proc['restarts']}" if proc.get("restarts") else ""
        table.add_row(mark, name, f"[{STATE_STYLE.get(st, '')}]{st}[/]", f"[dim]{extra}[/]")
    return Group(head, table)


def _print_ready(state: dict[str, Any], took: float, home: Home) -> None:
    urls = state.get("urls") or {}
    out.print(f"[bold green]mercato is ready[/] in [bold]{took:.1f} s[/]")
    rows: list[tuple[str, str]] = []
    if "storefront" in urls:
        rows.append(("storefront", urls["storefront"]))
    if "console" in urls:
        from mercato.runtime.telemetry import console_url

        rows.append(("console", console_url(home, int(state["ports"]["console"]))))
    if "edge" in urls:
        rows.append(("edge", urls["edge"]))
        for i, (_svc, url) in enumerate((urls.get("docs") or {}).items()):
            rows.append(("API docs" if i == 0 else "", url))
        rows.append(("envoy admin", urls["envoy_admin"]))
    if "legacy" in urls:
        rows.append(("legacy shop", urls["legacy"]))
    rows += [("postgres", urls.get("postgres", "")), ("nats", urls.get("nats", ""))]
    for label, url in rows:
        out.print(f"  {label:<12} {url}")
    flag = home_flag(home)
    out.print(f"[dim]  status: mercato status{flag} · logs: mercato logs --follow{flag} · "
              f"stop: mercato down{flag}[/]")


def _explain_failure(home: Home, state: dict[str, Any] | None, reason: str) -> None:
    err.print(f"[bold red]mercato did not start:[/] {reason}")
    procs = (state or {}).get("processes") or {}
    culprit = ((state or {}).get("error") or {}).get("process")
    suspects: list[str] = [str(culprit)] if culprit in procs else [
        n for n, p in procs.items() if p.get("state") != "ready"]
    if not suspects:
        suspects = ["supervisor"]
    for name in suspects[:2]:
        path = home.log_file(name)
        lines = control.tail(path, 25)
        err.print(f"\n[bold]last lines of {path}:[/]")
        for line in lines or ["(empty)"]:
            err.print(Text(line))
    target = suspects[0] if suspects[0] != "supervisor" else ""
    svc = target.rsplit("-", 1)[0] if target and target[-1].isdigit() else target
    err.print(f"\n[dim]→[/] fix the error above, then run mercato up again. Full log: "
              f"mercato logs {svc}{home_flag(home)}".rstrip())


def _wait_until_ready(home: Home, sup: subprocess.Popen[bytes], timeout: float,
                      t0: float) -> tuple[bool, dict[str, Any] | None, str]:
    live_ok = out.is_terminal
    last_phase = None
    state: dict[str, Any] | None = None

    def poll() -> tuple[bool | None, str]:
        nonlocal state
        st = control.read_state(home)
        if st is not None and st.get("supervisor_pid") == sup.pid:
            state = st
        phase = (state or {}).get("phase")
        if phase == "ready":
            return True, ""
        if sup.poll() is not None or phase in ("failed", "stopping", "stopped"):
            error = ((state or {}).get("error") or {}).get("message")
            if error:
                return False, error
            if sup.poll() is None or sup.returncode == 0:
                return False, "it was stopped while starting (mercato down?)"
            return False, f"the supervisor exited with code {sup.returncode}"
        if time.monotonic() - t0 > timeout:
            return False, f"not ready after {timeout:.0f} s"
        return None, ""

    with Live(_progress_table(None, 0), console=out, transient=True,
              refresh_per_second=10) if live_ok else contextlib.nullcontext() as live:
        while True:
            done, why = poll()
            elapsed = time.monotonic() - t0
            if live is not None:
                live.update(_progress_table(state, elapsed))
            elif state and state.get("phase") != last_phase:
                last_phase = state.get("phase")
                out.print(f"[dim]{elapsed:5.1f}s[/] {last_phase}")
            if done is not None:
                return done, state, why
            time.sleep(0.1)


@app.command()
def up(
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Return once ready.")] = False,
    scale: Annotated[list[str] | None, typer.Option(
        "--scale", metavar="SERVICE=N",
        help="Instances of a service, like catalog=2 (repeatable).")] = None,
    port: Annotated[int | None, typer.Option(
        "--port", metavar="PORT", help="Edge port (default 8080; remembered).", min=1,
        max=65535)] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for all-ready.")] = 120.0,
    liveness_timeout: Annotated[float | None, typer.Option(
        "--liveness-timeout", metavar="SECONDS", min=0.5,
        help="Kill and restart a process whose liveness probe fails this long (default 15, "
             "or MERCATO_LIVENESS_TIMEOUT_S).", show_default=False)] = None,
    fault_proxy: Annotated[bool, typer.Option(
        "--fault-proxy", help="Route every service's PostgreSQL and NATS connections through "
        "a TCP fault proxy that mercato chaos can slow down or cut at run time.")] = False,
    no_telemetry: Annotated[bool, typer.Option(
        "--no-telemetry", help="No console and no span export (services, Envoy).")] = False,
    trace_sampling: Annotated[str, typer.Option(
        "--trace-sampling", metavar="RATIO",
        help="Share of new traces kept: 1 (all, the default), 0.1 or 10%.")] = "1",
    trace_sql: Annotated[bool, typer.Option(
        "--trace-sql", help="A span per SQL statement too (costs CPU per order).")] = False,
    trace_publish: Annotated[bool, typer.Option(
        "--trace-publish", help="A span per message the outbox publishes too, between the "
        "span that staged it and its consumer's (costs CPU per order).")] = False,
    with_: Annotated[list[str] | None, typer.Option(
        "--with", metavar="NAME", help="Also run an optional process: legacy (the monolith "
        "being migrated, its own database, on its own port).")] = None,
    home: HomeOpt = None,
    service: Annotated[list[str] | None, typer.Option("--service", hidden=True)] = None,
    no_gateway: Annotated[bool, typer.Option("--no-gateway", hidden=True)] = False,
) -> None:
    """Start PostgreSQL, NATS, the gateway, every service and the console; wait until all
    are ready."""
    from mercato.runtime.supervisor import (
        DEFAULT_LIVENESS_TIMEOUT_S,
        DEFAULT_STARTUP_TIMEOUT_S,
        LIVENESS_TIMEOUT_ENV,
        STARTUP_TIMEOUT_ENV,
        seconds_from_env,
    )
    from mercato.runtime.telemetry import parse_sampling

    h = home_of(home)
    pid = control.running_pid(h)
    if pid is not None:
        out.print(f"mercato is already running (supervisor pid {pid}, home {h.root}).")
        out.print(f"[dim]→ see it with mercato status{home_flag(h)}; restart with "
                  f"mercato down{home_flag(h)} then mercato up[/]")
        raise typer.Exit(0)
    names = [s.partition("=")[0] for s in service] if service else SERVICES
    try:
        parse_scale(scale, names)
    except ValueError as exc:
        fail(str(exc), "example: mercato up --scale catalog=2", 2)
    try:
        parse_with(with_)
    except ValueError as exc:
        fail(str(exc), "example: mercato up --with legacy", 2)
    try:
        parse_sampling(trace_sampling)
    except ValueError as exc:
        fail(str(exc), "example: mercato up --trace-sampling 0.1", 2)
    supervisor_env: dict[str, str] = {}
    try:
        seconds_from_env(STARTUP_TIMEOUT_ENV, DEFAULT_STARTUP_TIMEOUT_S)
        if liveness_timeout is None:
            seconds_from_env(LIVENESS_TIMEOUT_ENV, DEFAULT_LIVENESS_TIMEOUT_S)
        else:
            supervisor_env[LIVENESS_TIMEOUT_ENV] = str(liveness_timeout)
    except ValueError as exc:
        fail(str(exc), "unset it, or give a number of seconds like 15", 2)
    try:
        h.ensure()
    except OSError as exc:
        fail(f"cannot create the runtime home {h.root}: {exc.strerror}",
             "choose a writable place with --home DIR or MERCATO_HOME")
    _check_ports(h, port, not no_gateway)
    leftovers = control.kill_leftovers(h)
    if leftovers:
        out.print(f"[yellow]stopped {len(leftovers)} leftover process(es) of an earlier run[/]")
    t0 = time.monotonic()
    sup = control.spawn_supervisor(h, scale=scale, services=service, gateway=not no_gateway,
                                   env=supervisor_env, fault_proxy=fault_proxy,
                                   telemetry=not no_telemetry,
                                   trace_sampling=trace_sampling, trace_sql=trace_sql,
                                   trace_publish=trace_publish, with_=with_)
    try:
        ok, state, why = _wait_until_ready(h, sup, timeout, t0)
    except KeyboardInterrupt:
        err.print("interrupted: stopping the platform")
        control.stop_platform(h)
        raise typer.Exit(130) from None
    if not ok:
        _explain_failure(h, state, why)
        control.stop_platform(h)
        raise typer.Exit(1)
    assert state is not None
    _print_ready(state, time.monotonic() - t0, h)
    if detach:
        return
    out.print("[dim]following logs; Ctrl-C stops the platform[/]")
    try:
        logview.follow(out, h.logs_dir, None, None, keep_going=lambda: sup.poll() is None)
    except KeyboardInterrupt:
        pass
    if sup.poll() is not None:
        fail(f"the supervisor exited (code {sup.returncode})",
             f"see mercato logs supervisor{home_flag(h)}")
    _down(h)


# -- down --------------------------------------------------------------------------------------


def _down(h: Home) -> None:
    t0 = time.monotonic()
    last: list[str] = []

    def progress(state: dict[str, Any] | None) -> None:
        if not state or not out.is_terminal:
            return
        active = {n: p.get("kind") for n, p in (state.get("processes") or {}).items()
                  if p.get("state") not in ("stopped", "failed")}
        # The supervisor stops services, then the gateway, then the engines: show that stage.
        for kind in ("service", "simulator", "console", "gateway", "engine"):
            names = [n for n, k in active.items() if k == kind]
            if names:
                if names != last:
                    last[:] = names
                    out.print(f"[dim]{time.monotonic() - t0:4.1f}s stopping[/] "
                              + ", ".join(names))
                return

    ignored = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not orphan
    try:
        was_running, leftovers = control.stop_platform(h, on_progress=progress)
    finally:
        signal.signal(signal.SIGINT, ignored)
    if leftovers:
        out.print(f"[yellow]killed {len(leftovers)} leftover process(es):[/] "
                  + "; ".join(leftovers))
    remaining = control.find_leftovers(h)
    if remaining:
        fail("some processes of this home survived: "
             + ", ".join(str(p.pid) for p in remaining), "kill them by pid (kill -9 PID)")
    if was_running:
        out.print(f"[green]mercato stopped[/] in {time.monotonic() - t0:.1f} s "
                  f"[dim](data kept in {h.root})[/]")
    elif not leftovers:
        out.print(f"mercato is not running [dim](home {h.root})[/]")


@app.command()
def down(home: HomeOpt = None) -> None:
    """Stop everything `up` started; the data stays for the next `up`."""
    _down(home_of(home))


# -- status ------------------------------------------------------------------------------------


async def _health(state: dict[str, Any]) -> dict[str, str]:
    import aiohttp

    from mercato.runtime.nats import Nats
    from mercato.runtime.postgres import Postgres

    ports = state.get("ports") or {}
    home = Home(state["home"])
    results: dict[str, str] = {}

    async def http(name: str, url: str, auth: aiohttp.BasicAuth | None = None) -> None:
        try:
            async with session.get(url, auth=auth) as resp:
                results[name] = "ok" if resp.status == 200 else f"http {resp.status}"
                if resp.status == 200 and url.endswith("/health/ready"):
                    # Serving, with a dependency down (the broker): say which.
                    with contextlib.suppress(ValueError, AttributeError, KeyError, TypeError):
                        body = await resp.json(content_type=None)
                        down = sorted(k for k, v in body["checks"].items() if v != "ok")
                        if body.get("status") == "degraded" and down:
                            results[name] = f"degraded ({', '.join(down)})"
        except (aiohttp.ClientError, OSError, TimeoutError):
            results[name] = "down"

    async def envoy(name: str) -> None:
        from mercato.gateway.envoy import admin_ready

        results[name] = "ok" if await admin_ready(home.envoy_admin_socket) else "down"

    async def engine(name: str) -> None:
        if name == "postgres":
            ok = await asyncio.to_thread(Postgres(home, ports["postgres"]).is_ready)
        else:
            ok = await asyncio.to_thread(Nats(home.nats_dir, ports["nats"]).is_ready)
        results[name] = "ok" if ok else "down"

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.5)) as session:
        jobs = []
        for name, proc in (state.get("processes") or {}).items():
            if proc.get("kind") == "engine":
                jobs.append(engine(name))
            elif name == "envoy":
                jobs.append(envoy(name))
            elif proc.get("kind") == "console" and proc.get("port") and proc.get("pid"):
                from mercato.runtime.telemetry import PROMETHEUS_USER, prometheus_password

                jobs.append(http(name, f"http://127.0.0.1:{proc['port']}/health")
                            if name == "console" else
                            http(name, f"http://127.0.0.1:{proc['port']}/-/ready",
                                 aiohttp.BasicAuth(PROMETHEUS_USER, prometheus_password(home))))
            elif proc.get("kind") == "simulator" and proc.get("port"):
                jobs.append(http(name, f"http://127.0.0.1:{proc['port']}/health"))
            elif proc.get("port") and proc.get("pid"):
                jobs.append(http(name, f"http://127.0.0.1:{proc['port']}/health/ready"))
            else:
                results[name] = "down"
        await asyncio.gather(*jobs)
    return results


def _rss(pid: int | None, with_children: bool) -> int | None:
    if not pid:
        return None
    try:
        p = psutil.Process(pid)
        total = p.memory_info().rss
        if with_children:
            for child in p.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    total += child.memory_info().rss
        return int(total)
    except psutil.Error:
        return None


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1048576:.0f} MB"


def _ago(ts: float | None) -> str:
    if not ts:
        return "-"
    s = int(time.time() - ts)
    return f"{s}s" if s < 120 else f"{s // 60}m" if s < 7200 else f"{s // 3600}h"


RESTART_CAUSES = {"liveness_timeout": "liveness timeout", "startup_timeout": "startup timeout",
                  "exited": "exited"}


def _last_restart(last: dict[str, Any] | None) -> str:
    """``liveness timeout 2m ago: no liveness answer for 15.2 s …`` or ``-``."""
    if not last:
        return "-"
    cause = RESTART_CAUSES.get(str(last.get("cause")), str(last.get("cause")))
    return f"{cause} {_ago(last.get('at'))} ago: {last.get('detail', '')}".rstrip(": ")


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    home: HomeOpt = None,
) -> None:
    """Processes, ports, live health, memory and restarts of the running platform."""
    h = home_of(home)
    pid = control.running_pid(h)
    state = control.read_state(h) if pid is not None else None
    if pid is None or state is None:
        if as_json:
            print(json.dumps({"running": False, "home": str(h.root)}))
        else:
            out.print(f"mercato is [bold]not running[/] (home {h.root}).")
            out.print(f"[dim]→ start it with mercato up{home_flag(h)}[/]")
        return
    health = asyncio.run(_health(state))
    rows = []
    for name, proc in (state.get("processes") or {}).items():
        rows.append({
            "process": name, "kind": proc.get("kind"), "pid": proc.get("pid"),
            "port": proc.get("port"), "state": proc.get("state"),
            "health": health.get(name, "-"),
            "rss_bytes": _rss(proc.get("pid"), proc.get("kind") == "engine"),
            "restarts": proc.get("restarts", 0), "started_at": proc.get("started_at"),
            "last_restart": proc.get("last_restart"),
            "not_live_since": proc.get("not_live_since"),
        })
    cp = state.get("control_plane")
    # Every process under the supervisor (the services' workers, PostgreSQL's backends),
    # each page once: the platform's footprint (runtime/memory.py).
    total = footprint(tree([pid]))
    memory = {"pss_bytes": total.pss, "rss_bytes": total.rss, "processes": total.processes}
    if as_json:
        print(json.dumps({"running": True, "home": str(h.root), "supervisor_pid": pid,
                          "phase": state.get("phase"), "urls": state.get("urls"),
                          "control_plane": cp, "processes": rows, "memory": memory,
                          "releases": state.get("releases") or {},
                          "supervisor_rss_bytes": _rss(pid, False)}, indent=2))
        return
    table = Table(title=f"mercato — {state.get('phase')} — {h.root}", title_justify="left")
    for col, just in (("process", "left"), ("pid", "right"), ("port", "right"),
                      ("state", "left"), ("health", "left"), ("RSS", "right"),
                      ("restarts", "right"), ("up", "right"), ("last restart", "left")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    table.add_row("supervisor", str(pid), "-", "running", "ok", _mb(_rss(pid, False)), "0",
                  _ago(state.get("started_at")), "-")
    if cp:
        # A task inside the supervisor, listed because Envoy's routes depend on it.
        table.add_row("control-plane", str(pid), "-", cp["state"], "-", "-",
                      str(cp["restarts"]), "-", "-")
    for r in rows:
        hstyle = ("green" if r["health"] == "ok"
                  else "yellow" if r["health"].startswith("degraded") else "red")
        shown = f"[{STATE_STYLE.get(r['state'], '')}]{r['state']}[/]"
        if r["not_live_since"]:
            shown += f" [bold red](not live {_ago(r['not_live_since'])})[/]"
        table.add_row(r["process"], str(r["pid"] or "-"), str(r["port"] or "-"), shown,
                      f"[{hstyle}]{r['health']}[/]", _mb(r["rss_bytes"]), str(r["restarts"]),
                      _ago(r["started_at"]) if r["pid"] else "-",
                      _last_restart(r["last_restart"]))
    out.print(table)
    out.print(f"memory: [bold]{_mb(total.pss)}[/] over {total.processes} processes "
              f"(PSS: a page shared between processes counted once; their RSS would add up "
              f"to {_mb(total.rss)})")
    for service, rel in (state.get("releases") or {}).items():
        # `mercato release`: new instances beside the old ones, the edge's split between them.
        out.print(f"release of {service} ({rel.get('mode')}, {rel.get('phase')}): "
                  f"{rel.get('weight')} % to {', '.join(rel.get('new') or [])}, the rest to "
                  f"{', '.join(rel.get('old') or [])}", markup=False)
    urls = state.get("urls") or {}
    if "edge" in urls:
        out.print(f"edge {urls['edge']} · envoy admin {urls['envoy_admin']}")


# -- logs --------------------------------------------------------------------------------------


@app.command()
def logs(
    service: Annotated[str | None, typer.Argument(
        help="A service (all its instances), an instance (catalog-2), or postgres, nats, "
             "envoy, supervisor.", show_default=False)] = None,
    follow: Annotated[bool, typer.Option(
        "--follow", "-f", help="Keep printing new lines.")] = False,
    trace: Annotated[str | None, typer.Option(
        "--trace", help="Only lines of this trace id.")] = None,
    lines: Annotated[int, typer.Option("--tail", "-n", help="Last N lines (0 = all).")] = 200,
    home: HomeOpt = None,
) -> None:
    """Merged logs of every process, ordered by time."""
    h = home_of(home)
    if not logview.log_files_exist(h.logs_dir):
        fail(f"no logs in {h.logs_dir}", f"start the platform first: mercato up{home_flag(h)}")
    files = logview.select_logs(h.logs_dir, service)
    if not files:
        fail(f"no logs for {service!r}",
             "known: " + ", ".join(logview.known_sources(h.logs_dir)))
    indexed = logview.from_index(h.telemetry_db, trace, service) if trace else None
    # The index trails the files by its polling interval: nothing there yet is not "none".
    entries = indexed or logview.merged(files, trace)
    if lines > 0:
        entries = entries[-lines:]
    logview.print_entries(out, entries)
    if follow:
        with contextlib.suppress(KeyboardInterrupt):
            logview.follow(out, h.logs_dir, service, trace)
