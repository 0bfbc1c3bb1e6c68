"""Legacy integer ids ⇄ the services' UUIDs, for rows born in the monolith.

A legacy row keeps its identity on the services side as a UUID that carries it: version
8 (RFC 9562's custom layout), a fixed prefix, a table code and the integer. The ACL can
then turn a services answer back into legacy ids without a lookup, and the backfill of
issue 15 item 4 creates the services' copies under these ids. Rows born in the services
(random UUIDs) have no legacy id until the sync writes them into the monolith, which
records the pair; until then ``legacy_id`` answers None for them.
"""

from __future__ import annotations

import uuid

PREFIX = "6c656761"  # "lega"
TABLES = {"products": 1, "categories": 2, "customers": 3, "orders": 4, "addresses": 5}
MAX_ID = (1 << 48) - 1


def services_id(table: str, legacy_id: int) -> uuid.UUID:
    code = TABLES[table]
    if not 1 <= legacy_id <= MAX_ID:
        raise ValueError(f"a legacy id is 1..{MAX_ID}, got {legacy_id}")
    return uuid.UUID(f"{PREFIX}-{code:04x}-8000-8000-{legacy_id:012x}")


def legacy_id(table: str, value: str | uuid.UUID) -> int | None:
    try:
        u = value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        return None
    text = str(u)
    if not text.startswith(f"{PREFIX}-{TABLES[table]:04x}-8000-8000-"):
        return None
    return int(text[-12:], 16) or None
