"""Domain errors. The service layer turns them into problem+json; nothing here knows HTTP."""

from __future__ import annotations

import uuid


class IdentityError(Exception):
    """Base of every rule the domain refuses."""


class InvalidEmail(IdentityError):
    pass


class InvalidPassword(IdentityError):
    pass


class InvalidName(IdentityError):
    pass


class InvalidPasswordHash(IdentityError):
    pass


class InvalidAddress(IdentityError):
    pass


class EmailAlreadyRegistered(IdentityError):
    def __init__(self, email: str) -> None:
        super().__init__(f"an account with email {email} exists already")
        self.email = email


class RefreshTokenRejected(IdentityError):
    """A refresh token that may not be exchanged (expired, revoked or reused)."""


class RefreshTokenExpired(RefreshTokenRejected):
    pass


class RefreshTokenRevoked(RefreshTokenRejected):
    pass


class RefreshTokenReused(RefreshTokenRejected):
    """A token that was already exchanged came back: someone holds a copy of it."""

    def __init__(self, family_id: uuid.UUID) -> None:
        super().__init__("this refresh token was already used")
        self.family_id = family_id
