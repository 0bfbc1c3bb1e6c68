"""The product record the sync compares, and the merge rule (ADR 0029).

Both sides are read into one ``Record``: the monolith's row (category by id, ``active``,
``numeric(12,2)`` prices) and the catalog's product (category slug, ``status``, prices in
the currency's minor units). The sync keeps, per product, the last record both sides agreed
on (the *base*). A change is what differs from the base; a conflict is a field both sides
changed, to different values, before the sync saw either change.

The rule: a field changed on one side only takes that side's value; a field changed on
both sides takes the **services' value** (the catalog's). It reads no clocks (the two sides'
clocks and transaction times are not comparable), and the side that wins is the one that
owns the data once the capability has moved.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields, replace
from decimal import Decimal, InvalidOperation
from typing import Any

RULE = "services-win"
MERGED = ("name", "description", "category", "price", "currency", "active")


@dataclass(frozen=True, slots=True)
class Record:
    sku: str
    name: str
    description: str
    category: str  # the catalog's category slug
    price: str  # two decimals, as the monolith stores it: "39000.00"
    currency: str
    active: bool

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of_json(cls, doc: dict[str, Any]) -> Record:
        return cls(**{f.name: doc[f.name] for f in fields(cls)})


def price_text(amount: Any) -> str:
    try:
        return f"{Decimal(str(amount)):.2f}"
    except InvalidOperation:
        return str(amount)


@dataclass(frozen=True, slots=True)
class Merge:
    record: Record
    conflicts: tuple[str, ...]  # fields both sides changed to different values


def merge(base: Record | None, legacy: Record | None, services: Record | None) -> Merge:
    """What both sides must hold next. Without a base (never synced) every differing field
    is a conflict: nothing says which side changed it."""
    if legacy is None or services is None:
        only = legacy or services
        assert only is not None, "a product is on at least one side"
        return Merge(only, ())
    out: dict[str, Any] = {}
    conflicts = []
    for name in MERGED:
        mine, theirs = getattr(legacy, name), getattr(services, name)
        was = getattr(base, name) if base is not None else None
        if mine == theirs:
            out[name] = mine
        elif base is not None and mine == was:
            out[name] = theirs
        elif base is not None and theirs == was:
            out[name] = mine
        else:
            out[name] = theirs  # the rule: the services' value
            conflicts.append(name)
    return Merge(replace(services, **out), tuple(conflicts))


_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def slug_of(name: str, legacy_id: int) -> str:
    """A catalog slug for a monolith category name: "Home & Garden" -> "home-garden"."""
    slug = _NOT_SLUG.sub("-", name.lower()).strip("-")[:63].strip("-")
    return slug or f"category-{legacy_id}"
