"""`mercato dlq …` and `mercato outbox …`: operate the messaging loop of a running platform."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from rich.table import Table

from mercato.cli.common import HomeOpt, err, out, running_home
from mercato.runtime.paths import Home

dlq_app = typer.Typer(no_args_is_help=True, help="Inspect and re-drive dead letters.")
outbox_app = typer.Typer(no_args_is_help=True, help="Operate a service's transactional outbox.")

async def _with_js(h: Home, work: Any) -> Any:
    import nats

    from mercato.runtime.broker import connect_options

    nc = await nats.connect(f"nats://127.0.0.1:{h.ports().nats}", connect_timeout=3,
                            **connect_options(h))
    try:
        return await work(nc.jetstream())
    finally:
        await nc.close()


@dlq_app.command("list")
def dlq_list(consumer: Annotated[str | None, typer.Option(help="Only this consumer.")] = None,
             limit: Annotated[int, typer.Option(help="At most this many.")] = 100,
             home: HomeOpt = None) -> None:
    """List dead letters: sequence, consumer, subject, type, deliveries, error."""
    from chassis.messaging.dlq import list_dead_letters

    h = running_home(home)
    letters = asyncio.run(_with_js(h, lambda js: list_dead_letters(js, consumer, limit)))
    if not letters:
        out.print("no dead letters")
        return
    table = Table(title=f"dead letters ({len(letters)})")
    for col in ("seq", "consumer", "subject", "type", "deliveries", "error"):
        table.add_column(col)
    for d in letters:
        table.add_row(str(d.sequence), d.consumer, d.subject, d.message_type,
                      str(d.deliveries), d.error[:80])
    out.print(table)
    out.print("[dim]→ mercato dlq show SEQ · mercato dlq replay SEQ (or --all) after a fix · "
              "mercato dlq discard SEQ if harmless[/]")


@dlq_app.command("show")
def dlq_show(seq: Annotated[int, typer.Argument(help="Sequence from `mercato dlq list`.")],
             home: HomeOpt = None) -> None:
    """Show one dead letter with its headers, error and body."""
    from chassis.messaging.dlq import show_dead_letter

    h = running_home(home)
    letter = asyncio.run(_with_js(h, lambda js: show_dead_letter(js, seq)))
    if letter is None:
        err.print(f"[bold red]error:[/] no dead letter {seq}")
        err.print("[dim]→[/] mercato dlq list")
        raise typer.Exit(1)
    out.print(f"[bold]dead letter {seq}[/] · consumer {letter.consumer} · "
              f"{letter.deliveries} deliveries")
    out.print(f"subject: {letter.subject}\ntype: {letter.message_type}\n"
              f"message id: {letter.message_id}\nerror: {letter.error}")
    for key, value in sorted(letter.headers.items()):
        out.print(f"  {key}: {value}")
    out.print(letter.data.decode("utf-8", errors="replace"))


@dlq_app.command("replay")
def dlq_replay(seq: Annotated[int | None, typer.Argument(help="Sequence to replay.")] = None,
               all_: Annotated[bool, typer.Option("--all", help="Replay every dead letter.")]
               = False,
               consumer: Annotated[str | None, typer.Option(help="With --all: only these.")]
               = None,
               home: HomeOpt = None) -> None:
    """Publish dead letters back to their subject (consumers that handled them skip them)."""
    from chassis.messaging.dlq import list_dead_letters, replay_dead_letter

    if (seq is None) == (not all_):
        err.print("[bold red]error:[/] give one SEQ or --all")
        raise typer.Exit(2)
    h = running_home(home)

    async def work(js: Any) -> list[int]:
        seqs = [seq] if seq is not None else \
            [d.sequence for d in await list_dead_letters(js, consumer, limit=100_000)]
        done = []
        for s in seqs:
            if await replay_dead_letter(js, s) is not None:
                done.append(s)
        return done

    done = asyncio.run(_with_js(h, work))
    if seq is not None and not done:
        err.print(f"[bold red]error:[/] no dead letter {seq}")
        raise typer.Exit(1)
    out.print(f"replayed {len(done)} dead letter(s)")


@dlq_app.command("discard")
def dlq_discard(seq: Annotated[int, typer.Argument(help="Sequence from `mercato dlq list`.")],
                home: HomeOpt = None) -> None:
    """Delete one dead letter without replaying it (read it first: mercato dlq show SEQ)."""
    from chassis.messaging.dlq import discard_dead_letter

    h = running_home(home)
    letter = asyncio.run(_with_js(h, lambda js: discard_dead_letter(js, seq)))
    if letter is None:
        err.print(f"[bold red]error:[/] no dead letter {seq}")
        err.print("[dim]→[/] mercato dlq list")
        raise typer.Exit(1)
    out.print(f"discarded dead letter {seq} ({letter.message_type} from {letter.consumer})")


def _parse_since(since: str) -> datetime:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if since and since[-1] in units and since[:-1].isdigit():
        return datetime.now(UTC) - timedelta(seconds=int(since[:-1]) * units[since[-1]])
    try:
        parsed = datetime.fromisoformat(since)
    except ValueError as exc:
        raise typer.BadParameter("use an ISO time (2026-11-22T10:00) or an age (15m, 2h, 1d)",
                                 param_hint="--since") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@outbox_app.command("republish")
def outbox_republish(
    service: Annotated[str, typer.Argument(help="The producing service, e.g. catalog.")],
    since: Annotated[str, typer.Option(help="ISO time or age (15m, 2h, 1d).")],
    home: HomeOpt = None,
) -> None:
    """Publish again every message the service published since a time (after a broker loss).

    Consumers are idempotent through their inbox, so messages they already handled are
    skipped; only what the broker lost takes effect.
    """
    import asyncpg
    from chassis.messaging.relay import asyncpg_dsn

    from mercato.runtime.postgres import Postgres

    h = running_home(home)
    when = _parse_since(since)
    url = Postgres(h, h.ports().postgres).service_database_url(service)
    if url is None:
        err.print(f"[bold red]error:[/] no database for service '{service}'")
        err.print("[dim]→[/] mercato status lists the services")
        raise typer.Exit(1)

    async def work() -> int:
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            if not await conn.fetchval("SELECT to_regclass('outbox') IS NOT NULL"):
                return -1
            status = await conn.execute(
                "UPDATE outbox SET published_at = NULL WHERE published_at >= $1", when)
            await conn.execute("NOTIFY mercato_outbox")
            return int(status.split()[-1])
        finally:
            await conn.close()

    count = asyncio.run(work())
    if count < 0:
        err.print(f"[bold red]error:[/] service '{service}' has no outbox (it publishes nothing)")
        raise typer.Exit(1)
    out.print(f"{service}: {count} message(s) published since {when.isoformat()} "
              "queued for the relay again")


history_app = typer.Typer(no_args_is_help=True, help="Operate the order-history read model.")


@history_app.command("rebuild")
def history_rebuild(home: HomeOpt = None) -> None:
    """Rebuild the order history from the orders, payments and shipping event streams.

    The read model is emptied and every event still in the streams is replayed; the running
    consumers keep going, and the inbox keeps any event from taking effect twice.
    """
    import os
    import sys

    from mercato.runtime.broker import nats_user
    from mercato.runtime.postgres import Postgres
    from mercato.runtime.proc import run
    from mercato.runtime.services import repo_root

    h = running_home(home)
    ports = h.ports()
    url = Postgres(h, ports.postgres).service_database_url("order_history")
    if url is None:
        err.print("[bold red]error:[/] the order_history database does not exist yet")
        err.print("[dim]→[/] start the platform once with mercato up")
        raise typer.Exit(1)
    env = {**os.environ, "ORDER_HISTORY_DATABASE_URL": url,
           "ORDER_HISTORY_NATS_URL": f"nats://127.0.0.1:{ports.nats}",
           # The replay is order_history's own work: its broker identity may do it.
           "ORDER_HISTORY_NATS_NKEY_SEED": nats_user(h, "order_history").seed,
           "ORDER_HISTORY_ENVIRONMENT": "development",
           "ORDER_HISTORY_INSTANCE_ID": "order_history-rebuild"}
    out.print("rebuilding the order history from the event streams …")
    res = run([sys.executable, "-m", "order_history", "rebuild"], env=env,
              cwd=str(repo_root()), check=False, capture_output=True, text=True)
    report = (res.stdout or "").strip().splitlines()
    if report:
        out.print(report[-1])
    if res.returncode != 0:
        err.print((res.stderr or "").strip()[-2000:])
        err.print("[dim]→[/] mercato logs order_history shows what the service saw")
        raise typer.Exit(res.returncode)


def check_command(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    grace: Annotated[float, typer.Option(
        "--grace", metavar="SECONDS", min=0,
        help="How long the platform may take to catch up: orders changed more recently are "
             "not compared with the other services yet, and a carrier move or saga deadline "
             "is late only past it.")] = 30.0,
    outbox_bound: Annotated[float, typer.Option(
        "--outbox-bound", metavar="SECONDS", min=0,
        help="Oldest age an unpublished outbox row may have.")] = 30.0,
    home: HomeOpt = None,
) -> None:
    """Check the shop's invariants across every service and simulator; exit 1 on a violation."""

    from mercato.check import check

    h = running_home(home)
    found = asyncio.run(check(h, grace_s=grace, outbox_bound_s=outbox_bound))
    report_violations(found, as_json=as_json,
                      holds="[green]all invariants hold[/] (orders, payments and the provider, "
                            "inventory, shipping, notifications and the mail sink, order "
                            "history, outboxes)",
                      title="invariant violation(s)",
                      hint="what each one means and what to do: docs/operations.md")


def report_violations(found: list[Any], *, as_json: bool, holds: str, title: str,
                      hint: str) -> None:
    """Print a checker's violations (a table, or JSON) and exit 1 when there is one."""
    import json as jsonlib
    from dataclasses import asdict

    if as_json:
        out.print(jsonlib.dumps({"violations": [asdict(v) for v in found]}, indent=1))
    elif not found:
        out.print(holds)
    else:
        table = Table(title=f"{len(found)} {title}")
        for col in ("invariant", "subject", "detail"):
            table.add_column(col)
        for v in found:
            table.add_row(v.invariant, v.subject, v.detail)
        out.print(table)
        out.print(f"[dim]→ {hint}[/]")
    raise typer.Exit(1 if found else 0)


def register(app: typer.Typer) -> None:
    checks = typer.Typer()
    checks.command("check")(check_command)
    app.add_typer(checks)
    app.add_typer(dlq_app, name="dlq")
    app.add_typer(outbox_app, name="outbox")
    app.add_typer(history_app, name="history")
