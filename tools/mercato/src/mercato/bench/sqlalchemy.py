"""Client CPU per transaction: SQLAlchemy's AsyncSession against asyncpg alone, side by side.

The figures behind ADR 0011. Against a running platform's PostgreSQL:

    mercato bench sqlalchemy [--home .mercato] [--n 3000] [--rounds 3]

Each variant runs ``n`` transactions of ``SELECT 1`` (one or two statements) on one
connection; rounds alternate, and the medians of the rounds are printed with their ratio.
"""

from __future__ import annotations

import statistics
import time

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from mercato.runtime.paths import Home
from mercato.runtime.postgres import Postgres

SELECT_1 = text("SELECT 1")


async def _measure(h: Home, n: int, rounds: int) -> None:
    dsn = Postgres(h, h.ports().postgres).superuser_dsn
    engine = create_async_engine(dsn.replace("postgresql://", "postgresql+asyncpg://"),
                                 pool_size=1)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    raw = await asyncpg.connect(dsn)

    async def session_one() -> None:
        async with sessions() as s:
            await s.execute(SELECT_1)
            await s.commit()

    async def session_two() -> None:
        async with sessions() as s:
            await s.execute(SELECT_1)
            await s.execute(SELECT_1)
            await s.commit()

    async def asyncpg_one() -> None:
        async with raw.transaction():
            await raw.fetchval("SELECT 1")

    async def asyncpg_two() -> None:
        async with raw.transaction():
            await raw.fetchval("SELECT 1")
            await raw.fetchval("SELECT 1")

    variants = [session_one, session_two, asyncpg_one, asyncpg_two]
    runs: dict[str, list[float]] = {v.__name__: [] for v in variants}
    for _ in range(rounds):
        for variant in variants:
            for _ in range(200):  # warm the statement caches
                await variant()
            started = time.process_time()
            for _ in range(n):
                await variant()
            runs[variant.__name__].append((time.process_time() - started) / n * 1e6)
    await raw.close()
    await engine.dispose()
    med = {name: statistics.median(values) for name, values in runs.items()}
    print(f"client CPU per transaction, medians of {rounds} alternating rounds of {n}:")
    for name, value in med.items():
        print(f"  {name:12s} {value:6.0f} µs")
    ratio = med["session_one"] / med["asyncpg_one"]
    print(f"  AsyncSession / asyncpg, one statement:  {ratio:.1f}x")
    print(f"  a further statement: AsyncSession {med['session_two'] - med['session_one']:.0f} µs, "
          f"asyncpg {med['asyncpg_two'] - med['asyncpg_one']:.0f} µs")


def run_sqlalchemy_bench(home: Home, n: int, rounds: int) -> int:
    import uvloop

    uvloop.run(_measure(home, n, rounds))
    return 0
