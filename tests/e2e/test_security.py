"""The platform's local doors, as `mercato up` leaves them (docs/security.md).

The broker takes only the home's identities, each on its own subjects; a forged registry
entry reaches neither the edge nor a service's discovery; the simulators' APIs and Envoy's
admin answer only the home's owner; and the platform itself keeps working through them
(the other e2e tests, `mercato status`).
"""

from __future__ import annotations

import asyncio
import json
import socket
import stat
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict

import httpx2 as httpx
import jwt
import nats
import pytest
from aiohttp import web
from chassis.registry import Instance, open_bucket
from cryptography.hazmat.primitives.asymmetric import rsa
from edge_helpers import Platform, mercato, wait_until
from jwt.algorithms import RSAAlgorithm
from mercato.runtime.broker import connect_options, nats_user
from mercato.runtime.paths import Home

pytestmark = pytest.mark.e2e


def _nats_url(platform: Platform) -> str:
    return f"nats://127.0.0.1:{platform.state()['ports']['nats']}"


def _secret(platform: Platform, name: str) -> dict:
    return json.loads((platform.home / "secrets" / f"{name}.json").read_text())


def test_the_broker_takes_only_the_homes_identities_each_on_its_own_subjects(
        platform: Platform) -> None:
    url = _nats_url(platform)

    async def check() -> None:
        with pytest.raises((nats.errors.Error, nats.errors.NoServersError)):
            await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0,
                               connect_timeout=3)
        errors: list[str] = []

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc).lower())

        # catalog's own credentials, as the supervisor gave them.
        nc = await nats.connect(url, error_cb=on_error, allow_reconnect=False,
                                nkeys_seed_str=nats_user(Home(platform.home), "catalog").seed,
                                inbox_prefix="_INBOX_catalog")
        try:
            for subject in ("orders.events.order_approved", "payments.commands.capture_payment",
                            "$KV.mercato_registry.identity.identity-1"):
                await nc.publish(subject, b"{}")
            await nc.subscribe("payments.commands.>")
            await nc.flush()
            wanted = ['publish to "orders.events.order_approved"',
                      'publish to "payments.commands.capture_payment"',
                      'publish to "$kv.mercato_registry.identity.identity-1"',
                      'subscription to "payments.commands.>"']
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not all(
                    any(w in e for e in errors) for w in wanted):
                await asyncio.sleep(0.02)
            assert all(any(w in e for e in errors) for w in wanted), errors
        finally:
            await nc.close()

    asyncio.run(check())


@pytest.fixture
def rogue_identity() -> Iterator[tuple[int, list[str], rsa.RSAPrivateKey]]:
    """An impostor: an HTTP server with a JWKS of its own key, counting what reaches it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    hits: list[str] = []
    jwk = {**json.loads(RSAAlgorithm.to_jwk(key.public_key())), "kid": "rogue", "alg": "RS256",
           "use": "sig"}

    async def anything(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.json_response({"keys": [jwk]})

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", anything)
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    import threading

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield port, hits, key
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.run_until_complete(runner.cleanup())
        loop.close()


def test_a_forged_identity_instance_reaches_neither_the_edge_nor_discovery(
        platform: Platform, rogue_identity: tuple[int, list[str], rsa.RSAPrivateKey]) -> None:
    port, hits, key = rogue_identity
    home = Home(platform.home)
    key_name = f"identity.identity-{uuid.uuid4().hex[:6]}"
    now = time.time()
    forged = Instance(service="identity", instance_id=key_name.split(".", 1)[1],
                      host="127.0.0.1", port=port, pid=1, started_at=now, heartbeat_at=now)

    async def put(delete: bool = False) -> None:
        # The operator's identity may write anywhere: it stands for a leaked broker
        # credential, which the broker's permissions alone would not stop.
        nc = await nats.connect(_nats_url(platform), **connect_options(home))
        try:
            kv = await open_bucket(nc)
            if delete:
                await kv.delete(key_name)
            else:
                await kv.put(key_name, json.dumps(asdict(forged)).encode())
        finally:
            await nc.close()

    asyncio.run(put())
    try:
        # The control plane saw it and left it out of identity's endpoints.
        wait_until(lambda: key_name in (home.logs_dir / "supervisor.log").read_text(), 20,
                   "the control plane rejecting the forged entry")
        eds = (home.envoy_dir / "eds-identity.yaml").read_text()
        assert f"port_value: {port}" not in eds and "port_value:" in eds
        # A token signed by the impostor's key, straight to cart (past the edge): cart looks
        # for the unknown key in the JWKS of the identity instances discovery gives it.
        token = jwt.encode({"sub": str(uuid.uuid4()), "iss": "mercato-identity",
                            "aud": "mercato", "exp": int(time.time()) + 300, "roles": ["admin"]},
                           key, algorithm="RS256", headers={"kid": "rogue"})
        cart = platform.state()["processes"]["cart-1"]["port"]
        log = home.logs_dir / "cart-1.log"
        statuses: set[int] = set()

        def cart_rejected_it() -> bool:
            resp = httpx.get(f"http://127.0.0.1:{cart}/api/cart",
                             headers={"Authorization": f"Bearer {token}"}, timeout=10)
            statuses.add(resp.status_code)
            return "registry_entry_rejected" in log.read_text() and key_name in log.read_text()

        wait_until(cart_rejected_it, 30, "cart's discovery rejecting the forged entry",
                   interval=1.0)
        assert statuses == {401} and hits == []
    finally:
        asyncio.run(put(delete=True))


def test_side_doors_answer_only_the_homes_owner(platform: Platform) -> None:
    processes = platform.state()["processes"]
    for simulator, path, token_name in (
            ("payments-provider", "/charges", "payments-provider-api-token"),
            ("mailsink", "/messages", "mailsink-api-token")):
        base = f"http://127.0.0.1:{processes[simulator]['port']}"
        assert httpx.get(base + path, timeout=5).status_code == 401
        assert httpx.get(base + path, timeout=5,
                         headers={"Authorization": "Bearer guessed"}).status_code == 401
        token = _secret(platform, token_name)["token"]
        assert httpx.get(base + path, timeout=5,
                         headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert httpx.get(base + "/health", timeout=5).status_code == 200  # readiness
    # Envoy's admin: no TCP port at all, a 0600 socket in a 0700 directory.
    home = Home(platform.home)
    admin_port = json.loads(home.config_file.read_text())["ports"]["envoy_admin"]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{admin_port}/ready", timeout=2)
    assert stat.S_IMODE(home.sockets_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(home.envoy_admin_socket.stat().st_mode) == 0o600
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(home.envoy_admin_socket))) as admin:
        assert admin.get("http://envoy/ready").status_code == 200
    # The platform's own checks go through them.
    status = json.loads(mercato(platform.home, "status", "--json").stdout)
    health = {p["process"]: p["health"] for p in status["processes"]}
    assert health["envoy"] == health["payments-provider"] == health["mailsink"] == "ok"


def test_a_call_without_a_service_identity_is_refused_and_orders_own_is_accepted(
        platform: Platform) -> None:
    from chassis.registry_keys import new_key_pair
    from chassis.service_identity import CallerSigner
    from shop import bearer, customer_with_address, new_product, place, settled

    with platform.client() as c:
        admin = bearer(platform.admin_token(c))
        auth, address_id = customer_with_address(platform, c)
        user_id = c.get("/api/identity/me", headers=auth).json()["id"]
        # orders reads the shipping address from identity as itself: the order goes through.
        order_id = place(c, auth, new_product(c, admin, on_hand=5), address_id,
                         "4242424242424242")
        assert settled(c, auth, order_id)["status"] == "APPROVED"

        path = f"/api/identity/users/{user_id}/addresses/{address_id}"
        orders_key = _secret(platform, "registry-orders")["private_key"]
        as_orders = CallerSigner("orders", orders_key).token_for("identity")
        impostor = CallerSigner("orders", new_key_pair()[0]).token_for("identity")
        for caller in (None, "orders", impostor,
                       CallerSigner("orders", orders_key).token_for("catalog")):
            headers = {**auth, **({"Mercato-Caller": caller} if caller else {})}
            refused = c.get(path, headers=headers)
            assert refused.status_code == 403, (caller, refused.text)
            assert refused.headers["content-type"] == "application/problem+json"
        accepted = c.get(path, headers={**auth, "Mercato-Caller": as_orders})
        assert accepted.status_code == 200 and accepted.json()["id"] == address_id
