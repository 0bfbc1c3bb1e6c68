"""Events identity publishes (stream IDENTITY_EVENTS). They say which account or address
changed and its version, never a password or its hash: a follower that needs the whole
account (the migration's sync, ADR 0031) reads it from identity's record endpoint."""

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


class AddressUpdated(_IdentityEvent):
    user_id: str
    address_id: str
    country: str
