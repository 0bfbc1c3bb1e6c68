"""Signed registry entries: an instance signs its entry, readers verify it.

The broker's permissions already let a service write only its own registry keys. Signing
also holds when the broker itself is not to be trusted (a leaked broker credential, an
operator mistake in its permissions): an entry counts only if it is signed with the private
key of the service it names. The runtime makes one ed25519 key pair per service and home;
each service gets its private key, every reader gets the public keys of all services.

What is signed is the entry's JSON with sorted keys and without ``sig``. The heartbeat time
is part of it, so a copied entry goes stale like any other (``STALE_AFTER_S``).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

SIGNATURE_FIELD = "sig"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_key_pair() -> tuple[str, str]:
    """A fresh (private, public) pair, each as unpadded base64url of the raw 32 bytes."""
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return _b64(private.private_bytes_raw()), _b64(public)


def public_key_of(private_b64: str) -> str:
    private = Ed25519PrivateKey.from_private_bytes(_unb64(private_b64))
    return _b64(private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


def private_key_of(private_b64: str) -> Ed25519PrivateKey:
    try:
        return Ed25519PrivateKey.from_private_bytes(_unb64(private_b64))
    except (ValueError, binascii.Error) as exc:
        raise ValueError("the registry signing key is not a base64url ed25519 "
                         "private key") from exc


def signed_bytes(fields: Mapping[str, Any]) -> bytes:
    return orjson.dumps({k: v for k, v in fields.items() if k != SIGNATURE_FIELD},
                        option=orjson.OPT_SORT_KEYS)


class EntrySigner:
    """Signs this service's own entries."""

    def __init__(self, private_b64: str) -> None:
        self._key = private_key_of(private_b64)

    def sign(self, fields: Mapping[str, Any]) -> str:
        return _b64(self._key.sign(signed_bytes(fields)))


class TrustedKeys:
    """The public key of every service whose entries a reader accepts."""

    def __init__(self, keys: Mapping[str, str]) -> None:
        self._keys: dict[str, Ed25519PublicKey] = {}
        for service, public_b64 in keys.items():
            try:
                self._keys[service] = Ed25519PublicKey.from_public_bytes(_unb64(public_b64))
            except (ValueError, binascii.Error) as exc:
                raise ValueError(f"the registry key of {service!r} is not a base64url "
                                 "ed25519 public key") from exc

    def __bool__(self) -> bool:
        return bool(self._keys)

    def public_key(self, service: str) -> Ed25519PublicKey | None:
        return self._keys.get(service)

    def verifies(self, service: str, fields: Mapping[str, Any]) -> bool:
        """True if ``fields`` carry a valid signature by ``service``'s key."""
        key = self._keys.get(service)
        signature = fields.get(SIGNATURE_FIELD)
        if key is None or not isinstance(signature, str):
            return False
        try:
            key.verify(_unb64(signature), signed_bytes(fields))
        except (InvalidSignature, ValueError, binascii.Error):
            return False
        return True
