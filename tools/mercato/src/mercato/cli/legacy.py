"""``mercato legacy …``: the monolith of ``mercato up --with legacy``, seen from the CLI.

Each command runs the shop's own command line (``python -m legacy …``) against the home's
``legacy`` database, as its operators always did; the CLI only finds the database.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer

from mercato.cli.common import HomeOpt, fail, home_flag, running_home
from mercato.runtime.proc import run
from mercato.runtime.services import repo_root

legacy_app = typer.Typer(no_args_is_help=True,
                         help="The legacy monolith (mercato up --with legacy).")


def _env(home: HomeOpt) -> dict[str, str]:
    from mercato.runtime.postgres import Postgres

    h = running_home(home)
    url = Postgres(h, h.ports().postgres).service_database_url("legacy")
    if url is None:
        fail("the legacy database does not exist yet",
             f"start the platform with it: mercato up --with legacy{home_flag(h)}")
    return {**os.environ, "LEGACY_DATABASE_URL": url}


@legacy_app.command("seed")
def seed(
    customers: Annotated[int, typer.Option(min=0, max=1_000_000)] = 2000,
    products: Annotated[int, typer.Option(min=0, max=1_000_000)] = 1000,
    orders: Annotated[int, typer.Option(min=0, max=1_000_000,
                                        help="Orders spread over the past year.")] = 20000,
    seed_: Annotated[int, typer.Option("--seed", help="Same seed, same shop.")] = 42,
    home: HomeOpt = None,
) -> None:
    """Fill an empty legacy shop with a year of trading (deterministic, one transaction)."""
    env = _env(home)
    res = run([sys.executable, "-m", "legacy", "seed", "--customers", str(customers),
               "--products", str(products), "--orders", str(orders), "--seed", str(seed_)],
              env=env, cwd=str(repo_root()), check=False)
    raise typer.Exit(res.returncode)


@legacy_app.command("create-admin")
def create_admin(
    email: Annotated[str, typer.Argument(help="E-mail of the admin account.")],
    password: Annotated[str, typer.Option(
        prompt=True, hide_input=True, confirmation_prompt=True,
        help="Prompted for when omitted.")],
    home: HomeOpt = None,
) -> None:
    """An admin account of the legacy shop's back office (its own accounts, not identity's)."""
    env = _env(home)
    # The password travels on stdin: never in argv (ps) or the environment (/proc).
    res = run([sys.executable, "-m", "legacy", "create-admin", email],
              input=password + "\n", text=True, env=env, cwd=str(repo_root()), check=False)
    raise typer.Exit(res.returncode)


@legacy_app.command("check")
def check_command(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    grace: Annotated[float, typer.Option(
        "--grace", metavar="SECONDS", min=0,
        help="Orders and charges changed more recently may belong to a checkout still "
             "under way: they are not judged yet.")] = 30.0,
    home: HomeOpt = None,
) -> None:
    """Check the monolith's invariants (orders, lines, payments, shipments) and its charges
    at the payment provider; exit 1 on a violation. `mercato check` judges the services."""
    import asyncio

    import asyncpg

    from mercato.check import PROVIDER, SideDoorError, side_door
    from mercato.cli.messaging import report_violations
    from mercato.invariants import Violation
    from mercato.migration import legacy_check

    env = _env(home)
    h = running_home(home)
    unread: list[Violation] = []
    try:
        charges = asyncio.run(side_door(h, PROVIDER, "/charges"))
    except SideDoorError as exc:
        charges = None
        unread.append(Violation("the checker can read every source", PROVIDER, str(exc)))
    try:
        found = unread + asyncio.run(legacy_check.check(
            env["LEGACY_DATABASE_URL"], None if charges is None else charges["items"],
            grace_s=grace))
    except (OSError, asyncpg.PostgresError) as exc:
        fail(f"cannot read the legacy database: {exc}",
             f"is the platform running? mercato status{home_flag(h)}")
    found += _stock_split(h, env["LEGACY_DATABASE_URL"])
    report_violations(found, as_json=as_json,
                      holds="[green]the legacy shop's invariants hold[/] (orders, lines, "
                            "payments, shipments, the provider's charges, the stock split's "
                            "conservation)",
                      title="legacy invariant violation(s)",
                      hint="what each one means: docs/migration.md (the legacy check)")


def _stock_split(h: Any, legacy_url: str) -> list[Any]:
    """The stock split's conservation (ADR 0034), when the inventory runs beside the
    monolith: both databases are read."""
    import asyncio

    import asyncpg

    from mercato.invariants import Violation
    from mercato.migration.stock.check import check
    from mercato.runtime.postgres import Postgres

    inventory_url = Postgres(h, h.ports().postgres).service_database_url("inventory")
    if inventory_url is None:
        return []
    try:
        return list(asyncio.run(check(legacy_url, inventory_url))[1])
    except (OSError, asyncpg.PostgresError) as exc:
        return [Violation("the checker can read every source", "stock split", str(exc))]
