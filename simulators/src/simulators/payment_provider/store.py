"""The provider's vault and charges in a SQLite file: a restart keeps them.

The vault is the one place of the platform where a card number is kept (``payment_methods``):
this process plays the third party that holds card data. Everything else, payments included,
only ever sees a payment method's id, last four digits and brand.

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
    updated_at TEXT NOT NULL,
    payment_method TEXT
)
"""
_VAULT_SCHEMA = """
CREATE TABLE IF NOT EXISTS payment_methods (
    id TEXT PRIMARY KEY,
    idempotency_key TEXT UNIQUE,
    card_number TEXT NOT NULL,
    last4 TEXT NOT NULL,
    brand TEXT NOT NULL,
    created_at TEXT NOT NULL
)
"""
COLUMNS = ("id", "idempotency_key", "status", "decline_reason", "amount", "currency",
           "card_last4", "attempts", "created_at", "updated_at", "payment_method")
_SELECT = ("SELECT id, idempotency_key, status, decline_reason, amount, currency, card_last4, "
           "attempts, created_at, updated_at, payment_method FROM charges")
_BY = {"id": _SELECT + " WHERE id = ?", "idempotency_key": _SELECT + " WHERE idempotency_key = ?"}
_INSERT = ("INSERT INTO charges (id, idempotency_key, status, decline_reason, amount, currency, "
           "card_last4, attempts, created_at, updated_at, payment_method) "
           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
# What a payment method shows outside the vault: never the number.
METHOD_COLUMNS = ("id", "last4", "brand", "created_at")
_METHOD = "SELECT id, last4, brand, created_at, card_number FROM payment_methods"


def _now() -> str:
    return datetime.now(UTC).isoformat()


class ChargeStore:
    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(data_dir / "provider.sqlite3", isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)
        self._db.execute(_VAULT_SCHEMA)
        # A data dir from before the vault: its charges were made with a card number.
        known = {row[1] for row in self._db.execute("PRAGMA table_info(charges)")}
        if "payment_method" not in known:
            self._db.execute("ALTER TABLE charges ADD COLUMN payment_method TEXT")

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
                        amount: str, currency: str, card_last4: str,
                        payment_method: str) -> tuple[dict[str, Any], bool]:
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
                  "card_last4": card_last4, "attempts": 1, "created_at": now, "updated_at": now,
                  "payment_method": payment_method}
        self._db.execute(_INSERT, [charge[c] for c in COLUMNS])
        return charge, True

    def set_status(self, charge_id: str, status: str) -> None:
        self._db.execute("UPDATE charges SET status = ?, updated_at = ? WHERE id = ?",
                         (status, _now(), charge_id))

    # -- the vault ------------------------------------------------------------------------------

    def vault(self, card_number: str, *, brand: str,
              idempotency_key: str | None) -> tuple[dict[str, Any], bool] | None:
        """A payment method for the card: created now (True), or the one made before under
        the same key for the same card (False); None when the key was used for another card."""
        if idempotency_key is not None:
            row = self._db.execute(_METHOD + " WHERE idempotency_key = ?",
                                   (idempotency_key,)).fetchone()
            if row is not None:
                return (self._method(row), False) if row[4] == card_number else None
        method = {"id": f"pm_{uuid.uuid4().hex}", "last4": card_number[-4:], "brand": brand,
                  "created_at": _now()}
        self._db.execute(
            "INSERT INTO payment_methods (id, idempotency_key, card_number, last4, brand, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (method["id"], idempotency_key, card_number, method["last4"], brand,
             method["created_at"]))
        return method, True

    def card_of(self, payment_method: str) -> str | None:
        """The card number behind a payment method (only the charge path asks)."""
        row = self._db.execute("SELECT card_number FROM payment_methods WHERE id = ?",
                               (payment_method,)).fetchone()
        return str(row[0]) if row else None

    @staticmethod
    def _method(row: Any) -> dict[str, Any]:
        return dict(zip(METHOD_COLUMNS, row[:4], strict=True))
