"""The provider's charges in a SQLite file: a restart keeps them.

One process, one thread (the event loop), so plain ``sqlite3`` calls are serialized already;
each write commits before the answer is sent.
"""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS charges (
    id TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    decline_reason TEXT,
    amount TEXT NOT NULL,
    currency TEXT NOT NULL,
    card_last4 TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
)
"""
COLUMNS = ("id", "idempotency_key", "status", "decline_reason", "amount", "currency",
           "card_last4", "attempts", "created_at", "updated_at")
_SELECT = ("SELECT id, idempotency_key, status, decline_reason, amount, currency, card_last4, "
           "attempts, created_at, updated_at FROM charges")
_BY = {"id": _SELECT + " WHERE id = ?", "idempotency_key": _SELECT + " WHERE idempotency_key = ?"}
_INSERT = ("INSERT INTO charges (id, idempotency_key, status, decline_reason, amount, currency, "
           "card_last4, attempts, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


def _now() -> str:
    return datetime.now(UTC).isoformat()


class ChargeStore:
    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(data_dir / "provider.sqlite3", isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def _row(self, where: str, value: str) -> dict[str, Any] | None:
        row = self._db.execute(_BY[where], (value,)).fetchone()
        return dict(zip(COLUMNS, row, strict=True)) if row else None

    def get(self, charge_id: str) -> dict[str, Any] | None:
        return self._row("id", charge_id)

    def by_key(self, key: str) -> dict[str, Any] | None:
        return self._row("idempotency_key", key)

    def all(self) -> list[dict[str, Any]]:
        rows = self._db.execute(_SELECT + " ORDER BY created_at").fetchall()
        return [dict(zip(COLUMNS, r, strict=True)) for r in rows]

    def create_or_count(self, key: str, *, status: str, decline_reason: str | None,
                        amount: str, currency: str, card_last4: str) -> tuple[dict[str, Any], bool]:
        """The charge for ``key``: created now (True) or found, its attempts counted (False)."""
        found = self.by_key(key)
        if found is not None:
            self._db.execute("UPDATE charges SET attempts = attempts + 1 WHERE id = ?",
                             (found["id"],))
            found["attempts"] += 1
            return found, False
        now = _now()
        charge = {"id": f"ch_{uuid.uuid4().hex}", "idempotency_key": key, "status": status,
                  "decline_reason": decline_reason, "amount": amount, "currency": currency,
                  "card_last4": card_last4, "attempts": 1, "created_at": now, "updated_at": now}
        self._db.execute(_INSERT, [charge[c] for c in COLUMNS])
        return charge, True

    def set_status(self, charge_id: str, status: str) -> None:
        self._db.execute("UPDATE charges SET status = ?, updated_at = ? WHERE id = ?",
                         (status, _now(), charge_id))
