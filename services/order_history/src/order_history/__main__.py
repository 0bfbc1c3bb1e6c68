"""`python -m order_history`: migrate the database, then serve.

`python -m order_history rebuild`: migrate, then empty the view and replay the producers'
streams into it (see ``order_history.entrypoints.rebuild``); prints the counts as JSON and
exits 0, or 1 if any message failed. The running service may stay up meanwhile.
"""

from __future__ import annotations

import asyncio
import sys

import orjson
from chassis.db import Database
from chassis.logging import configure_logging
from chassis.migrations import upgrade_to_head
from chassis.nats_conn import connect_options
from chassis.serve import run_service

from order_history.app import MIGRATIONS_DIR, create_app
from order_history.entrypoints.rebuild import RebuildReport, rebuild
from order_history.settings import OrderHistorySettings


async def run_rebuild(settings: OrderHistorySettings) -> RebuildReport:
    import nats

    db = Database(settings.database_url, pool_size=2,
                  application_name=f"{settings.instance}-rebuild")
    nc = await nats.connect(settings.nats_url, name=f"{settings.instance}-rebuild",
                            **connect_options(settings))
    try:
        return await rebuild(db, nc.jetstream())
    finally:
        await nc.close()
        await db.dispose()


def main(argv: list[str]) -> int:
    settings = OrderHistorySettings()
    if not argv:
        run_service(settings, create_app, MIGRATIONS_DIR)  # type: ignore[arg-type]
        return 0
    if argv != ["rebuild"]:
        print("usage: python -m order_history [rebuild]", file=sys.stderr)
        return 2
    if not settings.database_url or not settings.nats_url:
        print("order_history rebuild: ORDER_HISTORY_DATABASE_URL and ORDER_HISTORY_NATS_URL "
              "must be set", file=sys.stderr)
        return 2
    configure_logging(settings.service_name, settings.instance, settings.log_level)
    upgrade_to_head(MIGRATIONS_DIR, settings.database_url)
    report = asyncio.run(run_rebuild(settings))
    sys.stdout.write(orjson.dumps(report.as_dict()).decode() + "\n")
    return 1 if any(s.failed for s in report.streams) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
