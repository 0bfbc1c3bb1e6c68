"""End to end through the edge: identity and catalog as a shop's customers and admins use them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import signal
import time
import uuid

import pytest
from edge_helpers import Platform, mercato, wait_until

pytestmark = pytest.mark.e2e


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict, claims: dict, signature: bytes = b"") -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}.{b64(signature)}"


def claims_for(sub: str, **over: object) -> dict:
    now = int(time.time())
    return {"iss": "mercato-identity", "aud": "mercato", "sub": sub, "roles": ["customer"],
            "iat": now, "exp": now + 600, **over}


def test_register_token_me_and_browse(platform: Platform) -> None:
    with platform.client() as c:
        user = platform.register(c)
        tokens = platform.login(c, user["email"], user["password"])
        assert tokens["token_type"].lower() == "bearer" and tokens["expires_in"] > 0
        me = c.get("/api/identity/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
        assert me.status_code == 200
        assert me.json()["email"] == user["email"] and "customer" in me.json()["roles"]

        listing = c.get("/api/catalog/products", params={"page_size": 10}).json()
        assert listing["total"] >= 50 and len(listing["items"]) == 10
        found = c.get("/api/catalog/products", params={"q": "tea"}).json()
        assert found["total"] >= 1
        assert all("tea" in (p["name"] + p["description"]).lower() for p in found["items"])
        one = c.get(f"/api/catalog/products/{listing['items'][0]['id']}")
        assert one.status_code == 200 and one.headers.get("etag")


def test_duplicate_registration_is_409(platform: Platform) -> None:
    with platform.client() as c:
        user = platform.register(c)
        again = c.post("/api/identity/register", json={
            "email": user["email"].upper(), "password": "another password", "name": "X"})
        assert again.status_code == 409
        assert again.headers["content-type"] == "application/problem+json"


def test_admin_creates_product_and_customer_cannot(platform: Platform) -> None:
    with platform.client() as c:
        admin = {"Authorization": f"Bearer {platform.admin_token(c)}"}
        user = platform.register(c)
        customer = {"Authorization":
                    f"Bearer {platform.login(c, user['email'], user['password'])['access_token']}"}
        sku = f"E2E-{uuid.uuid4().hex[:8].upper()}"
        body = {"sku": sku, "name": "Edge-tested teapot", "description": "Cast iron.",
                "category": "kitchen", "price": {"amount": "45000", "currency": "KRW"}}
        assert c.post("/api/catalog/products", json=body, headers=customer).status_code == 403
        assert c.post("/api/catalog/products", json=body).status_code == 401
        created = c.post("/api/catalog/products", json=body, headers=admin)
        assert created.status_code == 201, created.text
        found = c.get("/api/catalog/products", params={"q": sku}).json()
        assert [p["sku"] for p in found["items"]] == [sku]


def test_refresh_rotation_and_reuse_revokes_the_family(platform: Platform) -> None:
    with platform.client() as c:
        user = platform.register(c)
        first = platform.login(c, user["email"], user["password"])
        second = c.post("/api/identity/token", data={
            "grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
        assert second.status_code == 200
        second = second.json()
        assert second["refresh_token"] != first["refresh_token"]
        me = c.get("/api/identity/me", headers={"Authorization": f"Bearer {second['access_token']}"})
        assert me.status_code == 200

        reuse = c.post("/api/identity/token", data={
            "grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
        assert reuse.status_code in (400, 401)
        # The thief's reuse revoked the family: the newest refresh token is dead too.
        after = c.post("/api/identity/token", data={
            "grant_type": "refresh_token", "refresh_token": second["refresh_token"]})
        assert after.status_code in (400, 401)


def _real_token_parts(platform: Platform) -> tuple[str, dict, dict]:
    with platform.client() as c:
        user = platform.register(c)
        token = platform.login(c, user["email"], user["password"])["access_token"]
    header_b64, claims_b64, _ = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return (token, json.loads(base64.urlsafe_b64decode(pad(header_b64))),
            json.loads(base64.urlsafe_b64decode(pad(claims_b64))))


def _bad_tokens(platform: Platform) -> dict[str, str]:
    token, header, claims = _real_token_parts(platform)
    sub = claims["sub"]
    with platform.client() as c:
        jwk = c.get("/.well-known/jwks.json").json()["keys"][0]
    from cryptography.hazmat.primitives import serialization
    from jwt.algorithms import RSAAlgorithm

    public_pem = RSAAlgorithm.from_jwk(json.dumps(jwk)).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    hs_header = {"alg": "HS256", "typ": "JWT", "kid": header["kid"]}
    signing_input = f"{b64(json.dumps(hs_header).encode())}.{b64(json.dumps(claims_for(sub)).encode())}"
    hs256 = signing_input + "." + b64(hmac.new(public_pem, signing_input.encode(),
                                               hashlib.sha256).digest())
    h, _, s = token.split(".")
    tampered_claims = b64(json.dumps({**claims, "roles": ["customer", "admin"]}).encode())
    signing_key = platform_signing_key(platform)
    import jwt as pyjwt

    def signed(**over: object) -> str:
        return pyjwt.encode(claims_for(sub, **over), signing_key, algorithm="RS256",
                            headers={"kid": header["kid"]})

    return {
        "alg-none": forge({"alg": "none", "typ": "JWT", "kid": header["kid"]}, claims_for(sub)),
        "hs256-with-public-key": hs256,
        "expired": signed(exp=int(time.time()) - 3600, iat=int(time.time()) - 7200),
        "wrong-audience": signed(aud="someone-else"),
        "tampered-signature": f"{h}.{tampered_claims}.{s}",
    }


def stored_private_pems(platform: Platform, *, active_only: bool = False) -> list[str]:
    """identity's stored private keys (newest first), read from its database as a dump
    would show them."""
    import asyncio

    import asyncpg

    secrets = json.loads((platform.home / "secrets" / "postgres.json").read_text())
    port = platform.state()["ports"]["postgres"]

    async def read() -> list[str]:
        conn = await asyncpg.connect(host="127.0.0.1", port=port, user=secrets["user"],
                                     password=secrets["password"], database="identity")
        try:
            return [r["private_pem"] for r in await conn.fetch(
                "SELECT private_pem FROM signing_keys WHERE active OR NOT $1 "
                "ORDER BY created_at DESC", active_only)]
        finally:
            await conn.close()

    return asyncio.run(read())


def signing_key_secret(platform: Platform) -> str:
    return str(json.loads(
        (platform.home / "secrets" / "identity-signing-key.json").read_text())["secret"])


def platform_signing_key(platform: Platform) -> object:
    """The identity service's active private key, read from its database and decrypted with
    the home's secret (test-only forgery)."""
    from cryptography.hazmat.primitives import serialization

    pem = stored_private_pems(platform, active_only=True)[0]
    # Stored encrypted: the database alone is not enough, the home's secret is needed too.
    return serialization.load_pem_private_key(pem.encode(),
                                              password=signing_key_secret(platform).encode())


def test_bad_tokens_get_401_at_the_edge_and_at_the_service(platform: Platform) -> None:
    bad = _bad_tokens(platform)
    identity = next(p for n, p in platform.state()["processes"].items()
                    if n.startswith("identity") and p["state"] == "ready")
    direct = f"http://127.0.0.1:{identity['port']}/api/identity/me"
    import httpx2 as httpx

    with platform.client() as c:
        for name, token in bad.items():
            auth = {"Authorization": f"Bearer {token}"}
            at_edge = c.get("/api/identity/me", headers=auth)
            assert at_edge.status_code == 401, f"{name} at the edge: {at_edge.status_code}"
            at_service = httpx.get(direct, headers=auth, timeout=5)
            assert at_service.status_code == 401, f"{name} at the service: {at_service.text}"


def test_protected_calls_straight_to_a_service_without_token_get_401(platform: Platform) -> None:
    import httpx2 as httpx

    procs = platform.state()["processes"]
    catalog = next(p for n, p in procs.items() if n.startswith("catalog") and p["port"])
    identity = next(p for n, p in procs.items() if n.startswith("identity") and p["port"])
    body = {"sku": "DIRECT-1", "name": "x", "category": "kitchen",
            "price": {"amount": "1000", "currency": "KRW"}}
    resp = httpx.post(f"http://127.0.0.1:{catalog['port']}/api/catalog/products", json=body)
    assert resp.status_code == 401
    assert resp.headers["content-type"] == "application/problem+json"
    assert httpx.get(f"http://127.0.0.1:{identity['port']}/api/identity/me").status_code == 401


@pytest.mark.parametrize("params", [{"page": 0}, {"page_size": 1000}, {"page": "abc"}])
def test_bad_paging_is_4xx_problem_json(platform: Platform, params: dict) -> None:
    with platform.client() as c:
        resp = c.get("/api/catalog/products", params=params)
        assert resp.status_code == 422
        assert resp.headers["content-type"] == "application/problem+json"


def test_malformed_and_oversize_bodies_write_nothing(platform: Platform) -> None:
    email = f"ghost-{uuid.uuid4().hex[:10]}@example.com"
    with platform.client() as c:
        for content in (b'{"email": "' + email.encode() + b'", "password": ',
                        b"not json at all", b"[]"):
            resp = c.post("/api/identity/register", content=content,
                          headers={"content-type": "application/json"})
            assert resp.status_code == 422, resp.text
            assert resp.headers["content-type"] == "application/problem+json"
        huge = {"email": email, "password": "long enough pw", "name": "x" * (2 * 1024 * 1024)}
        resp = c.post("/api/identity/register", json=huge)
        assert resp.status_code == 413
        # Nothing was written: the address is still free.
        ok = c.post("/api/identity/register",
                    json={"email": email, "password": "long enough pw", "name": "Ghost"})
        assert ok.status_code == 201


def test_two_catalog_instances_serve_through_the_edge(platform: Platform) -> None:
    with platform.client() as c:
        request_ids = []
        for _ in range(40):
            resp = c.get("/api/catalog/products", params={"page_size": 1},
                         headers={"Connection": "close"})
            assert resp.status_code == 200
            assert "x-mercato-instance" not in resp.headers  # operators' business only
            request_ids.append(resp.headers["x-request-id"])
        seen = set(platform.served_by(request_ids).values())
        assert {"catalog-1", "catalog-2"} <= seen, seen


def test_kill_9_of_a_service_is_restarted_and_traffic_works(platform: Platform) -> None:
    before = platform.state()["processes"]["catalog-1"]
    os.kill(before["pid"], signal.SIGKILL)

    def restarted() -> bool:
        now = platform.state()["processes"]["catalog-1"]
        return (now["restarts"] > before["restarts"] and now["state"] == "ready"
                and now["pid"] != before["pid"])

    wait_until(restarted, 60, "catalog-1 to be restarted and ready")
    with platform.client() as c:
        def served_by_restarted() -> bool:
            ids = []
            for _ in range(4):
                resp = c.get("/api/catalog/products", headers={"Connection": "close"})
                assert resp.status_code == 200
                ids.append(resp.headers["x-request-id"])
            return "catalog-1" in platform.served_by(ids).values()

        # The restarted instance re-registers and the edge routes to it again.
        wait_until(served_by_restarted, 45, "the edge to route to the restarted catalog-1",
                   interval=0.05)
        for _ in range(20):
            assert c.get("/api/catalog/products").status_code == 200


def test_up_twice_says_already_running_and_status_reports(platform: Platform) -> None:
    again = mercato(platform.home, "up", "--detach", timeout=60)
    assert "already running" in (again.stdout + again.stderr).lower()
    status = json.loads(mercato(platform.home, "status", "--json").stdout)
    text = json.dumps(status)
    for name in ("postgres", "nats", "envoy", "identity-1", "catalog-1", "catalog-2"):
        assert name in text, name


def test_identity_keeps_its_signing_keys_encrypted_with_the_homes_secret(
        platform: Platform) -> None:
    """A dump of identity's database alone must not let anyone forge tokens: `mercato up`
    gives identity a secret of the home's own, and the stored private keys are encrypted."""
    stored = stored_private_pems(platform)
    assert stored and all(p.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----") for p in stored)
    assert signing_key_secret(platform)
