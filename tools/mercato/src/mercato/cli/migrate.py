"""``mercato migrate``: the strangler-fig migration off the legacy monolith, one guarded
step at a time (see docs/migration.md)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from mercato.cli.common import HomeOpt, err, fail, home_of, out
from mercato.migration.capabilities import NAMES, UnknownCapability
from mercato.migration.commands import (
    STOCK_SPLIT_TIMEOUT_S,
    MigrateError,
    Step,
    acl_mismatches,
    backfill,
    finish,
    platform,
    rollback,
    shadow,
    shift,
    status,
    sync_conflicts,
)
from mercato.migration.flags import FlagFileError
from mercato.migration.guard import Thresholds

migrate_app = typer.Typer(no_args_is_help=True, help=(
    "Move capabilities off the legacy monolith: shadow, shift, rollback, finish. "
    f"Capabilities: {', '.join(NAMES)}."))

Cap = Annotated[str, typer.Argument(help=f"One of: {', '.join(NAMES)}.",
                                    show_default=False)]
Percent = Annotated[int, typer.Option("--percent", min=0, max=100, help="0-100.")]


def _report(step: Step, what: str) -> None:
    for warning in step.verdict.warnings:
        err.print(f"[yellow]warning:[/] {warning}")
    if not step.verdict.ok:
        for reason in step.verdict.reasons:
            err.print(f"[bold red]refused:[/] {reason}")
        fail(f"{what} refused; nothing changed",
             f"look into it, or `mercato migrate rollback {step.capability}`")
    share = step.share
    out.print(f"{step.capability}: services {share.percent} %, shadow {share.shadow} %"
              + (", finished" if share.finished else ""))
    if step.applied is None:
        out.print("[dim]the platform is not running: applied at its next start[/]")
    elif step.applied:
        out.print("[green]applied at the edge[/]")
    else:
        fail("the edge has not applied the change within 10 s",
             "check `mercato status` (the control plane) and `mercato logs supervisor`")
    if isinstance(step.stock, dict):
        units = step.stock.get("units") or {}
        moved = step.stock.get("moved") or {}
        out.print(f"[green]stock split at {share.percent} %[/]: the monolith holds "
                  f"{units.get('legacy', 0)} units, the services "
                  f"{units.get('services', 0)} ({units.get('services_reserved', 0)} reserved);"
                  f" moved now: {moved.get('to_services', 0)} to the services, "
                  f"{moved.get('to_legacy', 0)} to the monolith")
    elif step.stock is False:
        fail(f"the stock split has not moved the units to {share.percent} % within "
             f"{STOCK_SPLIT_TIMEOUT_S:.0f} s; the edge serves the new share already, and a "
             "side may answer out of stock until it does",
             "`mercato migrate status` shows the split; `mercato logs stock` says why")


def _run(fn, *args):  # type: ignore[no-untyped-def]
    try:
        return fn(*args)
    except UnknownCapability as exc:
        fail(str(exc), code=2)
    except (MigrateError, FlagFileError) as exc:
        fail(str(exc), getattr(exc, "hint", None))


def stock_split_line(split: dict[str, Any] | None) -> str:
    """The checkout's stock split (ADR 0034) in one line."""
    if split is None:
        return "stock split: not running (mercato up --with legacy, with inventory)"
    last = split.get("last_pass") or {}
    units = last.get("units") or {}
    line = (f"stock split: {split['products']} products; monolith owns "
            f"{split['legacy_units']} units, services {units.get('services', '?')} "
            f"({units.get('services_reserved', '?')} reserved) at "
            f"{last.get('percent', '?')} %; transfers open {split['open']}, failed "
            f"{split['failed']}, moved {split['moved']['to_services']} to the services and "
            f"{split['moved']['to_legacy']} back")
    if last.get("error"):
        line += f"; last pass failed: {last['error']}"
    return line


@migrate_app.command("status")
def status_cmd(home: HomeOpt = None,
               as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Each capability: where it routes, shadow mismatches, errors on each side, sync lag;
    and the flags behind it."""
    doc = _run(status, home_of(home))
    if as_json:
        out.print_json(json.dumps(doc))
        return
    table = Table(title="migration", title_justify="left")
    for col in ("capability", "routes to", "shadow", "mismatches", "legacy err",
                "services err", "sync lag"):
        table.add_column(col)
    for row in doc["capabilities"]:
        w = row["since_last_step"]
        if w is None:
            mism = legacy = services = "ACL not running"
        else:
            rate = w["mismatch_rate"]
            mism = "-" if rate is None else f"{rate * 100:.1f} % of {w['comparisons']:g}"
            legacy = f"{w['legacy']['errors']:g}/{w['legacy']['requests']:g}"
            services = f"{w['services']['errors']:g}/{w['services']['requests']:g}"
        routes = row["routes_to"] + (" (finished)" if row["finished"] else "")
        if not row["translated"]:
            routes += " · no ACL translation yet"
        table.add_row(row["capability"], routes, f"{row['shadow']} %", mism, legacy, services,
                      row["sync_lag"])
    out.print(table)
    out.print("[dim]mismatches and errors: since the capability's last step[/]")
    out.print(stock_split_line(doc.get("stock_split")))
    flags = Table(title=f"flags ({doc['flag_file']}, OpenFeature)", title_justify="left")
    for col in ("flag", "value", "reason"):
        flags.add_column(col)
    for f in doc["flags"]:
        flags.add_row(f["flag"], str(f["value"]).lower(), f["reason"] + (
            f" ({f['error']})" if f["error"] else ""))
    out.print(flags)


@migrate_app.command("shadow")
def shadow_cmd(capability: Cap, percent: Percent = 10, home: HomeOpt = None) -> None:
    """Also send this share of the capability's reads to the other side and compare the
    answers (0 stops). Never for writes."""
    _report(_run(shadow, home_of(home), capability, percent), "shadow")


@migrate_app.command("shift")
def shift_cmd(
    capability: Cap,
    percent: Annotated[int, typer.Option("--percent", min=0, max=100,
                                         help="The services' share, 0-100 (required).")],
    home: HomeOpt = None,
    max_mismatch_rate: Annotated[float, typer.Option(min=0, max=1)] = 0.01,
    max_error_rate: Annotated[float, typer.Option(min=0, max=1)] = 0.01,
    min_samples: Annotated[int, typer.Option(min=1)] = 20,
) -> None:
    """Serve this share of the capability's customers (sticky by bucket) from the services.
    Refused when, since the last step, the shadow mismatch rate or the services side's
    error rate is above its threshold."""
    limits = Thresholds(max_mismatch_rate, max_error_rate, min_samples)
    _report(_run(shift, home_of(home), capability, percent, limits), "shift")


@migrate_app.command("rollback")
def rollback_cmd(capability: Cap, home: HomeOpt = None) -> None:
    """All of the capability's traffic back to the monolith (never refused)."""
    _report(_run(rollback, home_of(home), capability), "rollback")


@migrate_app.command("finish")
def finish_cmd(capability: Cap, home: HomeOpt = None) -> None:
    """Mark a capability at 100 % as moved: every client, bucket or not, goes to the
    services, and its shadow stops."""
    _report(_run(finish, home_of(home), capability), "finish")


@migrate_app.command("mismatches")
def mismatches_cmd(capability: Cap, home: HomeOpt = None,
                   limit: Annotated[int, typer.Option(min=1, max=100)] = 5) -> None:
    """The last shadow mismatches of a capability, with both sides' bodies."""
    from mercato.migration.capabilities import capability as find

    cap = _run(find, capability)
    out.print_json(json.dumps(_run(acl_mismatches, platform(home_of(home)), cap, limit)))


@migrate_app.command("backfill")
def backfill_cmd(capability: Cap, home: HomeOpt = None) -> None:
    """Copy the monolith's records of a capability into the services (and the services'
    own into the monolith), through the running sync. Idempotent and resumable: run it
    again after any interruption; what is in step already is not written again."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(TextColumn("backfill {task.description}"), BarColumn(),
                  MofNCompleteColumn(), console=err) as bar:
        task = bar.add_task(capability, total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        state = _run(backfill, home_of(home), capability, progress)
    checked = state.get("catalog_products", state.get("identity_accounts", 0))
    out.print(f"{capability}: {state.get('done', 0)} monolith records in step, "
              f"{checked} services records checked")


@migrate_app.command("conflicts")
def conflicts_cmd(home: HomeOpt = None,
                  limit: Annotated[int, typer.Option(min=1, max=500)] = 20,
                  as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Records changed on both sides before the sync saw either change: both versions, the
    fields in conflict and what both sides got (the services' value wins: ADR 0029)."""
    items = _run(sync_conflicts, platform(home_of(home)), limit)
    if as_json:
        out.print_json(json.dumps(items))
        return
    table = Table(title=f"sync conflicts (last {limit})", title_justify="left")
    for col in ("when", "legacy id", "fields", "legacy", "services", "both now"):
        table.add_column(col)
    for c in items:
        fields = c["fields"]
        # A product's id alone, as before identity was synced; an account's or an
        # address's says which.
        kind = c.get("kind", "products")
        record = str(c["legacy_id"]) if kind == "products" else f"{kind} {c['legacy_id']}"
        table.add_row(c["detected_at"][:19], record, ", ".join(fields),
                      *(", ".join(f"{f}={c[side][f]!r}" for f in fields)
                        for side in ("legacy", "services", "resolved")))
    out.print(table)
    if not items:
        out.print("[green]no conflicts[/]")
