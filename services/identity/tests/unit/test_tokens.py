"""Access tokens: issued by identity, verified by the chassis verifier every service uses,
and the classic forgeries, each refused with 401."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from chassis.auth import TokenVerifier, keys_from_jwks
from chassis.errors import Unauthorized
from cryptography.hazmat.primitives import serialization
from identity.adapters.keys import SigningKey, generate_key_material, jwk_thumbprint
from identity.adapters.tokens import JwtIssuer
from identity.domain.model import Role, User

ISSUER, AUDIENCE = "mercato-identity", "mercato"


def _signing_key(retired_at: datetime | None = None) -> SigningKey:
    material = generate_key_material()
    private = serialization.load_pem_private_key(material.private_pem.encode(), password=None)
    return SigningKey(kid=material.kid, private_key=private,  # type: ignore[arg-type]
                      public_key=private.public_key(),  # type: ignore[arg-type]
                      public_jwk=material.public_jwk, created_at=datetime.now(UTC),
                      retired_at=retired_at)


class MemoryKeys:
    """The two faces of identity's key ring: signing and lookup by kid."""

    def __init__(self, *keys: SigningKey) -> None:
        self.keys = {k.kid: k for k in keys}
        self.active = keys[0]

    async def active_key(self) -> SigningKey:
        return self.active

    async def key_for(self, kid: str) -> Any | None:
        key = self.keys.get(kid)
        return key.public_key if key else None


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return _signing_key()


@pytest.fixture
def keys(key: SigningKey) -> MemoryKeys:
    return MemoryKeys(key)


@pytest.fixture
def verifier(keys: MemoryKeys) -> TokenVerifier:
    return TokenVerifier(keys, issuer=ISSUER, audience=AUDIENCE)


def _user() -> User:
    return User.register(email="ann@example.com", name="Ann", password_hash="h",
                         now=datetime.now(UTC), roles=frozenset({Role.ADMIN}))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": ISSUER, "aud": AUDIENCE, "sub": "5f0c4c8e-0000-4000-8000-000000000001",
            "roles": ["customer"], "email": "ann@example.com", "iat": now, "exp": now + 900,
            "jti": "x", **overrides}


def _sign(key: SigningKey, claims: dict[str, Any], **headers: Any) -> str:
    return jwt.encode(claims, key.private_key, algorithm="RS256",
                      headers={"kid": key.kid, **headers})


async def test_issued_token_round_trips_through_the_chassis_verifier(
        keys: MemoryKeys, verifier: TokenVerifier, key: SigningKey) -> None:
    user = _user()
    now = datetime.now(UTC)
    issued = await JwtIssuer(keys, issuer=ISSUER, audience=AUDIENCE, ttl_s=900).issue(user, now)
    assert issued.expires_in == 900 and issued.kid == key.kid
    header = jwt.get_unverified_header(issued.token)
    assert header == {"alg": "RS256", "kid": key.kid, "typ": "JWT"}

    principal = await verifier.verify(issued.token)
    assert principal.subject == str(user.id)
    assert principal.roles == {"customer", "admin"} and principal.is_admin
    assert principal.email == "ann@example.com"
    claims = principal.claims
    assert set(claims) == {"iss", "aud", "sub", "roles", "email", "iat", "exp", "jti"}
    assert (claims["iss"], claims["aud"]) == (ISSUER, AUDIENCE)
    assert claims["exp"] - claims["iat"] == 900
    assert claims["iat"] == int(now.timestamp())
    assert claims["roles"] == ["admin", "customer"]


async def test_every_token_has_its_own_jti(keys: MemoryKeys) -> None:
    issuer = JwtIssuer(keys, issuer=ISSUER, audience=AUDIENCE, ttl_s=900)
    user, now = _user(), datetime.now(UTC)
    first, second = await issuer.issue(user, now), await issuer.issue(user, now)
    assert jwt.decode(first.token, options={"verify_signature": False})["jti"] != \
        jwt.decode(second.token, options={"verify_signature": False})["jti"]


def test_published_jwk_verifies_and_its_kid_is_the_rfc7638_thumbprint(key: SigningKey) -> None:
    jwk = key.public_jwk
    assert jwk["kid"] == jwk_thumbprint(jwk) == key.kid
    assert (jwk["kty"], jwk["alg"], jwk["use"]) == ("RSA", "RS256", "sig")
    assert "d" not in jwk and "p" not in jwk  # never the private half
    assert key.private_key.key_size == 2048
    published = keys_from_jwks({"keys": [jwk]})[key.kid]
    claims = jwt.decode(_sign(key, _claims()), published, algorithms=["RS256"], audience=AUDIENCE)
    assert claims["iss"] == ISSUER


async def _refused(verifier: TokenVerifier, token: str) -> Unauthorized:
    with pytest.raises(Unauthorized) as caught:
        await verifier.verify(token)
    assert caught.value.status == 401
    return caught.value


async def test_alg_none_is_refused(verifier: TokenVerifier, key: SigningKey) -> None:
    header = _b64(json.dumps({"alg": "none", "kid": key.kid, "typ": "JWT"}).encode())
    payload = _b64(json.dumps(_claims(roles=["admin"])).encode())
    for token in (f"{header}.{payload}.", f"{header}.{payload}"):
        await _refused(verifier, token)


async def test_hs256_signed_with_the_public_key_is_refused(verifier: TokenVerifier,
                                                           key: SigningKey) -> None:
    # The algorithm-confusion attack: a verifier that let the header pick the algorithm
    # would check an HMAC keyed with the (public) PEM and accept this.
    public_pem = key.public_key.public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    signing_input = ".".join((
        _b64(json.dumps({"alg": "HS256", "kid": key.kid, "typ": "JWT"}).encode()),
        _b64(json.dumps(_claims(roles=["admin"])).encode())))
    signature = _b64(hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest())
    error = await _refused(verifier, f"{signing_input}.{signature}")
    assert "algorithm" in str(error.detail)


async def test_expired_token_is_refused(verifier: TokenVerifier, key: SigningKey) -> None:
    past = int(time.time()) - 3600
    error = await _refused(verifier, _sign(key, _claims(iat=past - 900, exp=past)))
    assert "expired" in str(error.detail)


async def test_wrong_audience_is_refused(verifier: TokenVerifier, key: SigningKey) -> None:
    await _refused(verifier, _sign(key, _claims(aud="another-platform")))


async def test_wrong_issuer_is_refused(verifier: TokenVerifier, key: SigningKey) -> None:
    await _refused(verifier, _sign(key, _claims(iss="https://evil.example")))


@pytest.mark.parametrize("missing", ["exp", "iss", "aud", "sub"])
async def test_missing_required_claims_are_refused(verifier: TokenVerifier, key: SigningKey,
                                                   missing: str) -> None:
    claims = _claims()
    del claims[missing]
    await _refused(verifier, _sign(key, claims))


async def test_tampered_payload_is_refused(verifier: TokenVerifier, key: SigningKey) -> None:
    header, _, signature = _sign(key, _claims()).split(".")
    promoted = _b64(json.dumps(_claims(roles=["customer", "admin"])).encode())
    await _refused(verifier, f"{header}.{promoted}.{signature}")


async def test_tampered_signature_is_refused(verifier: TokenVerifier, key: SigningKey) -> None:
    header, payload, signature = _sign(key, _claims()).split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[10] ^= 0x01
    await _refused(verifier, f"{header}.{payload}.{_b64(bytes(raw))}")


async def test_unknown_kid_is_refused(verifier: TokenVerifier) -> None:
    stranger = _signing_key()  # a well-formed RS256 token from a key identity never had
    error = await _refused(verifier, _sign(stranger, _claims()))
    assert "unknown key" in str(error.detail)


async def test_token_signed_by_another_key_under_our_kid_is_refused(
        verifier: TokenVerifier, key: SigningKey) -> None:
    stranger = _signing_key()
    await _refused(verifier, jwt.encode(_claims(), stranger.private_key, algorithm="RS256",
                                        headers={"kid": key.kid}))


async def test_garbage_is_refused(verifier: TokenVerifier) -> None:
    for token in ("", "abc", "a.b.c", "Bearer x.y.z"):
        await _refused(verifier, token)


async def test_a_retired_key_keeps_verifying_while_the_new_one_signs(key: SigningKey) -> None:
    old = _signing_key(retired_at=datetime.now(UTC) - timedelta(minutes=1))
    keys = MemoryKeys(key, old)
    verifier = TokenVerifier(keys, issuer=ISSUER, audience=AUDIENCE)
    assert (await verifier.verify(_sign(old, _claims()))).subject
    issued = await JwtIssuer(keys, issuer=ISSUER, audience=AUDIENCE,
                             ttl_s=900).issue(_user(), datetime.now(UTC))
    assert issued.kid == key.kid
    assert (await verifier.verify(issued.token)).email == "ann@example.com"
