"""The edge end to end: real nats-server, real Envoy, the control plane, aiohttp upstreams.

Two ``catalog`` instances and a fake ``identity`` (serving JWKS) register through
``chassis.registry.Registration``, as services do; requests go through Envoy.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from chassis.registry import Registration, RegistryClient
from cryptography.hazmat.primitives.asymmetric import rsa
from gateway_test_support import (
    Edge,
    Signer,
    Upstream,
    fetch,
    register,
    registry_client,
    start_envoy,
    start_identity,
    start_upstream,
    stop_process,
    tamper,
    wait_for,
)
from mercato.gateway import run_control_plane
from mercato.gateway.routes import default_routes_file

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

PROBLEM = "application/problem+json"


@dataclass
class Platform:
    edge: Edge
    registry: RegistryClient
    http: aiohttp.ClientSession
    signer: Signer
    catalog: list[Upstream]
    registrations: dict[str, Registration]

    def url(self, path: str) -> str:
        return f"{self.edge.url}{path}"

    def bearer(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(nats_url: str, tmp_path_factory: pytest.TempPathFactory
                   ) -> AsyncIterator[Platform]:
    root = tmp_path_factory.mktemp("edge")
    # The packaged routes plus a service that never registers (for the empty-cluster case).
    routes = root / "routes.yaml"
    routes.write_text(default_routes_file().read_text()
                      + "  - {prefix: /api/wishlist, service: wishlist, auth: public}\n")
    edge = start_envoy(root, routes)
    signer = Signer()
    stop = asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(stop_process, edge.proc)
        registry = await stack.enter_async_context(registry_client(nats_url))
        control = asyncio.create_task(run_control_plane(edge.cfg, registry, stop))
        identity = await start_identity(signer)
        catalog = [await start_upstream("catalog-1"), await start_upstream("catalog-2")]
        regs = {"identity-1": await register(registry, "identity", identity)}
        for up in catalog:
            regs[up.name] = await register(registry, "catalog", up)
        http = await stack.enter_async_context(aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=10)))
        p = Platform(edge, registry, http, signer, catalog, regs)

        async def both_catalog_instances_and_jwks_ready() -> bool:
            names = set()
            for _ in range(6):
                status, _h, body = await fetch(http, "GET", p.url("/api/catalog/products"))
                if status == 200:
                    names.add(body["instance"])
            status, _h, _b = await fetch(http, "GET", p.url("/api/identity/me"),
                                         headers=p.bearer(signer.token()))
            return names == {"catalog-1", "catalog-2"} and status == 200

        try:
            await wait_for(both_catalog_instances_and_jwks_ready, 15, "edge ready",
                           every=0.2)
            yield p
        finally:
            stop.set()
            await asyncio.wait_for(control, 5)
            for reg in regs.values():
                await reg.stop()
            for up in [identity, *catalog]:
                await up.close()


async def _problem(p: Platform, method: str, path: str, status: int, **kw: object) -> dict:
    got, headers, body = await fetch(p.http, method, p.url(path), **kw)
    assert got == status, (got, body)
    assert headers["Content-Type"] == PROBLEM
    assert body["status"] == status and body["type"] == "about:blank" and body["title"]
    return dict(body)


async def test_requests_reach_both_instances_with_the_full_path(platform: Platform) -> None:
    seen = collections.Counter()
    for _ in range(20):
        status, _h, body = await fetch(platform.http, "GET",
                                       platform.url("/api/catalog/products?page_size=20"))
        assert status == 200
        assert body["path"] == "/api/catalog/products?page_size=20"
        seen[body["instance"]] += 1
    assert set(seen) == {"catalog-1", "catalog-2"}
    assert min(seen.values()) >= 5  # round robin, not one lucky request


async def test_protected_route_without_token_is_401_problem(platform: Platform) -> None:
    body = await _problem(platform, "GET", "/api/identity/me", 401)
    assert "missing" in body["detail"].lower()


async def test_valid_token_is_accepted_and_forwarded(platform: Platform) -> None:
    token = platform.signer.token()
    status, _h, body = await fetch(platform.http, "GET", platform.url("/api/identity/me/addresses"),
                                   headers=platform.bearer(token))
    assert status == 200
    # forward: true -- the service must see the token to check it again.
    assert body["authorization"] == f"Bearer {token}"


def _bad_tokens(signer: Signer) -> dict[str, str]:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return {
        "wrong audience": signer.token(aud="somebody-else"),
        "wrong issuer": signer.token(iss="evil"),
        "expired": signer.token(exp=1_000_000, iat=999_000),
        "tampered": tamper(signer.token()),
        "unknown kid": signer.token(key=stranger, kid="not-published"),
        "known kid, other key": signer.token(key=stranger),
        "PS256 with the published key": signer.token(alg="PS256"),
        "not a jwt": "abc.def.ghi",
    }


@pytest.mark.parametrize("case", list(_bad_tokens(Signer()).keys()))
async def test_bad_tokens_are_401_problem(platform: Platform, case: str) -> None:
    token = _bad_tokens(platform.signer)[case]
    await _problem(platform, "GET", "/api/identity/me", 401, headers=platform.bearer(token))


async def test_token_in_the_query_string_is_not_accepted(platform: Platform) -> None:
    token = platform.signer.token()
    await _problem(platform, "GET", f"/api/identity/me?access_token={token}", 401)


async def test_catalog_reads_are_public_and_writes_need_a_user(platform: Platform) -> None:
    status, _h, _b = await fetch(platform.http, "GET", platform.url("/api/catalog/categories"))
    assert status == 200
    for method in ("POST", "PATCH", "PUT", "DELETE"):
        await _problem(platform, method, "/api/catalog/products/1", 401, json={"name": "x"})
        status, _h, body = await fetch(platform.http, method,
                                       platform.url("/api/catalog/products/1"),
                                       headers=platform.bearer(platform.signer.token()),
                                       json={"name": "x"})
        assert status == 200 and body["method"] == method


async def test_public_identity_routes_need_no_token(platform: Platform) -> None:
    for path in ("/api/identity/register", "/api/identity/token"):
        status, _h, _b = await fetch(platform.http, "POST", platform.url(path), data={"a": "b"})
        assert status == 200
    status, _h, body = await fetch(platform.http, "GET", platform.url("/.well-known/jwks.json"))
    assert status == 200 and body == platform.signer.jwks()


async def test_normalised_paths_cannot_dodge_the_token_check(platform: Platform) -> None:
    for path in ("/api/identity//me", "/api/identity/x/../me", "/api/identity/./me"):
        await _problem(platform, "GET", path, 401)
    # An encoded slash is refused outright rather than guessed at.
    await _problem(platform, "GET", "/api/identity%2Fme", 400)


async def test_token_route_is_rate_limited(platform: Platform) -> None:
    async def one() -> tuple[int, dict[str, str], object]:
        return await fetch(platform.http, "POST", platform.url("/api/identity/token"),
                           data={"grant_type": "password"})

    results = await asyncio.gather(*(one() for _ in range(60)))
    statuses = collections.Counter(status for status, _h, _b in results)
    assert set(statuses) <= {200, 429}
    assert statuses[429] > 0
    # A 20-token bucket, refilled at most once or twice while the burst lasts.
    assert statuses[200] <= 60 - statuses[429] and statuses[200] <= 45
    status, headers, body = next(r for r in results if r[0] == 429)
    assert headers["Content-Type"] == PROBLEM and body["status"] == 429
    assert headers["Retry-After"] == "1"

    async def bucket_refilled() -> bool:
        return (await one())[0] == 200

    await wait_for(bucket_refilled, 5, "the bucket to refill")
    # Other routes share nothing with the token bucket.
    status, _h, _b = await fetch(platform.http, "POST", platform.url("/api/identity/register"))
    assert status == 200


async def test_body_over_one_mib_is_413_problem(platform: Platform) -> None:
    await _problem(platform, "POST", "/api/identity/register", 413, data=b"x" * (2 << 20))
    # Also when the size is not announced up front.

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(32):
            yield b"x" * 65536

    await _problem(platform, "POST", "/api/identity/register", 413, data=chunks())
    status, _h, body = await fetch(platform.http, "POST", platform.url("/api/identity/register"),
                                   data=b"x" * (512 << 10))
    assert status == 200 and body["body_bytes"] == 512 << 10


async def test_unknown_path_is_404_problem(platform: Platform) -> None:
    await _problem(platform, "GET", "/api/nowhere", 404)


async def test_service_without_instances_is_503_problem(platform: Platform) -> None:
    await _problem(platform, "GET", "/api/wishlist", 503)


async def test_access_log_lines_are_json_with_trace_context(platform: Platform) -> None:
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    # Another test in this process may have instrumented aiohttp globally (every service
    # app does); it would replace our traceparent with one of its own.
    with suppress_instrumentation():
        status, headers, _b = await fetch(platform.http, "GET",
                                          platform.url("/api/catalog/products?log=1"),
                                          headers={"traceparent": traceparent,
                                                   "User-Agent": "edge-test"})
    assert status == 200
    request_id = headers["x-request-id"]
    log_file = platform.edge.cfg.logs_dir / "envoy-access.log"

    def line() -> dict | None:
        if not log_file.exists():
            return None
        for raw in log_file.read_text().splitlines():
            try:
                entry = json.loads(raw)
            except json.JSONDecodeError:
                continue  # Envoy may be half-way through writing the last line
            if entry.get("request_id") == request_id:
                return dict(entry)
        return None

    async def logged() -> bool:
        return line() is not None

    # Envoy flushes the file every second; a loaded machine can delay that further.
    await wait_for(logged, 15, "the access log line", every=0.1)
    entry = line()
    assert entry is not None
    assert entry["method"] == "GET" and entry["path"] == "/api/catalog/products?log=1"
    assert entry["status"] == 200 and entry["traceparent"] == traceparent
    assert entry["user_agent"] == "edge-test"
    assert entry["upstream_host"].startswith("127.0.0.1:")
    assert isinstance(entry["duration_ms"], int)


async def test_prometheus_stats_on_the_admin_port(platform: Platform) -> None:
    async with platform.http.get(f"{platform.edge.admin}/stats/prometheus") as resp:
        text = await resp.text()
    assert resp.status == 200
    assert 'envoy_cluster_upstream_rq_total{envoy_cluster_name="catalog"}' in text


async def test_a_crashed_instance_stops_getting_traffic_without_failed_reads(
        platform: Platform) -> None:
    """A process killed without deregistering: its registry entry stays fresh for up to
    10 s, so the health check and outlier detection must take it out; reads are retried on
    the other instance in the meantime."""
    victim = platform.catalog[1]
    reg = platform.registrations[victim.name]
    assert reg._task is not None
    reg._task.cancel()  # no more heartbeats, and no deregistration: like SIGKILL
    await victim.close()
    started = asyncio.get_running_loop().time()
    statuses: collections.Counter[int] = collections.Counter()

    async def only_survivor_answers() -> bool:
        names = set()
        for _ in range(10):
            status, _h, body = await fetch(platform.http, "GET",
                                           platform.url("/api/catalog/products"))
            statuses[status] += 1
            if status == 200:
                names.add(body["instance"])
        return names == {"catalog-1"}

    took = await wait_for(only_survivor_answers, 5, "the dead instance to be dropped")
    print(f"crashed instance dropped after {took:.2f} s; statuses meanwhile: {dict(statuses)}")
    assert set(statuses) == {200}, statuses
    assert asyncio.get_running_loop().time() - started < 5
    # Bring it back for the tests after this one.
    platform.catalog[1] = await start_upstream(victim.name)
    with contextlib.suppress(Exception):
        await reg.stop()
    platform.registrations[victim.name] = await register(platform.registry, "catalog",
                                                         platform.catalog[1])
    await _wait_both(platform)


async def test_a_deregistered_instance_leaves_the_edge_within_seconds(platform: Platform) -> None:
    """The instance keeps serving (as while draining); only the registry says it is gone."""
    leaving = platform.catalog[1]
    await platform.registrations[leaving.name].stop()
    started = asyncio.get_running_loop().time()
    before = len(leaving.seen)

    async def only_one_left() -> bool:
        names = set()
        for _ in range(10):
            status, _h, body = await fetch(platform.http, "GET",
                                           platform.url("/api/catalog/products"))
            assert status == 200
            names.add(body["instance"])
        return names == {"catalog-1"}

    took = await wait_for(only_one_left, 5, "the deregistered instance to leave")
    print(f"deregistered instance gone from the edge after {took:.2f} s")
    assert asyncio.get_running_loop().time() - started < 3
    # Quiet from here on: no more requests reach it.
    settled = len(leaving.seen)
    for _ in range(10):
        await fetch(platform.http, "GET", platform.url("/api/catalog/products"))
    assert len(leaving.seen) == settled >= before
    platform.registrations[leaving.name] = await register(platform.registry, "catalog", leaving)
    await _wait_both(platform)


async def _wait_both(platform: Platform) -> None:
    async def both() -> bool:
        names = set()
        for _ in range(6):
            status, _h, body = await fetch(platform.http, "GET",
                                           platform.url("/api/catalog/products"))
            if status == 200:
                names.add(body["instance"])
        return names == {"catalog-1", "catalog-2"}

    await wait_for(both, 10, "both instances back", every=0.2)


async def test_edge_files_live_in_the_envoy_dir(platform: Platform) -> None:
    files = sorted(p.name for p in Path(platform.edge.cfg.envoy_dir).iterdir())
    from mercato.gateway.routes import load_routes

    services = {*load_routes().services, "wishlist"}  # the packaged routes plus this test's own
    eds = [f"eds-{service}.yaml" for service in services]
    assert files == sorted(["bootstrap.yaml", "cds.yaml", *eds, "lds.yaml"])
