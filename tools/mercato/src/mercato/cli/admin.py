"""``mercato admin …``: administrative tasks on a running platform."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from mercato.cli.common import HomeOpt, fail, home_flag, running_home
from mercato.runtime.proc import run
from mercato.runtime.services import repo_root

admin_app = typer.Typer(no_args_is_help=True, help="Administrative tasks on a running platform.")


@admin_app.command("create-admin")
def create_admin(
    email: Annotated[str, typer.Argument(help="E-mail of the admin account.")],
    password: Annotated[str, typer.Option(
        prompt=True, hide_input=True, confirmation_prompt=True,
        help="Prompted for when omitted.")],
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    home: HomeOpt = None,
) -> None:
    """Create an admin account, or grant admin to an existing one (identity service)."""
    from mercato.runtime.postgres import Postgres

    h = running_home(home)
    ports = h.ports()
    url = Postgres(h, ports.postgres).service_database_url("identity")
    if url is None:
        fail("the identity database does not exist yet",
             f"run mercato up{home_flag(h)} once with the identity service")
    env = {**os.environ, "IDENTITY_DATABASE_URL": url,
           "IDENTITY_NATS_URL": f"nats://127.0.0.1:{ports.nats}",
           "IDENTITY_ENVIRONMENT": "development", "IDENTITY_INSTANCE_ID": "identity-admin"}
    argv = [sys.executable, "-m", "identity", "create-admin", email, "--password-stdin"]
    if name:
        argv += ["--name", name]
    # The password travels on stdin: never in argv (ps) or the environment (/proc).
    res = run(argv, input=password + "\n", text=True, env=env, cwd=str(repo_root()),
              check=False)
    if res.returncode != 0:
        # identity has printed what went wrong; exit with its code.
        raise typer.Exit(res.returncode)
