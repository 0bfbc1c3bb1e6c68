"""The ``mercato`` command: run the platform locally and look inside it.

One module per command group: ``platform`` (up, down, status, logs), ``messaging`` (check,
dlq, outbox, history), ``bench``, ``chaos`` (chaos, soak), ``admin``, ``deploy`` and
``docs``, ``legacy``, ``migrate``, ``release``; ``common`` holds what they share.
"""

from __future__ import annotations

import typer

from mercato.cli import (
    admin,
    bench,
    chaos,
    deploy,
    docs,
    legacy,
    messaging,
    migrate,
    platform,
    release,
)

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="mercato: run the commerce platform on this machine.")
app.add_typer(platform.app)
messaging.register(app)
app.add_typer(bench.bench_app, name="bench")
chaos.register(app)
app.add_typer(admin.admin_app, name="admin")
deploy.register(app)
app.add_typer(docs.docs_app, name="docs")
app.add_typer(legacy.legacy_app, name="legacy")
app.add_typer(migrate.migrate_app, name="migrate")
release.register(app)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        raise SystemExit(130) from None
