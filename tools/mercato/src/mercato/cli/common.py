"""What every ``mercato`` command group shares: the consoles, ``--home`` and failing well.

User errors end with a one-line explanation and the command to run next, never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from mercato.runtime import control
from mercato.runtime.paths import Home

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

HomeOpt = Annotated[Path | None, typer.Option(
    "--home", envvar="MERCATO_HOME", help="Runtime home (default ./.mercato).",
    show_default=False)]


def fail(message: str, hint: str | None = None, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}")
    if hint:
        err.print(f"[dim]→[/] {hint}")
    raise typer.Exit(code)


def home_of(home: Path | None) -> Home:
    return Home(home)


def home_flag(home: Home) -> str:
    """Repeat ``--home`` in hints only when it is not the default one."""
    default = Home(None).root
    return "" if home.root == default else f" --home {home.root}"


def running_home(home: Path | None) -> Home:
    """The home of a running platform, or a clear error saying how to start one."""
    h = Home(home)
    if control.running_pid(h) is None:
        fail("mercato is not running", f"start it first: mercato up --detach{home_flag(h)}")
    return h
