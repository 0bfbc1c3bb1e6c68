"""The edge starts before identity: protected routes answer 401 until JWKS can be fetched,
then accept tokens without restarting anything. Also pins down key rotation behaviour."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiohttp
import pytest
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
from mercato.gateway import run_control_plane

pytestmark = [pytest.mark.integration]


async def test_tokens_work_once_identity_comes_up(nats_url: str, tmp_path: Path) -> None:
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
        # No identity yet: the edge is up, public routes work, tokens cannot be checked.
        status, headers, body = await fetch(http, "GET", me, headers=auth)
        assert status == 401 and headers["Content-Type"] == "application/problem+json"
        assert "jwks" in body["detail"].lower()

        identity = await start_identity(signer)
        stack.push_async_callback(identity.close)
        id_reg = await register(registry, "identity", identity)
        stack.push_async_callback(id_reg.stop)

        async def accepted() -> bool:
            return (await fetch(http, "GET", me, headers=auth))[0] == 200

        # JWKS is re-fetched every second after a failure (failed_refetch_duration).
        took = await wait_for(accepted, 10, "the token to be accepted", every=0.1)
        print(f"tokens accepted {took:.2f} s after identity registered")
        assert took < 5

        # Rotation: identity now publishes and signs with a new key. jwt_authn does not
        # re-fetch JWKS on an unknown kid, so the new tokens are refused until its cache
        # (jwt.cache_s in routes.yaml) expires: identity must publish a key that long before
        # signing with it.
        signer.kid = "test-key-2"
        signer.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        status, _h, body = await fetch(http, "GET", me,
                                       headers={"Authorization": f"Bearer {signer.token()}"})
        assert status == 401 and "kid" in body["detail"]

        stop.set()
        await asyncio.wait_for(control, 5)
