"""``mercato bench …``: benchmarks that print figures side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mercato.cli.common import HomeOpt, fail, running_home

bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks that print figures side by side.")


@bench_app.command("gateway")
def bench_gateway(
    duration: Annotated[float, typer.Option(help="Seconds of load.")] = 10.0,
    connections: Annotated[int, typer.Option(help="Concurrent connections.")] = 16,
    home: HomeOpt = None,
) -> None:
    """Load the edge through Envoy and report latency and throughput."""
    h = running_home(home)
    try:
        from mercato.bench.gateway import run_gateway_bench
    except ImportError as exc:
        fail(f"the gateway benchmark is not available ({exc})")
    raise typer.Exit(run_gateway_bench(h.root, duration, connections))


@bench_app.command("orders")
def bench_orders(
    rate: Annotated[float, typer.Option(
        help="Orders sent per second (constant arrivals); the default is ADR 0011's bar, "
             "a higher rate finds saturation.", min=0.1)] = 10.0,
    duration: Annotated[float, typer.Option(help="Seconds of measured load.", min=1)] = 30.0,
    decline_share: Annotated[float, typer.Option(
        help="Share of orders paid with a declining card.", min=0.0, max=1.0)] = 0.2,
    customers: Annotated[int, typer.Option(help="Customers the orders rotate over.",
                                           min=1)] = 20,
    products: Annotated[int, typer.Option(help="Products the orders rotate over.",
                                          min=1, max=100)] = 8,
    warmup: Annotated[float, typer.Option(help="Seconds of uncounted load first.",
                                          min=0)] = 3.0,
    report: Annotated[Path | None, typer.Option(
        help="JSON report file (default bench/reports/orders.json, orders-legacy.json, "
             "orders-both.json).", show_default=False)] = None,
    target: Annotated[str, typer.Option(
        help="services (through the edge), legacy (the monolith of mercato up --with "
             "legacy), or both: one after the other, then side by side with the ratio.")
    ] = "services",
    save_baseline: Annotated[Path | None, typer.Option(
        "--save-baseline", help="Also save this run's figures, commit and machine to this "
        "JSON file, to compare later runs with.", show_default=False)] = None,
    compare: Annotated[list[Path] | None, typer.Option(
        "--compare", help="An earlier run (a --save-baseline file or a bench orders "
        "report); repeat it for several: their medians are printed beside this run's, "
        "with the ratios.", show_default=False)] = None,
    home: HomeOpt = None,
) -> None:
    """Orders at a constant rate: throughput, latencies, CPU per order (per process), and
    with --compare the same figures of the build before, side by side."""
    from mercato.bench.orders import TARGETS, run_orders_bench

    if target not in TARGETS:
        fail(f"--target {target}: choose one of {', '.join(TARGETS)}",
             "example: mercato bench orders --target both", 2)
    h = running_home(home)
    raise typer.Exit(run_orders_bench(h.root, rate=rate, duration_s=duration,
                                      decline_share=decline_share, customers=customers,
                                      products=products, warmup_s=warmup, report_file=report,
                                      target=target, save_baseline=save_baseline,
                                      compare_with=compare))


@bench_app.command("compare")
def bench_compare(
    before: Annotated[list[Path], typer.Option(
        "--before", help="A run of the build before (a --save-baseline file or a bench "
        "orders report); repeat it for several runs.")],
    after: Annotated[list[Path], typer.Option(
        "--after", help="A run of the build after; repeat it for several runs.")],
    report: Annotated[Path | None, typer.Option(
        help="Also write the comparison as JSON here.", show_default=False)] = None,
) -> None:
    """Saved `bench orders` runs of two builds side by side: medians of each side and the
    ratios after / before (alternate the builds' runs so machine noise hits both)."""
    import json

    from mercato.bench.baseline import BaselineError, compare, load_run, print_comparison

    try:
        result = compare([load_run(p) for p in before], [load_run(p) for p in after])
    except BaselineError as exc:
        fail(str(exc), "save runs with: mercato bench orders --save-baseline FILE", 2)
    print_comparison(result)
    if report:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(result, indent=1) + "\n")


@bench_app.command("idle")
def bench_idle(
    duration: Annotated[float, typer.Option(help="Seconds to measure.", min=1)] = 30.0,
    save: Annotated[Path | None, typer.Option(
        help="Also save the figures (and the platform's commit) to this JSON file.",
        show_default=False)] = None,
    before: Annotated[list[Path] | None, typer.Option(
        "--before", help="Compare saved runs instead of measuring: a run of the build "
        "before; repeat it for several.", show_default=False)] = None,
    after: Annotated[list[Path] | None, typer.Option(
        "--after", help="With --before: a run of the build after.", show_default=False)
    ] = None,
    home: HomeOpt = None,
) -> None:
    """CPU the running platform burns with no orders, per process (timers, heartbeats,
    probes, polls); with --before/--after, saved runs of two builds side by side."""
    from rich.console import Console

    from mercato.bench.baseline import BaselineError
    from mercato.bench.idle import compare, load, print_comparison, run_idle_bench

    if before or after:
        if not (before and after):
            fail("give runs of both builds: --before FILE ... --after FILE ...",
                 "save runs with: mercato bench idle --save FILE", 2)
        try:
            b, a = [load(p) for p in before or []], [load(p) for p in after or []]
        except BaselineError as exc:
            fail(str(exc), "save runs with: mercato bench idle --save FILE", 2)
        print_comparison(compare(b, a), len(b), len(a), Console(highlight=False))
        return
    raise typer.Exit(run_idle_bench(running_home(home).root, duration, save))


@bench_app.command("capacity")
def bench_capacity(
    runs: Annotated[list[Path], typer.Argument(
        help="bench orders reports or --save-baseline files of one build (medians are "
             "taken over them).", show_default=False)],
    rate: Annotated[list[int] | None, typer.Option(
        "--rate", help="Orders per second to size for; repeat it for several.",
        min=1, show_default=False)] = None,
    utilisation: Annotated[float, typer.Option(
        help="Share of each core to plan for.", min=0.05, max=1.0)] = 0.7,
    markdown: Annotated[bool, typer.Option(
        "--markdown", help="Print the table as docs/performance.md shows it.")] = False,
) -> None:
    """Cores per process group at 100 and 1,000 orders/s (or --rate), derived from the CPU
    per order of measured runs: the capacity model of docs/performance.md."""
    from mercato.bench.baseline import BaselineError
    from mercato.bench.capacity import RATES, load_model, print_model
    from mercato.bench.capacity import markdown as as_markdown

    try:
        m = load_model(runs, rates=tuple(rate) if rate else RATES, utilisation=utilisation)
    except BaselineError as exc:
        fail(str(exc), "save runs with: mercato bench orders --save-baseline FILE", 2)
    if markdown:
        typer.echo(as_markdown(m), nl=False)
    else:
        print_model(m)


@bench_app.command("storefront")
def bench_storefront(
    rate: Annotated[float, typer.Option(help="Pages requested per second (constant arrivals).",
                                        min=0.1)] = 50.0,
    duration: Annotated[float, typer.Option(help="Seconds of measured load.", min=1)] = 30.0,
    warmup: Annotated[float, typer.Option(help="Seconds of uncounted load first.",
                                          min=0)] = 5.0,
    customers: Annotated[int, typer.Option(help="Signed-in customers the pages rotate over.",
                                           min=1, max=200)] = 10,
    products: Annotated[int, typer.Option(help="Products stocked and browsed.",
                                          min=1, max=100)] = 8,
    report: Annotated[Path | None, typer.Option(
        help="JSON report file (default bench/reports/storefront.json).",
        show_default=False)] = None,
    home: HomeOpt = None,
) -> None:
    """The shop's pages (browse, search, cart, checkout) through the edge at a constant rate:
    p50/p99 per page type and the storefront's share of the CPU."""
    h = running_home(home)
    from mercato.bench.storefront import run_storefront_bench

    raise typer.Exit(run_storefront_bench(h.root, rate=rate, duration_s=duration,
                                          warmup_s=warmup, customers=customers,
                                          products=products, report_file=report))


@bench_app.command("telemetry")
def bench_telemetry(
    rate: Annotated[float, typer.Option(help="Orders per second.", min=0.1)] = 12.0,
    duration: Annotated[float, typer.Option(help="Seconds of measured load per run.",
                                            min=5)] = 30.0,
    rounds: Annotated[int, typer.Option(help="Alternating rounds (one run on, one off "
                                              "each).", min=1)] = 2,
    report: Annotated[Path | None, typer.Option(
        help="JSON report file (default bench/reports/telemetry.json).",
        show_default=False)] = None,
) -> None:
    """CPU per order with telemetry on (console, span export) against off, alternating
    runs on fresh platforms of their own; prints both and the ratio."""
    from mercato.bench.gateway import default_reports_dir
    from mercato.bench.telemetry import run_telemetry_bench

    raise typer.Exit(run_telemetry_bench(rate, duration, rounds,
                                         report or default_reports_dir() / "telemetry.json"))


@bench_app.command("memory")
def bench_memory(
    rounds: Annotated[int, typer.Option(help="Alternating rounds (one platform with the "
                                              "zygote, one without, each).", min=1)] = 2,
    settle: Annotated[float, typer.Option(help="Seconds idle before measuring.",
                                          min=0)] = 20.0,
    load: Annotated[float, typer.Option(help="Seconds of orders (5/s) before the second "
                                             "measurement; 0 skips it.", min=0)] = 15.0,
    report: Annotated[Path | None, typer.Option(
        help="JSON report file (default bench/reports/memory.json).",
        show_default=False)] = None,
) -> None:
    """The whole platform's memory (PSS: shared pages once) with the Python services forked
    from one preloaded interpreter against each started apart, on fresh platforms of their
    own; prints both, the ratio and issue 17's idle target (1.2 GB)."""
    from mercato.bench.gateway import default_reports_dir
    from mercato.bench.memory import run_memory_bench

    raise typer.Exit(run_memory_bench(rounds, settle, load,
                                      report or default_reports_dir() / "memory.json"))


@bench_app.command("events")
def bench_events(
    events: Annotated[int, typer.Option(help="Events per throughput round.")] = 20_000,
    rate: Annotated[int, typer.Option(help="Events/s for the latency run.")] = 1000,
    seconds: Annotated[float, typer.Option(help="Length of the latency run.")] = 10.0,
    repeats: Annotated[int, typer.Option(help="Throughput rounds (median).")] = 3,
) -> None:
    """Outbox relay throughput and commit-to-handler latency, beside raw JetStream."""
    from mercato.bench.events import run_events_bench
    from mercato.runtime.services import repo_root

    raise typer.Exit(run_events_bench(events, rate, seconds, repeats,
                                      report_dir=repo_root() / "bench" / "reports"))


@bench_app.command("sqlalchemy")
def bench_sqlalchemy(
    n: Annotated[int, typer.Option("--n", help="Transactions per round and variant.",
                                   min=100)] = 3000,
    rounds: Annotated[int, typer.Option(help="Alternating rounds (medians).", min=1)] = 3,
    home: HomeOpt = None,
) -> None:
    """Client CPU per transaction: SQLAlchemy's AsyncSession beside asyncpg alone."""
    h = running_home(home)
    from mercato.bench.sqlalchemy import run_sqlalchemy_bench

    raise typer.Exit(run_sqlalchemy_bench(h, n, rounds))
