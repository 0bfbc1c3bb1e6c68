"""``mercato docs render [--check]``: the parts of the docs made from the code."""

from __future__ import annotations

from typing import Annotated

import typer

from mercato.cli.common import err, out

docs_app = typer.Typer(no_args_is_help=True, help="Documentation generated from the code.")


@docs_app.command("render")
def render(check: Annotated[bool, typer.Option(
        "--check", help="Change nothing; exit 1 when a generated part is stale.")] = False,
) -> None:
    """Rewrite each service README's messaging table from the service's declaration."""
    from mercato.docs.readmes import render_readmes

    stale = render_readmes(check)
    if check and stale:
        for path in stale:
            err.print(f"[bold red]out of date:[/] {path}")
        err.print("[dim]→[/] run `mercato docs render` and commit the result")
        raise typer.Exit(1)
    out.print("every generated part is up to date" if not stale
              else "rewrote " + ", ".join(str(p) for p in stale))
