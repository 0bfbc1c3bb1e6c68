"""RS256 signing keys: kept in PostgreSQL, cached in memory, published as a JWKS.

One key is active (it signs); retired keys stay published for a grace period so that every
token they signed can still be verified until it expires. Instances share the table, so a
rotation done on one is picked up by the others within ``cache_s``.

With a secret, private keys are stored as encrypted PKCS#8 (cryptography's best available
scheme: AES-256-CBC, key from PBKDF2-HMAC-SHA256), so the table alone signs nothing. Keys
stored in the clear before the secret was set are encrypted when the ring starts.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from chassis.db import Database
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from sqlalchemy import delete, or_, select, text, update

from identity.adapters.orm import SigningKeyRow
from identity.service_layer.ports import Clock

log = structlog.get_logger("identity.keys")

# Serialises rotations and first-key creation across instances (any constant unique in
# identity's own database; the migrations lock uses another).
_KEYS_LOCK = 4_242_001


_ENCRYPTED_PEM = "-----BEGIN ENCRYPTED PRIVATE KEY-----"


class SigningKeySecretError(RuntimeError):
    """The stored keys cannot be read with the configured secret (or without one)."""


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    private_key: rsa.RSAPrivateKey
    public_key: rsa.RSAPublicKey
    public_jwk: dict[str, Any]
    created_at: datetime
    retired_at: datetime | None

    @property
    def active(self) -> bool:
        return self.retired_at is None


@dataclass(frozen=True, slots=True)
class NewKeyMaterial:
    kid: str
    private_pem: str
    public_jwk: dict[str, Any]


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 thumbprint: a kid derived from the key itself, the same on every instance."""
    canonical = json.dumps({"e": jwk["e"], "kty": jwk["kty"], "n": jwk["n"]},
                           separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()) \
        .rstrip(b"=").decode()


def _pem(private: rsa.RSAPrivateKey, secret: bytes | None) -> str:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(secret) if secret
        else serialization.NoEncryption())
    return private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 encryption).decode()


def generate_key_material(secret: bytes | None = None) -> NewKeyMaterial:
    """A fresh RSA 2048 key (CPU-heavy for ~0.1 s: call it in a thread)."""
    private = rsa.generate_private_key(public_exponent=65_537, key_size=2048)
    pem = _pem(private, secret)
    jwk: dict[str, Any] = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    kid = jwk_thumbprint(jwk)
    # "use" alone: RFC 7517 §4.3 advises against publishing both "use" and "key_ops".
    jwk.pop("key_ops", None)
    jwk.update(kid=kid, use="sig", alg="RS256")
    return NewKeyMaterial(kid=kid, private_pem=pem, public_jwk=jwk)


def _private_key(pem: str, secret: bytes | None, kid: str) -> rsa.RSAPrivateKey:
    encrypted = pem.startswith(_ENCRYPTED_PEM)
    if encrypted and not secret:
        raise SigningKeySecretError(
            f"signing key {kid} is stored encrypted: set IDENTITY_SIGNING_KEY_SECRET to the "
            "secret it was encrypted with")
    try:
        private = serialization.load_pem_private_key(
            pem.encode(), password=secret if encrypted else None)
    except ValueError as exc:
        if not encrypted:
            raise
        raise SigningKeySecretError(
            f"signing key {kid} cannot be decrypted: IDENTITY_SIGNING_KEY_SECRET is not the "
            "secret it was encrypted with") from exc
    if not isinstance(private, rsa.RSAPrivateKey):
        raise ValueError(f"signing key {kid} is not an RSA key")
    return private


def _load(row: SigningKeyRow, secret: bytes | None) -> SigningKey:
    private = _private_key(row.private_pem, secret, row.kid)
    return SigningKey(kid=row.kid, private_key=private, public_key=private.public_key(),
                      public_jwk=dict(row.public_jwk), created_at=row.created_at,
                      retired_at=row.retired_at)


class KeyRing:
    """identity's signing keys; also the chassis ``KeySource`` for identity's own checks."""

    def __init__(self, db: Database, *, publication_grace: timedelta, cache_s: float,
                 unknown_kid_refetch_s: float, clock: Clock,
                 publish_lead: timedelta = timedelta(0), secret: bytes | None = None) -> None:
        self._db = db
        self._secret = secret or None
        self._grace = publication_grace
        self._lead = publish_lead
        self._cache_s = cache_s
        self._refetch_s = unknown_kid_refetch_s
        self._clock = clock
        self._keys: dict[str, SigningKey] = {}
        self._active: SigningKey | None = None
        self._loaded_at = -math.inf
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Loads the keys; creates the first one on the very first start. With a secret,
        keys stored in the clear are encrypted first."""
        if self._secret:
            await self._encrypt_stored_keys()
        await self._reload()
        if self._active is None:
            material = await asyncio.to_thread(generate_key_material, self._secret)
            await self._install(material, retire_current=False)

    async def _encrypt_stored_keys(self) -> None:
        async with self._db.sessions() as session, session.begin():
            await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _KEYS_LOCK})
            rows = (await session.scalars(select(SigningKeyRow).where(
                ~SigningKeyRow.private_pem.startswith(_ENCRYPTED_PEM)))).all()
            for row in rows:
                private = _private_key(row.private_pem, None, row.kid)
                row.private_pem = await asyncio.to_thread(_pem, private, self._secret)
        if rows:
            log.info("signing_keys_encrypted", kids=[row.kid for row in rows])

    def _published(self, key: SigningKey, now: datetime) -> bool:
        return key.retired_at is None or now < key.retired_at + self._grace

    async def _reload(self) -> None:
        now = self._clock()
        async with self._db.sessions() as session:
            rows = (await session.scalars(select(SigningKeyRow).where(or_(
                SigningKeyRow.retired_at.is_(None),
                SigningKeyRow.retired_at > now - self._grace)))).all()
        keys: dict[str, SigningKey] = {}
        for row in rows:
            cached = self._keys.get(row.kid)
            # Parsing a PEM costs milliseconds; only keys new to this instance are parsed.
            key = _load(row, self._secret) if cached is None else cached
            if key.retired_at != row.retired_at:
                key = SigningKey(kid=key.kid, private_key=key.private_key,
                                 public_key=key.public_key, public_jwk=key.public_jwk,
                                 created_at=key.created_at, retired_at=row.retired_at)
            keys[row.kid] = key
        self._keys = keys
        self._active = next((k for k in keys.values() if k.active), None)
        self._loaded_at = time.monotonic()

    async def _reload_if_older_than(self, max_age_s: float) -> None:
        if time.monotonic() - self._loaded_at < max_age_s:
            return
        async with self._lock:
            if time.monotonic() - self._loaded_at >= max_age_s:
                await self._reload()

    async def _install(self, material: NewKeyMaterial, *, retire_current: bool) -> None:
        now = self._clock()
        async with self._db.sessions() as session, session.begin():
            await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _KEYS_LOCK})
            has_active = await session.scalar(
                select(SigningKeyRow.kid).where(SigningKeyRow.active))
            if has_active is not None and not retire_current:
                return  # another instance created the first key while this one waited
            await session.execute(update(SigningKeyRow).where(SigningKeyRow.active)
                                  .values(active=False, retired_at=now))
            # Keys past their grace can verify nothing that is still valid: drop them, and
            # their private halves with them.
            await session.execute(delete(SigningKeyRow).where(
                SigningKeyRow.retired_at <= now - self._grace))
            session.add(SigningKeyRow(kid=material.kid, private_pem=material.private_pem,
                                      public_jwk=material.public_jwk, created_at=now,
                                      active=True, retired_at=None))
        async with self._lock:
            await self._reload()
        log.info("signing_key_installed", kid=material.kid, rotated=retire_current)

    async def rotate(self) -> str:
        material = await asyncio.to_thread(generate_key_material, self._secret)
        await self._install(material, retire_current=True)
        return material.kid

    async def active_key(self) -> SigningKey:
        """The key to sign with now. For ``publish_lead`` after a rotation that is still the
        key it replaced: the new one is published at once, but caches (the edge's JWKS) need
        time to fetch it before tokens signed with it can be checked everywhere."""
        await self._reload_if_older_than(self._cache_s)
        active = self._active
        if active is None:
            raise RuntimeError("identity has no active signing key; was the key ring started?")
        if self._clock() >= active.created_at + self._lead:
            return active
        replaced = [k for k in self._keys.values()
                    if k.retired_at is not None and k.retired_at >= active.created_at]
        return max(replaced, key=lambda k: k.created_at, default=active)

    async def key_for(self, kid: str) -> Any | None:
        key = self._keys.get(kid)
        if key is None:
            # Maybe rotated on another instance; re-read, but not for every forged kid.
            await self._reload_if_older_than(self._refetch_s)
            key = self._keys.get(kid)
        if key is None or not self._published(key, self._clock()):
            return None
        return key.public_key

    async def jwks(self) -> dict[str, Any]:
        await self._reload_if_older_than(self._cache_s)
        now = self._clock()
        published = sorted((k for k in self._keys.values() if self._published(k, now)),
                           key=lambda k: (not k.active, -k.created_at.timestamp()))
        return {"keys": [k.public_jwk for k in published]}
