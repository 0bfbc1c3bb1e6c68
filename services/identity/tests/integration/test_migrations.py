"""The hand-written migration and the ORM models describe the same schema."""

from __future__ import annotations

import asyncio

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from chassis.migrations import alembic_config, upgrade_to_head
from identity.adapters.orm import metadata
from identity.app import MIGRATIONS_DIR
from sqlalchemy.ext.asyncio import create_async_engine

pytestmark = pytest.mark.integration


def _drift(url: str) -> list[object]:
    async def compare() -> list[object]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(lambda sync: list(compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), metadata)))
        finally:
            await engine.dispose()

    return asyncio.run(compare())


def test_migrations_match_the_models_and_downgrade_cleanly(fresh_database: str) -> None:
    upgrade_to_head(MIGRATIONS_DIR, fresh_database)
    assert _drift(fresh_database) == []
    command.downgrade(alembic_config(MIGRATIONS_DIR, fresh_database), "base")
    upgrade_to_head(MIGRATIONS_DIR, fresh_database)
    assert _drift(fresh_database) == []



def test_an_instance_starting_while_another_commits_its_migrations_waits_for_the_commit(
        pg_server) -> None:  # type: ignore[no-untyped-def]
    """Instances starting together migrate one database at once (so does `mercato up`'s
    client registration): one migrates, the others wait on its lock, then find it done.
    The lock used to be let go just before the first one's commit: the next one then saw no
    version table, tried to create it, failed, and its process exited (CI saw identity and a
    second orders instance restart so). Here the first one's commit is held for a while to
    open that window every time; the second must still succeed."""
    import subprocess
    import sys
    import threading
    import time
    import uuid

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    name = f"t_{uuid.uuid4().hex[:16]}"
    url = pg_server.create_database(name)
    first = threading.get_ident()
    committing = threading.Event()

    def slow_commit(conn: object) -> None:
        if threading.get_ident() == first and not committing.is_set():
            committing.set()
            time.sleep(3)  # the second instance starts and reaches the lock meanwhile

    event.listen(Engine, "commit", slow_commit)
    try:
        script = ("import sys; from chassis.migrations import upgrade_to_head; "
                  "from identity.app import MIGRATIONS_DIR; "
                  "upgrade_to_head(MIGRATIONS_DIR, sys.argv[1])")
        second: list[subprocess.CompletedProcess[str]] = []

        def start_second() -> None:
            committing.wait(60)
            second.append(subprocess.run([sys.executable, "-c", script, url],
                                         capture_output=True, text=True, timeout=120,
                                         check=False))

        starter = threading.Thread(target=start_second)
        starter.start()
        upgrade_to_head(MIGRATIONS_DIR, url)
        starter.join(150)
        assert committing.is_set()
        assert second and second[0].returncode == 0, second[0].stderr[-1500:]
        assert _drift(url) == []
    finally:
        event.remove(Engine, "commit", slow_commit)
        pg_server.drop_database(name)
