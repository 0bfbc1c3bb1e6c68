"""``mercato deploy render [--check]``: write (or check) the generated files under deploy/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from mercato.cli.common import err, out


def register(app: typer.Typer) -> None:
    deploy_app = typer.Typer(no_args_is_help=True,
                             help="Production manifests, compose file and edge configuration.")
    app.add_typer(deploy_app, name="deploy")

    @deploy_app.command("render")
    def render_command(
        check: Annotated[bool, typer.Option(
            "--check", help="Change nothing; exit 1 if a generated file is out of date.")]
            = False,
    ) -> None:
        """Write the per-service Kubernetes objects, the database roles, the prod Rollouts,
        the compose file and the edge's Envoy configuration under deploy/."""
        from mercato.deploy import render
        from mercato.runtime.services import repo_root

        root = repo_root()
        try:
            changed = render.stale(root) if check else render.write(root)
        except LookupError as exc:
            err.print(f"mercato deploy render: {exc}")
            raise typer.Exit(2) from exc
        for path in changed:
            out.print(f"{'out of date' if check else 'wrote'}: {path}")
        if check and changed:
            err.print("run `mercato deploy render` and commit the result")
            raise typer.Exit(1)
        if not changed:
            out.print("deploy/: every generated file is up to date")

    @deploy_app.command("credentials")
    def credentials(
        out_dir: Annotated[Path, typer.Option(
            "--out", help="Where the seeds, the chart values and the Secret script go "
                          "(keep it out of git: it holds private keys).")],
        nats_url: Annotated[str, typer.Option(
            help="The broker's URL in each service's Secret (tls://nats:4222 once the chart "
                 "serves TLS, docs/security.md).")] = "nats://nats:4222",
    ) -> None:
        """A cluster's credentials: an NKey per service and for the CLI with the laptop's
        broker permissions (NATS chart values), each service's signing key for its calls to
        other services, and the kubectl commands for the Secrets."""
        from mercato.deploy.credentials import write
        from mercato.runtime.services import repo_root

        target = out_dir.resolve()
        if target.is_relative_to(repo_root()):
            err.print(f"mercato deploy credentials: {out_dir} is inside the repository; the "
                      "seeds are private keys")
            err.print("[dim]→[/] choose a directory outside it, e.g. "
                      "--out ~/mercato-prod-credentials")
            raise typer.Exit(2)
        try:
            identities = write(target, nats_url=nats_url)
        except (OSError, ValueError) as exc:
            err.print(f"mercato deploy credentials: {exc}")
            raise typer.Exit(2) from exc
        out.print(f"{len(identities)} broker identities and their services' signing keys in "
                  f"{target}/seeds (0600)")
        out.print(f"chart values: {target}/nats-auth-values.yaml")
        out.print(f"Secrets:      sh {target}/create-secrets.sh")

    @deploy_app.command("ci-matrix")
    def ci_matrix(
        changed: Annotated[str, typer.Argument(
            help="Changed services, comma- or space-separated, or `all`.")],
    ) -> None:
        """Print the GitHub Actions matrix for the services that changed: each with its
        Kubernetes name and the tests of the services that depend on it (readers of its
        events, its HTTP callers)."""
        from mercato.deploy.units import contract_consumers, units

        known = {u.service: u for u in units()}
        wanted = [w for w in changed.replace(",", " ").split() if w]
        if wanted == ["all"]:
            wanted = list(known)
        unknown = [w for w in wanted if w not in known]
        if unknown:
            err.print(f"mercato deploy ci-matrix: unknown service(s) {', '.join(unknown)}; "
                      f"services are {', '.join(known)}")
            raise typer.Exit(2)
        include = [{"service": s, "name": known[s].name,
                    "consumer_tests": " ".join(f"services/{c.service}/tests/unit"
                                               for c in contract_consumers(s))}
                   for s in known if s in wanted]
        print(json.dumps({"include": include}))
