"""Registry, discovery, readiness and JWKS against a real NATS JetStream and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import ClassVar

import aiohttp
import jwt
import nats
import pytest
from aiohttp import web
from chassis import registry as reg
from chassis.app import create_service_app
from chassis.auth import RemoteJwks, TokenVerifier
from chassis.discovery import Resolver
from chassis.errors import ServiceUnavailable, Unauthorized
from chassis.settings import ServiceSettings
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from jwt.algorithms import RSAAlgorithm

pytestmark = pytest.mark.integration


class ProbeSettings(ServiceSettings):
    service_name: ClassVar[str] = "probe"


async def test_registration_lifecycle(nats_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reg, "HEARTBEAT_EVERY_S", 0.1)
    nc = await nats.connect(nats_url)
    try:
        client = reg.RegistryClient(nc)
        one = reg.Registration(client, service="probe", instance_id="probe-1",
                               host="127.0.0.1", port=1111)
        two = reg.Registration(client, service="probe", instance_id="probe-2",
                               host="127.0.0.1", port=2222)
        await one.start()
        await two.start()
        found = await client.instances("probe")
        assert [i.instance_id for i in found] == ["probe-1", "probe-2"]
        first_beat = found[0].heartbeat_at
        await asyncio.sleep(0.35)
        again = await client.instances("probe")
        assert again[0].heartbeat_at > first_beat  # the heartbeat refreshes the entry
        await one.stop()  # clean shutdown deregisters at once
        assert [i.instance_id for i in await client.instances("probe")] == ["probe-2"]
        await two.stop()
        assert await client.instances("probe") == []
    finally:
        await nc.close()


async def test_stale_entries_are_ignored(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        client = reg.RegistryClient(nc)
        dead = reg.Instance(service="ghost", instance_id="ghost-1", host="127.0.0.1", port=9,
                            pid=1, started_at=time.time() - 60,
                            heartbeat_at=time.time() - reg.STALE_AFTER_S - 1)
        await client.put(dead)  # a SIGKILLed process never deletes its entry
        assert await client.instances("ghost") == []
    finally:
        await nc.close()


async def test_resolver_turns_service_names_into_instance_urls(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        client = reg.RegistryClient(nc)
        r = reg.Registration(client, service="pricing", instance_id="pricing-1",
                             host="127.0.0.1", port=4321)
        await r.start()
        resolver = Resolver(lambda: client)
        assert await resolver.resolve_url("http://pricing/a?b=1") == "http://127.0.0.1:4321/a?b=1"
        assert await resolver.resolve_url("http://127.0.0.1:80/x") == "http://127.0.0.1:80/x"
        # A name with a port is a DNS name (Kubernetes, compose): used as written, even when
        # the registry knows a service of that name.
        assert await resolver.resolve_url("http://pricing:8000/a") == "http://pricing:8000/a"
        with pytest.raises(ServiceUnavailable):
            await resolver.resolve_url("http://nobody/x")
        await r.stop()
    finally:
        await nc.close()


def test_ready_checks_database_and_nats(fresh_database: str, nats_url: str) -> None:
    settings = ProbeSettings(database_url=fresh_database, nats_url=nats_url,
                             instance_id="probe-9", port=5999)
    app = create_service_app(settings, routers=[])
    with TestClient(app) as client:
        deadline = time.monotonic() + 10
        while client.get("/health/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        body = client.get("/health/ready").json()
        assert body["checks"] == {"database": "ok", "nats": "ok"}

        async def registered() -> list[reg.Instance]:
            nc = await nats.connect(nats_url)
            try:
                return await reg.RegistryClient(nc).instances("probe")
            finally:
                await nc.close()

        assert [i.port for i in asyncio.run(registered())] == [5999]
    assert asyncio.run(registered()) == []  # deregistered on clean shutdown


def test_nats_unreachable_is_degraded_not_unready(fresh_database: str) -> None:
    """The instance can take requests (writes wait in the outbox): routable, the broker
    reported; only the strict form (what start-up waits for) says no."""
    settings = ProbeSettings(database_url=fresh_database, nats_url="nats://127.0.0.1:1")
    with TestClient(create_service_app(settings, routers=[])) as client:
        assert client.get("/health/live").status_code == 200
        resp = client.get("/health/ready")
        assert resp.status_code == 200
        assert resp.json()["status"] == "degraded"
        assert resp.json()["checks"]["database"] == "ok"
        assert resp.json()["checks"]["nats"].startswith("degraded: not connected")
        strict = client.get("/health/ready?strict=true")
        assert strict.status_code == 503 and strict.headers["Retry-After"] == "2"
        assert strict.json()["checks"]["nats"].startswith("failing: not connected")


def test_database_unreachable_is_not_ready(nats_url: str) -> None:
    settings = ProbeSettings(database_url="postgresql+asyncpg://probe:pw@127.0.0.1:1/probe",
                             nats_url=nats_url)
    with TestClient(create_service_app(settings, routers=[])) as client:
        resp = client.get("/health/ready")
        assert resp.status_code == 503 and resp.headers["Retry-After"] == "2"
        assert resp.headers["content-type"] == "application/problem+json"
        assert resp.json()["checks"]["database"].startswith("failing: ConnectionRefusedError")
        assert 'dependency_up{dependency="database",service="probe"} 0.0' in client.get("/metrics").text


@contextlib.asynccontextmanager
async def _jwks_served(
        answer: Callable[[web.Request], Awaitable[web.Response]],
) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    """``answer`` served at a local ``/jwks``: its URL, and a client session to fetch it."""
    app = web.Application()
    app.router.add_get("/jwks", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    session = aiohttp.ClientSession()
    try:
        yield f"http://127.0.0.1:{port}/jwks", session
    finally:
        await session.close()
        await runner.cleanup()


def _jwk(kid: str, key: rsa.RSAPrivateKey) -> dict[str, object]:
    return {**json.loads(RSAAlgorithm.to_jwk(key.public_key())), "kid": kid, "alg": "RS256",
            "use": "sig"}


async def test_remote_jwks_refetches_on_unknown_kid_after_rotation() -> None:
    """Key rotation: a token with a new kid verifies once the JWKS has it (one refetch)."""
    keys = {"k1": rsa.generate_private_key(public_exponent=65537, key_size=2048)}
    fetches = 0

    async def jwks(_: web.Request) -> web.Response:
        nonlocal fetches
        fetches += 1
        return web.json_response({"keys": [_jwk(kid, k) for kid, k in keys.items()]})

    async with _jwks_served(jwks) as (url, session):
        source = RemoteJwks(url, lambda: session, min_refetch_s=0)
        verifier = TokenVerifier(source, issuer="iss", audience="aud")

        def token(kid: str) -> str:
            now = int(time.time())
            return jwt.encode({"iss": "iss", "aud": "aud", "sub": "u1", "exp": now + 60,
                               "roles": ["customer"]}, keys[kid], algorithm="RS256",
                              headers={"kid": kid})

        assert (await verifier.verify(token("k1"))).subject == "u1"
        assert (await verifier.verify(token("k1"))).subject == "u1"
        assert fetches == 1  # cached
        keys["k2"] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        assert (await verifier.verify(token("k2"))).subject == "u1"
        assert fetches == 2  # refetched for the unknown kid
        forged = jwt.encode({"iss": "iss", "aud": "aud", "sub": "u1",
                             "exp": int(time.time()) + 60}, keys["k2"], algorithm="RS256",
                            headers={"kid": "nope"})
        with pytest.raises(Unauthorized):
            await verifier.verify(forged)


async def test_unreachable_jwks_is_503_not_500_and_not_401() -> None:
    """A token with a key we cannot fetch: neither 'you are logged out' (401) nor a crash."""
    from chassis.errors import ServiceUnavailable
    from chassis.testing import TokenMinter

    class Broken(Exception):
        pass

    async def resolve(_: str) -> str:
        raise Broken("registry timed out")

    session = aiohttp.ClientSession()
    try:
        verifier = TokenVerifier(RemoteJwks("http://identity/jwks", lambda: session,
                                            resolve=resolve), issuer="mercato-identity",
                                 audience="mercato")
        with pytest.raises(ServiceUnavailable):
            await verifier.verify(TokenMinter().token())
    finally:
        await session.close()


async def test_resolver_serves_the_last_answer_when_the_registry_fails(nats_url: str) -> None:
    import chassis.discovery as discovery

    nc = await nats.connect(nats_url)
    try:
        client = reg.RegistryClient(nc)
        r = reg.Registration(client, service="stally", instance_id="stally-1",
                             host="127.0.0.1", port=4322)
        await r.start()
        now = [0.0]
        resolver = Resolver(lambda: client, clock=lambda: now[0])
        assert await resolver.resolve_url("http://stally/x") == "http://127.0.0.1:4322/x"

        async def failing(service: str | None = None) -> list[reg.Instance]:
            raise TimeoutError("nats: timeout")

        client.instances = failing  # type: ignore[method-assign]
        now[0] += discovery.FRESH_FOR_S + 1  # what the resolver knows is stale now
        assert await resolver.resolve_url("http://stally/x") == "http://127.0.0.1:4322/x"
        with pytest.raises(ServiceUnavailable):
            await resolver.resolve_url("http://never-seen/x")
        await r.stop()
        await resolver.close()
    finally:
        await nc.close()


async def test_listing_never_comes_back_empty_while_instances_heartbeat(
        nats_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under heartbeats from many instances the listing must always see them all: an empty
    answer would empty the edge's clusters (seen with nats-py's kv.keys() under load)."""
    monkeypatch.setattr(reg, "HEARTBEAT_EVERY_S", 0.01)
    nc = await nats.connect(nats_url)
    client = reg.RegistryClient(nc)
    regs = [reg.Registration(client, service="busy", instance_id=f"busy-{i}",
                             host="127.0.0.1", port=5000 + i) for i in range(8)]
    try:
        # Bounded: on a starved machine a request may time out, and the test must then fail
        # rather than hang until pytest's own timeout.
        async with asyncio.timeout(60):
            for r in regs:
                await r.start()
            counts = [len(await client.instances("busy")) for _ in range(100)]
            assert counts == [8] * 100
            await regs[0].stop()  # a deregistered key leaves a delete marker behind
            assert len(await client.instances("busy")) == 7
            for r in regs[1:]:
                await r.stop()
            assert await client.instances("busy") == []
    finally:
        for r in regs:  # no heartbeat left running behind a failed assertion
            with contextlib.suppress(Exception):
                await asyncio.wait_for(r.stop(), 5)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), 10)


async def test_warming_the_keys_while_identity_starts_is_not_a_warning(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A service usually starts before identity answers: its first tries fail. They are
    logged at info, and a warning only when the keys are still unreachable at the end."""
    import chassis.auth
    from chassis.testing import LogRecorder

    logged = LogRecorder()
    monkeypatch.setattr(chassis.auth, "log", logged)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    answered = 0

    async def jwks(_: web.Request) -> web.Response:
        nonlocal answered
        answered += 1
        if answered <= 2:  # identity still starting
            return web.Response(status=503)
        return web.json_response({"keys": [_jwk("k1", key)]})

    async with _jwks_served(jwks) as (url, session):
        assert await RemoteJwks(url, lambda: session).warm(give_up_after_s=10)
        assert answered == 3
        assert logged.events() == [("info", "jwks_not_ready")] * 2
        # Nothing answers: a warning once, at the end.
        logged.lines.clear()
        assert not await RemoteJwks("http://127.0.0.1:1/jwks", lambda: session).warm(
            give_up_after_s=0.5)
        *tries, (level, event, last) = logged.lines
        assert (level, event) == ("warning", "jwks_fetch_failed")
        assert "ClientConnectorError" in str(last["error"]) and last["tries"] == len(tries) >= 2
        assert {level for level, _, _ in tries} == {"info"}
