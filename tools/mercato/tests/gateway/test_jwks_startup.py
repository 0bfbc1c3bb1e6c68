"""The edge starts before identity: until the control plane has read the signing keys, a
route that needs a user answers 503 with Retry-After — never 401, which would tell a client
to throw a valid token away — and once it has them, tokens are checked without restarting
anything. A rotated key is taken up within the refresh period (identity publishes a key
35 s before it signs with it)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import aiohttp
import pytest
from chassis.registry import Instance
from cryptography.hazmat.primitives.asymmetric import rsa
from gateway_test_support import (
    Signer,
    fetch,
    register,
    registry_client,
    start_envoy,
    start_identity,
    start_upstream,
    stop_process,
    wait_for,
)
from mercato.gateway import render, run_control_plane
from mercato.gateway.control import write_endpoints, write_static
from mercato.gateway.routes import load_routes

pytestmark = [pytest.mark.integration]


async def test_tokens_get_503_until_the_edge_has_the_keys_never_401(
        nats_url: str, tmp_path: Path) -> None:
    edge = start_envoy(tmp_path)
    signer = Signer()
    stop = asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(stop_process, edge.proc)
        registry = await stack.enter_async_context(registry_client(nats_url))
        http = await stack.enter_async_context(aiohttp.ClientSession())
        control = asyncio.create_task(run_control_plane(edge.cfg, registry, stop))
        catalog = await start_upstream("catalog-1")
        stack.push_async_callback(catalog.close)
        reg = await register(registry, "catalog", catalog)
        stack.push_async_callback(reg.stop)
        me = f"{edge.url}/api/identity/me"
        auth = {"Authorization": f"Bearer {signer.token()}"}

        async def public_route_up() -> bool:
            return (await fetch(http, "GET", f"{edge.url}/api/catalog/products"))[0] == 200

        await wait_for(public_route_up, 10, "catalog through the edge")
        # No identity yet: the edge is up and public routes work; tokens cannot be checked,
        # and the edge says so (come back), whether the token is good, bad or absent.
        for headers in (auth, {"Authorization": "Bearer not.a.token"}, {}):
            status, h, body = await fetch(http, "GET", me, headers=headers)
            assert status == 503, (status, body)
            assert h["Retry-After"] == "2"
            assert h["Content-Type"] == "application/problem+json"
            assert body["status"] == 503 and "signing keys" in body["detail"]
        status, _h, _b = await fetch(http, "POST", f"{edge.url}/api/catalog/products",
                                     headers=auth, json={})
        assert status == 503

        identity = await start_identity(signer)
        stack.push_async_callback(identity.close)
        id_reg = await register(registry, "identity", identity)
        stack.push_async_callback(id_reg.stop)

        statuses: list[int] = []

        async def accepted() -> bool:
            statuses.append((await fetch(http, "GET", me, headers=auth))[0])
            return statuses[-1] == 200

        took = await wait_for(accepted, 10, "the token to be accepted", every=0.05)
        print(f"tokens accepted {took:.2f} s after identity registered")
        assert set(statuses) <= {503, 200}, statuses  # never a 401 on the way
        status, _h, _b = await fetch(http, "GET", me,
                                     headers={"Authorization": "Bearer not.a.token"})
        assert status == 401

        # Rotation: identity publishes a new key; the edge has it within the refresh period,
        # well before identity would sign with it.
        old_token = signer.token()
        signer.kid = "test-key-2"
        signer.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        new_token = signer.token()

        async def new_key_accepted() -> bool:
            got = await fetch(http, "GET", me, headers={"Authorization": f"Bearer {new_token}"})
            return got[0] == 200

        await wait_for(new_key_accepted, load_routes().jwt.refresh_s + 10, "the new key")
        # This fake identity stopped publishing the old key with the rotation (identity
        # keeps it for the tokens it signed): the edge follows what identity publishes.
        status, _h, _b = await fetch(http, "GET", me,
                                     headers={"Authorization": f"Bearer {old_token}"})
        assert status == 401

        stop.set()
        await asyncio.wait_for(control, 5)


async def test_an_edge_fetching_the_keys_itself_answers_503_until_it_has_them(
        tmp_path: Path) -> None:
    """The production edge (static config, no control plane) fetches identity's JWKS with
    remote_jwks: until its first fetch succeeds, jwt_authn fails every token
    (Jwks_remote_fetch_is_failed), and the edge says 503 + Retry-After for it, not 401."""
    edge = start_envoy(tmp_path)
    table = load_routes()
    signer = Signer()
    write_static(edge.cfg, table, render.REMOTE_JWKS)
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(stop_process, edge.proc)
        http = await stack.enter_async_context(aiohttp.ClientSession())

        async def fetching_itself() -> bool:
            async with http.get(f"{edge.admin}/config_dump",
                                params={"resource": "dynamic_listeners"}) as resp:
                return "remote_jwks" in await resp.text()

        await wait_for(fetching_itself, 10, "the listener that fetches the keys")
        me = f"{edge.url}/api/identity/me"
        auth = {"Authorization": f"Bearer {signer.token()}"}
        status, headers, body = await fetch(http, "GET", me, headers=auth)
        assert status == 503, (status, body)
        assert headers["Retry-After"] == "2"
        assert headers["Content-Type"] == "application/problem+json"
        assert "signing keys" in body["detail"]

        identity = await start_identity(signer)
        stack.push_async_callback(identity.close)
        write_endpoints(edge.cfg, table, [Instance(
            service="identity", instance_id="identity-1", host="127.0.0.1",
            port=identity.port, pid=1, started_at=time.time(), heartbeat_at=time.time())])
        statuses: list[int] = []

        async def accepted() -> bool:
            statuses.append((await fetch(http, "GET", me, headers=auth))[0])
            return statuses[-1] == 200

        await wait_for(accepted, 15, "the token to be accepted", every=0.1)
        assert set(statuses) <= {503, 200}, statuses
        status, _h, _b = await fetch(http, "GET", me,
                                     headers={"Authorization": "Bearer not.a.token"})
        assert status == 401
