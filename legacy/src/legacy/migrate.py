"""Alembic for the shop's one database, run before it serves (``python -m legacy migrate``
and at every start). An advisory lock makes two processes starting together migrate once."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
_LOCK_KEY = 4_242_026


def upgrade_to_head(database_url: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    command.upgrade(cfg, "head")


def run_env() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: run through upgrade_to_head")

    def migrate(connection: Connection) -> None:
        # Transaction-level: let go by the migrations' commit (or rollback), so a second
        # process never sees them half done (unlocking before the commit did just that).
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
        context.configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()

    async def main() -> None:
        engine = create_async_engine(url, poolclass=pool.NullPool)
        async with engine.connect() as conn:
            await conn.run_sync(migrate)
        await engine.dispose()

    asyncio.run(main())
