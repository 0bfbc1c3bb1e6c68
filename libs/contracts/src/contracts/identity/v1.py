"""Events identity publishes (stream IDENTITY_EVENTS). They say which account or address
changed and its version, never a password or its hash: a follower that needs the whole
account (the migration's sync, ADR 0031) reads it from identity's record endpoint.

An address event carries the whole address (optional fields: an older identity sent the
country alone), so that orders can keep the customer's shipping addresses as a replica
instead of calling identity for each order (ADR 0036). A follower that gets one without
``name`` cannot tell the address and asks identity instead."""

from __future__ import annotations

from typing import ClassVar

from contracts.base import Event


class _IdentityEvent(Event):
    owner: ClassVar[str] = "identity"


class AccountRegistered(_IdentityEvent):
    user_id: str
    email: str
    name: str
    # Lets a follower that wrote this version itself (the migration's sync) skip its echo.
    account_version: int


class AccountUpdated(_IdentityEvent):
    """The account's email, name or password changed."""

    user_id: str
    email: str
    name: str
    account_version: int


class AddressAdded(_IdentityEvent):
    user_id: str
    address_id: str
    country: str
    # The rest of the address (ADR 0036); None from an identity that sent the country alone.
    name: str | None = None
    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    postal_code: str | None = None
    phone: str | None = None


class AddressUpdated(_IdentityEvent):
    user_id: str
    address_id: str
    country: str
    # The rest of the address (ADR 0036); None from an identity that sent the country alone.
    name: str | None = None
    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    postal_code: str | None = None
    phone: str | None = None
