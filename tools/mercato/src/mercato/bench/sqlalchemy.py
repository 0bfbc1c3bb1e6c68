"""Client CPU per transaction: SQLAlchemy's AsyncSession, its AsyncConnection (a unit of
work's session since ADR 0044) and asyncpg alone, side by side.

The figures behind ADR 0011 and ADR 0044. Against a running platform's PostgreSQL:

    mercato bench sqlalchemy [--home .mercato] [--n 3000] [--rounds 3]

Each variant runs ``n`` transactions on one connection: ``SELECT 1`` (one or two
statements), and the shape of a consumer's inbox transaction (an ``INSERT ... ON CONFLICT DO
NOTHING RETURNING`` and an ``UPDATE`` of the row, on a scratch table dropped at the end),
the last also as the chassis runs it (a unit of work, its statements on asyncpg, ADR 0047).
Rounds alternate, and the medians of the rounds are printed with their ratio.
"""

from __future__ import annotations

import statistics
import time
import uuid

import asyncpg
from chassis.db import Database, driver_execute, driver_fetch
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from mercato.runtime.paths import Home
from mercato.runtime.postgres import Postgres

SELECT_1 = text("SELECT 1")
_TABLE = "mercato_bench_claim"
_CLAIM = f"INSERT INTO {_TABLE} (id) VALUES ($1) ON CONFLICT DO NOTHING RETURNING id"  # noqa: S608
_TOUCH = f"UPDATE {_TABLE} SET n = n + 1 WHERE id = $1"  # noqa: S608
CLAIM = text(_CLAIM.replace("$1", "CAST(:id AS uuid)"))
TOUCH = text(_TOUCH.replace("$1", "CAST(:id AS uuid)"))


async def _measure(h: Home, n: int, rounds: int) -> None:
    dsn = Postgres(h, h.ports().postgres).superuser_dsn
    engine = create_async_engine(dsn.replace("postgresql://", "postgresql+asyncpg://"),
                                 pool_size=1)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    chassis_db = Database(dsn.replace("postgresql://", "postgresql+asyncpg://"), pool_size=1)
    raw = await asyncpg.connect(dsn)
    await raw.execute(f"CREATE TABLE IF NOT EXISTS {_TABLE} (id uuid PRIMARY KEY, "
                      "n int NOT NULL DEFAULT 0)")

    async def session_one() -> None:
        async with sessions() as s:
            await s.execute(SELECT_1)
            await s.commit()

    async def session_two() -> None:
        async with sessions() as s:
            await s.execute(SELECT_1)
            await s.execute(SELECT_1)
            await s.commit()

    async def connection_one() -> None:
        async with engine.connect() as c:
            await c.execute(SELECT_1)
            await c.commit()

    async def connection_claim() -> None:
        async with engine.connect() as c:
            claimed = uuid.uuid4()
            await c.execute(CLAIM, {"id": claimed})
            await c.execute(TOUCH, {"id": claimed})
            await c.commit()

    async def asyncpg_one() -> None:
        async with raw.transaction():
            await raw.fetchval("SELECT 1")

    async def asyncpg_two() -> None:
        async with raw.transaction():
            await raw.fetchval("SELECT 1")
            await raw.fetchval("SELECT 1")

    async def session_claim() -> None:
        async with sessions() as s:
            claimed = uuid.uuid4()
            await s.execute(CLAIM, {"id": claimed})
            await s.execute(TOUCH, {"id": claimed})
            await s.commit()

    async def asyncpg_claim() -> None:
        async with raw.transaction():
            claimed = uuid.uuid4()
            await raw.fetch(_CLAIM, claimed)
            await raw.execute(_TOUCH, claimed)

    async def unit_of_work_claim() -> None:  # the chassis's path: ADRs 0045 and 0047
        async with chassis_db.unit_of_work() as uow:
            claimed = uuid.uuid4()
            await driver_fetch(uow.session, _CLAIM, claimed)
            await driver_execute(uow.session, _TOUCH, claimed)
            await uow.commit()

    variants = [session_one, session_two, session_claim, connection_one, connection_claim,
                asyncpg_one, asyncpg_two, asyncpg_claim, unit_of_work_claim]
    runs: dict[str, list[float]] = {v.__name__: [] for v in variants}
    try:
        for i in range(rounds):
            print(f"round {i + 1} of {rounds} …", flush=True)
            for variant in variants:
                for _ in range(200):  # warm the statement caches
                    await variant()
                started = time.process_time()
                for _ in range(n):
                    await variant()
                runs[variant.__name__].append((time.process_time() - started) / n * 1e6)
    finally:  # an interrupted run leaves no scratch table in the platform's database
        await raw.execute(f"DROP TABLE IF EXISTS {_TABLE}")
        await raw.close()
        await engine.dispose()
        await chassis_db.dispose()
    med = {name: statistics.median(values) for name, values in runs.items()}
    print(f"client CPU per transaction, medians of {rounds} alternating rounds of {n}:")
    for name, value in med.items():
        print(f"  {name:14s} {value:6.0f} µs")
    ratio = med["session_one"] / med["asyncpg_one"]
    print(f"  AsyncSession / asyncpg, one statement:  {ratio:.1f}x")
    print(f"  a further statement: AsyncSession {med['session_two'] - med['session_one']:.0f} µs, "
          f"asyncpg {med['asyncpg_two'] - med['asyncpg_one']:.0f} µs")
    print(f"  AsyncSession / asyncpg, an inbox claim and an update: "
          f"{med['session_claim'] / med['asyncpg_claim']:.1f}x "
          f"({med['session_claim'] - med['asyncpg_claim']:.0f} µs more per transaction)")
    print(f"  AsyncConnection / AsyncSession, the same claim: "
          f"{med['connection_claim'] / med['session_claim']:.2f}x "
          f"({med['session_claim'] - med['connection_claim']:.0f} µs less per transaction)")
    print(f"  a unit of work on asyncpg (chassis.db) / asyncpg alone, the same claim: "
          f"{med['unit_of_work_claim'] / med['asyncpg_claim']:.2f}x "
          f"({med['unit_of_work_claim'] - med['asyncpg_claim']:.0f} µs more per transaction)")


def run_sqlalchemy_bench(home: Home, n: int, rounds: int) -> int:
    import uvloop

    uvloop.run(_measure(home, n, rounds))
    return 0
