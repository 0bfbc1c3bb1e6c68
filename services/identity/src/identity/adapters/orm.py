"""identity's tables as SQLAlchemy 2 ORM models. Repositories map them to domain objects,
so nothing outside ``adapters`` sees a row."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from chassis.messaging.tables import outbox_table
from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Uuid,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


metadata = Base.metadata


class UserRow(Base):
    __tablename__ = "users"
    __table_args__ = (
        # The domain lower-cases emails; the database refuses anything that slipped past,
        # which keeps the unique constraint case-insensitive in effect.
        CheckConstraint("email = lower(email)", name="ck_users_email_lower"),
        CheckConstraint("roles <@ ARRAY['customer', 'admin']::varchar[] "
                        "AND 'customer' = ANY(roles)", name="ck_users_roles"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(Text)
    roles: Mapped[list[str]] = mapped_column(ARRAY(String(20)))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())
    # Grows with every change of the account: the ETag of its record (ADR 0031).
    version: Mapped[int] = mapped_column(Integer, server_default=text("1"))


class LoginFailureRow(Base):
    """Failed sign-ins per (account, client): see ``LoginThrottle``. The account is a digest
    of what was typed, so rows exist for unknown accounts too (no foreign key)."""

    __tablename__ = "login_failures"
    __table_args__ = (
        CheckConstraint("failures >= 0", name="ck_login_failures_failures"),
        Index("ix_login_failures_last_failure", "last_failure_at"),
    )

    account_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    client: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_failure_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    retry_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AddressRow(Base):
    __tablename__ = "addresses"
    __table_args__ = (
        Index("ix_addresses_user_created", "user_id", "created_at"),
        CheckConstraint("country ~ '^[A-Z]{2}$'", name="ck_addresses_country"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    line1: Mapped[str] = mapped_column(String(200))
    line2: Mapped[str | None] = mapped_column(String(200))
    city: Mapped[str] = mapped_column(String(100))
    postal_code: Mapped[str] = mapped_column(String(20))
    country: Mapped[str] = mapped_column(String(2))
    phone: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RefreshTokenRow(Base):
    __tablename__ = "refresh_tokens"
    __table_args__ = (
        Index("ix_refresh_tokens_family", "family_id"),
        Index("ix_refresh_tokens_user", "user_id"),
        Index("ix_refresh_tokens_expires", "expires_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    family_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SigningKeyRow(Base):
    __tablename__ = "signing_keys"
    __table_args__ = (
        # At most one active key: concurrent first starts or rotations cannot leave two.
        Index("ux_signing_keys_one_active", "active", unique=True,
              postgresql_where=text("active")),
        CheckConstraint("active = (retired_at IS NULL)", name="ck_signing_keys_retired"),
    )

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    private_pem: Mapped[str] = mapped_column(Text)
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    active: Mapped[bool] = mapped_column(server_default=false())
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class OAuthClientRow(Base):
    """A registered OAuth 2 client; a confidential one keeps only its secret's digest."""

    __tablename__ = "oauth_clients"
    __table_args__ = (
        CheckConstraint("cardinality(redirect_uris) >= 1", name="ck_oauth_clients_redirects"),
    )

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    redirect_uris: Mapped[list[str]] = mapped_column(ARRAY(Text))
    secret_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AuthorizationCodeRow(Base):
    """An authorization code by its digest, bound to client, redirect URI and challenge."""

    __tablename__ = "authorization_codes"
    __table_args__ = (
        Index("ix_authorization_codes_expires", "expires_at"),
    )

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("oauth_clients.client_id", ondelete="CASCADE"))
    redirect_uri: Mapped[str] = mapped_column(Text)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    code_challenge: Mapped[str] = mapped_column(String(43))
    scope: Mapped[str] = mapped_column(String(200))
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    refresh_family_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)


outbox = outbox_table(metadata)
