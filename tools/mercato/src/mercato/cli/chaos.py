"""``mercato chaos`` and ``mercato soak``: faults and long load against a running platform."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mercato.cli.common import HomeOpt, fail, out, running_home


def register(app: typer.Typer) -> None:
    commands = typer.Typer()
    commands.command("chaos")(chaos)
    commands.command("soak")(soak)
    app.add_typer(commands)


def chaos(
    everything: Annotated[bool, typer.Option(
        "--all", help="Every scenario (15-25 minutes on 2 quiet cores, 47 measured on a "
                      "busy machine) instead of the short set.")] = False,
    scenario: Annotated[list[str] | None, typer.Option(
        "--scenario", metavar="NAME", help="Run this scenario (repeatable; see --list).",
        show_default=False)] = None,
    rate: Annotated[float, typer.Option(help="Orders sent per second during each scenario.",
                                        min=0.5, max=100)] = 5.0,
    customers: Annotated[int, typer.Option(help="Customers the orders rotate over.", min=1,
                                           max=200)] = 8,
    list_only: Annotated[bool, typer.Option("--list", help="List the scenarios and exit.")
                         ] = False,
    report: Annotated[Path | None, typer.Option(
        help="JSON report file (default bench/reports/chaos.json; the text beside it).",
        show_default=False)] = None,
    home: HomeOpt = None,
) -> None:
    """Inject faults into the running platform under order load; fail on any broken
    invariant, stuck or lost order, 500, or 401 for a valid token."""
    from mercato.chaos.scenarios import all_scenarios, select

    if list_only:
        for s in all_scenarios():
            out.print(f"{s.name:<34} {'(short set) ' if s.short else ''}{s.what}")
        raise typer.Exit(0)
    if everything and scenario:
        fail("--all and --scenario exclude each other", "give one of them", 2)
    try:
        chosen = select(scenario, everything)
    except ValueError as exc:
        fail(str(exc), "see mercato chaos --list", 2)
    h = running_home(home)
    from mercato.chaos.run import run_chaos

    raise typer.Exit(run_chaos(h, chosen, rate=rate, customers=customers, report_file=report))


def soak(
    minutes: Annotated[float, typer.Option(help="Length of the soak, in minutes.", min=0.1,
                                           max=24 * 60)] = 10.0,
    rate: Annotated[float | None, typer.Option(
        help="Orders per second (default: half the saturation measured first).", min=0.5,
        max=500, show_default=False)] = None,
    window_seconds: Annotated[float, typer.Option(
        "--window-seconds", help="Length of each reported window (a minute by default).",
        min=5, max=3600)] = 60.0,
    customers: Annotated[int, typer.Option(help="Customers the orders rotate over.", min=1,
                                           max=500)] = 20,
    report: Annotated[Path | None, typer.Option(
        help="JSON report file (default bench/reports/soak.json; the text beside it).",
        show_default=False)] = None,
    home: HomeOpt = None,
) -> None:
    """Hold order load for a bounded time and report, per window, time to terminal, memory,
    outbox age, consumer lag and dead letters; fail on drift or growth."""
    if minutes * 60 < window_seconds:
        fail(f"--minutes {minutes:g} is shorter than one window ({window_seconds:g} s)",
             "lengthen the soak or shorten --window-seconds", 2)
    h = running_home(home)
    from mercato.soak import run_soak

    raise typer.Exit(run_soak(h, minutes=minutes, rate=rate, window_s=window_seconds,
                              customers=customers, report_file=report))
