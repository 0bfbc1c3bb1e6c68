"""Database preparation for a platform run: PGDATA made ready before PostgreSQL starts, then
one database and login role per service once it answers.

The supervisor only sequences these; what they do to PostgreSQL lives here and in
``mercato.runtime.postgres``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from mercato.runtime.postgres import Postgres


def prepare_data_dir(pg: Postgres) -> None:
    """Initialise PGDATA once, and clear what an earlier, killed run left behind."""
    pg.init()
    # A server of this PGDATA may still be finishing the shutdown its parent's death asked
    # for; starting beside it would fail on the lock file.
    pg.pg_ctl_stop()
    pg.clear_stale_pidfile()


async def create_service_databases(pg: Postgres, services: Iterable[str]) -> dict[str, str]:
    """A database and role per service (kept across runs); returns service -> its URL."""
    names = list(services)
    await asyncio.to_thread(pg.close_shared_databases)
    urls = await asyncio.gather(*(asyncio.to_thread(pg.ensure_service_database, s)
                                  for s in names))
    return dict(zip(names, urls, strict=True))
