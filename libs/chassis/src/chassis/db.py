"""SQLAlchemy 2 async engine (asyncpg) and the unit of work every handler runs in.

A unit of work is one transaction: handlers change state (and, later, write outbox rows)
through its session and call ``commit``; leaving the block without committing rolls back, so
a failed request writes nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from types import TracebackType
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import TextClause

# -- rows written at commit -------------------------------------------------------------------
# Append-only rows that nothing reads back inside the transaction that writes them (outbox
# messages, saga history) are collected per transaction and written by one multi-row statement
# just before COMMIT: a saga reply that staged a command (an INSERT and a NOTIFY before) and
# recorded two history rows costs two statements instead of four. Same transaction, so they
# still commit or roll back with the state change. Inside a savepoint they are written at
# once, so rolling the savepoint back still undoes them.

Flusher = Callable[[list[Any]], tuple[TextClause, dict[str, Any]]]
_FLUSHERS: dict[str, Flusher] = {}
_PENDING = "chassis_deferred_rows"


def register_deferred(kind: str, flusher: Flusher) -> None:
    """``flusher(rows)`` returns the one statement (and parameters) that writes ``rows``."""
    _FLUSHERS[kind] = flusher


async def write_at_commit(session: AsyncSession, kind: str, row: Any) -> None:
    """Write ``row`` (of a registered ``kind``) in this transaction, at the latest at commit."""
    if session.in_nested_transaction():
        statement, params = _FLUSHERS[kind]([row])
        await session.execute(statement, params)
        return
    if not session.in_transaction():
        # Begin the session's transaction (no round trip yet), so that a rollback before
        # anything else ran still ends a transaction and drops these rows with it.
        await session.connection()
    session.sync_session.info.setdefault(_PENDING, {}).setdefault(kind, []).append(row)


def _write_pending(session: Session) -> None:
    pending: dict[str, list[Any]] | None = session.info.pop(_PENDING, None)
    for kind, rows in (pending or {}).items():
        statement, params = _FLUSHERS[kind](rows)
        session.execute(statement, params)  # runs inside the async session's greenlet


async def flush_deferred(session: AsyncSession) -> None:
    """Write the collected rows now (before reading them back in the same transaction)."""
    await session.run_sync(_write_pending)


@event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    _write_pending(session)


# -- work done once the transaction committed ------------------------------------------------
# Counting a saga finished (or anything else that must match what was stored) belongs after
# the commit: a consumer batch that rolls back and is handled again message by message would
# otherwise count twice. Each callback remembers the transaction (or savepoint) it was added
# in, so rolling a savepoint back drops only what was added inside it.
_AFTER_COMMIT = "chassis_after_commit"


def after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Call ``callback()`` once the session's outer transaction has committed; never if that
    transaction, or the savepoint it was added in, rolls back. Callbacks run in order; one
    that raises is skipped, the others still run."""
    sync = session.sync_session
    scope = sync.get_nested_transaction() or sync.get_transaction()
    sync.info.setdefault(_AFTER_COMMIT, []).append((scope, callback))


def _inside(scope: Any, transaction: Any) -> bool:
    while scope is not None:
        if scope is transaction:
            return True
        scope = scope.parent
    return False


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint released: its callbacks wait for the outer commit
    for _, callback in session.info.pop(_AFTER_COMMIT, ()):
        with contextlib.suppress(Exception):
            callback()


@event.listens_for(Session, "after_soft_rollback")
def _after_rollback(session: Session, previous_transaction: Any) -> None:
    if previous_transaction.parent is None:  # the outer transaction: its rows are gone
        session.info.pop(_PENDING, None)
        session.info.pop(_AFTER_COMMIT, None)
        return
    waiting = session.info.get(_AFTER_COMMIT)
    if waiting:
        session.info[_AFTER_COMMIT] = [(scope, callback) for scope, callback in waiting
                                       if not _inside(scope, previous_transaction)]


class Database:
    def __init__(self, url: str, *, pool_size: int = 10, application_name: str = "mercato") -> None:
        self.engine: AsyncEngine = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=False,
            pool_recycle=1800,
            connect_args={"server_settings": {"application_name": application_name},
                          "timeout": 5, "command_timeout": 30},
        )
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    def unit_of_work(self) -> UnitOfWork:
        return UnitOfWork(self.sessions)

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


class UnitOfWork:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._session: AsyncSession | None = None

    @property
    def session(self) -> AsyncSession:
        if self._session is None:
            raise RuntimeError("the unit of work is not open: use 'async with uow:'")
        return self._session

    async def __aenter__(self) -> UnitOfWork:
        self._session = self._sessions()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        assert self._session is not None
        try:
            await self._session.rollback()  # no-op after commit; undoes anything uncommitted
        finally:
            await self._session.close()
            self._session = None

    async def commit(self) -> None:
        await self.session.commit()

    async def rollback(self) -> None:
        await self.session.rollback()
