"""The records the sync compares (a product: ADR 0029; an account and an address: ADR
0031), and the merge rule they share.

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
from typing import Any, ClassVar, Generic, Self, TypeVar

RULE = "services-win"
MERGED = ("name", "description", "category", "price", "currency", "active")


class Synced:
    """What every record is: its merged fields named, and read from and written to the
    sync's own tables as JSON."""

    MERGED: ClassVar[tuple[str, ...]]

    def as_json(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload, no-any-return]

    @classmethod
    def of_json(cls, doc: dict[str, Any]) -> Self:
        return cls(**{f.name: doc[f.name] for f in fields(cls)})  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Record(Synced):
    MERGED: ClassVar[tuple[str, ...]] = MERGED
    sku: str
    name: str
    description: str
    category: str  # the catalog's category slug
    price: str  # two decimals, as the monolith stores it: "39000.00"
    currency: str
    active: bool


@dataclass(frozen=True, slots=True)
class Account(Synced):
    """A customer: the monolith's ``customers`` row, identity's account. The hash is the
    argon2id PHC string both sides verify (ADR 0031); admin rights are not synced."""

    MERGED: ClassVar[tuple[str, ...]] = ("email", "name", "password_hash")
    email: str  # lower-cased, as identity stores it
    name: str
    password_hash: str


@dataclass(frozen=True, slots=True)
class Address(Synced):
    """An address of a customer, the fields both sides have (identity's line2 and phone
    stay identity's)."""

    MERGED: ClassVar[tuple[str, ...]] = ("recipient", "line1", "city", "postal_code",
                                         "country")
    owner: str  # the account's services id
    recipient: str
    line1: str
    city: str
    postal_code: str
    country: str


T = TypeVar("T", bound=Synced)


def price_text(amount: Any) -> str:
    try:
        return f"{Decimal(str(amount)):.2f}"
    except InvalidOperation:
        return str(amount)


@dataclass(frozen=True, slots=True)
class Merge(Generic[T]):
    record: T
    conflicts: tuple[str, ...]  # fields both sides changed to different values


def merge(base: T | None, legacy: T | None, services: T | None,
          services_base: T | None = None) -> Merge[T]:
    """What both sides must hold next. Without a base (never synced) every differing field
    is a conflict: nothing says which side changed it. Fields not in ``MERGED`` (a
    product's SKU, an address's owner) are the services' own.

    ``services_base``: what the services were last told, when that is newer than ``base``
    (the sync stated a record, then died before the monolith's side committed): the
    services' changes are judged against it, the monolith's against ``base``."""
    if legacy is None or services is None:
        only = legacy or services
        assert only is not None, "a product is on at least one side"
        return Merge(only, ())
    out: dict[str, Any] = {}
    conflicts = []
    for name in legacy.MERGED:
        mine, theirs = getattr(legacy, name), getattr(services, name)
        was_legacy = getattr(base, name) if base is not None else _UNKNOWN
        was_services = getattr(services_base, name) if services_base is not None \
            else was_legacy
        if mine == theirs:
            out[name] = mine
        elif mine == was_legacy:
            out[name] = theirs
        elif theirs == was_services:
            out[name] = mine
        else:
            out[name] = theirs  # the rule: the services' value
            conflicts.append(name)
    return Merge(replace(services, **out), tuple(conflicts))


_UNKNOWN = object()  # no base: equal to no value


_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def slug_of(name: str, legacy_id: int) -> str:
    """A catalog slug for a monolith category name: "Home & Garden" -> "home-garden"."""
    slug = _NOT_SLUG.sub("-", name.lower()).strip("-")[:63].strip("-")
    return slug or f"category-{legacy_id}"
