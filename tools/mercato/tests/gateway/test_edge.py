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
from aiohttp import web
from chassis.registry import Registration, RegistryClient
from cryptography.hazmat.primitives.asymmetric import rsa
from gateway_test_support import (
    Edge,
    Signer,
    Upstream,
    client_from,
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
from mercato.gateway.envoy import parse_clusters
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
    # The packaged routes plus a service that never registers (for the empty-cluster case)
    # and one whose instances the retry tests kill.
    routes = root / "routes.yaml"
    # A route with a tiny total ceiling, to see it bite before any client's own limit.
    routes.write_text(default_routes_file().read_text()
                      + "  - {prefix: /api/wishlist, service: wishlist, auth: public}\n"
                      + "  - {prefix: /api/flaky, service: flaky, auth: public}\n"
                      + "  - {prefix: /api/lonely, service: lonely, auth: public,"
                      + " timeout_s: 0.5}\n"
                      + "  - {path: /api/identity/ceiling, service: identity, auth: public,\n"
                      + "     rate_limit: {per_client: {per_second: 1, burst: 4},"
                      + " total: {per_second: 1, burst: 6}}}\n")
    edge = start_envoy(root, routes)
    signer = Signer()
    stop = asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(stop_process, edge.proc)
        registry = await stack.enter_async_context(registry_client(nats_url))
        control = asyncio.create_task(run_control_plane(edge.cfg, registry, stop))
        identity = await start_identity(signer)
        catalog = [await start_upstream("catalog-1"), await start_upstream("catalog-2")]
        orders, cart = await start_upstream("orders-1"), await start_upstream("cart-1")
        payments = await start_upstream("payments-1")
        regs = {"identity-1": await register(registry, "identity", identity),
                "orders-1": await register(registry, "orders", orders),
                "cart-1": await register(registry, "cart", cart),
                "payments-1": await register(registry, "payments", payments)}
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
            orders_up, _h, _b = await fetch(http, "GET", p.url("/api/orders"),
                                            headers=p.bearer(signer.token()))
            cart_up, _h, _b = await fetch(http, "GET", p.url("/api/cart"),
                                          headers=p.bearer(signer.token()))
            payments_up, _h, _b = await fetch(http, "GET", p.url("/api/payments/x"),
                                              headers=p.bearer(signer.token()))
            return (names == {"catalog-1", "catalog-2"} and status == 200
                    and orders_up == 200 and cart_up == 200 and payments_up == 200)

        try:
            await wait_for(both_catalog_instances_and_jwks_ready, 15, "edge ready",
                           every=0.2)
            yield p
        finally:
            stop.set()
            await asyncio.wait_for(control, 5)
            for reg in regs.values():
                await reg.stop()
            for up in [identity, orders, cart, *catalog]:
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
    for path in ("/api/identity/register", "/api/identity/token", "/api/identity/authorize"):
        status, _h, _b = await fetch(platform.http, "POST", platform.url(path), data={"a": "b"})
        assert status == 200
    status, _h, body = await fetch(platform.http, "GET", platform.url("/.well-known/jwks.json"))
    assert status == 200 and body == platform.signer.jwks()


async def test_normalised_paths_cannot_dodge_the_token_check(platform: Platform) -> None:
    for path in ("/api/identity//me", "/api/identity/x/../me", "/api/identity/./me"):
        await _problem(platform, "GET", path, 401)
    # An encoded slash is refused outright rather than guessed at.
    await _problem(platform, "GET", "/api/identity%2Fme", 400)


LIMITED_WRITES = [("/api/identity/token", False), ("/api/identity/register", False),
                  ("/api/identity/authorize", False),
                  ("/api/orders", True), ("/api/cart/checkout", True),
                  ("/api/payments/payment-methods", True)]


@pytest.mark.parametrize(("path", "needs_token"), LIMITED_WRITES)
async def test_a_flooding_client_does_not_block_another_client(
        platform: Platform, path: str, needs_token: bool) -> None:
    """The limited writes have a bucket per client address: while 127.0.0.2 floods a route
    (and gets 429s), 127.0.0.3 is answered as if nobody else were there."""
    # A distinct pair of addresses per route: each route's buckets are its own anyway, but
    # no test should lean on another's leftovers.
    n = LIMITED_WRITES.index((path, needs_token))
    attacker_ip, user_ip = f"127.0.{10 + n}.2", f"127.0.{10 + n}.3"
    headers = platform.bearer(platform.signer.token()) if needs_token else {}
    flood: collections.Counter[int] = collections.Counter()
    stop = asyncio.Event()

    async def flood_worker(session: aiohttp.ClientSession) -> None:
        while not stop.is_set():
            status, _h, _b = await fetch(session, "POST", platform.url(path),
                                         data={"grant_type": "password"}, headers=headers)
            flood[status] += 1

    async with client_from(attacker_ip) as attacker, client_from(user_ip) as user:
        workers = [asyncio.create_task(flood_worker(attacker)) for _ in range(6)]
        try:
            async def attacker_limited() -> bool:
                return flood[429] > 20

            await wait_for(attacker_limited, 10, "the flooding client to be limited")
            answers = []
            for _ in range(5):
                status, _h, body = await fetch(user, "POST", platform.url(path),
                                               data={"grant_type": "password"}, headers=headers)
                answers.append(status)
                # The upstream saw the user's own address, set by the edge.
                assert status != 200 or body["client_address"] == user_ip
                await asyncio.sleep(0.05)
            limited_meanwhile = flood[429]
        finally:
            stop.set()
            await asyncio.gather(*workers)
    assert answers == [200] * 5, (answers, dict(flood))
    assert limited_meanwhile > 20 and set(flood) == {200, 429}, dict(flood)


async def test_429_is_problem_json_with_retry_after_and_nosniff(platform: Platform) -> None:
    async with client_from("127.0.20.2") as client:
        results = await asyncio.gather(*(
            fetch(client, "POST", platform.url("/api/identity/token"),
                  data={"grant_type": "password"}) for _ in range(30)))
    statuses = collections.Counter(status for status, _h, _b in results)
    # One client's burst of 10 (plus at most a refill of 5 while the burst lasts).
    assert statuses[200] <= 15 and statuses[429] >= 15, statuses
    _status, headers, body = next(r for r in results if r[0] == 429)
    assert headers["Content-Type"] == PROBLEM and body["status"] == 429
    assert headers["Retry-After"] == "1"
    assert headers["X-Content-Type-Options"] == "nosniff"

    async def bucket_refilled() -> bool:
        async with client_from("127.0.20.2") as again:
            return (await fetch(again, "POST", platform.url("/api/identity/token")))[0] == 200

    await wait_for(bucket_refilled, 5, "the client's bucket to refill")


async def test_the_total_ceiling_bites_when_many_clients_together_exceed_it(
        platform: Platform) -> None:
    """/api/identity/ceiling (this test's route): 4 per client, 6 in total. Three clients
    sending 3 each stay within their own buckets but not within the total."""
    statuses: collections.Counter[int] = collections.Counter()
    for i in range(3):
        async with client_from(f"127.0.21.{i + 2}") as client:
            for _ in range(3):
                status, _h, _b = await fetch(client, "POST",
                                             platform.url("/api/identity/ceiling"))
                statuses[status] += 1
    assert statuses[429] >= 2 and statuses[200] <= 7, statuses


async def test_reads_of_a_limited_route_are_not_limited(platform: Platform) -> None:
    async with client_from("127.0.22.2") as client:
        token = platform.bearer(platform.signer.token())
        for _ in range(30):
            status, _h, _b = await fetch(client, "GET", platform.url("/api/orders"),
                                         headers=token)
            assert status == 200


async def test_a_forged_client_address_header_is_replaced_by_the_edge(
        platform: Platform) -> None:
    async with client_from("127.0.23.2") as client:
        status, _h, body = await fetch(client, "GET", platform.url("/api/catalog/products"),
                                       headers={"x-mercato-client-address": "10.9.8.7"})
    assert status == 200 and body["client_address"] == "127.0.23.2"


async def test_nosniff_everywhere_and_no_instance_names(platform: Platform) -> None:
    token = platform.bearer(platform.signer.token())
    cases = [("GET", "/api/catalog/products", {}, 200),     # proxied
             ("GET", "/api/identity/me", {}, 401),           # jwt_authn's local reply
             ("GET", "/api/nowhere", {}, 404),               # no route at all
             ("GET", "/api/wishlist", {}, 503),              # no instance
             ("GET", "/api/identity/me", token, 200)]
    for method, path, headers, expected in cases:
        status, got, _b = await fetch(platform.http, method, platform.url(path), headers=headers)
        assert status == expected, (path, status)
        assert got.getall("X-Content-Type-Options") == ["nosniff"], (path, got)
        assert "x-mercato-instance" not in got, (path, got)


async def test_body_over_one_mib_is_413_problem(platform: Platform) -> None:
    await _problem(platform, "POST", "/api/identity/addresses", 413, data=b"x" * (2 << 20))
    # Also when the size is not announced up front.

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(32):
            yield b"x" * 65536

    await _problem(platform, "POST", "/api/identity/addresses", 413, data=chunks())
    status, _h, body = await fetch(platform.http, "POST", platform.url("/api/identity/addresses"),
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
    assert entry["method"] == "GET" and entry["path"] == "/api/catalog/products"
    assert entry["status"] == 200 and entry["traceparent"] == traceparent
    assert entry["user_agent"] == "edge-test"
    assert entry["upstream_host"].startswith("127.0.0.1:")
    # Which instance served it is the operators' to see, here rather than in the response.
    assert entry["upstream_instance"] in ("catalog-1", "catalog-2")
    assert isinstance(entry["duration_ms"], int)


async def test_access_log_never_holds_a_query_string(platform: Platform) -> None:
    """A client sending its password in the query string: the log keeps the path only."""
    secret = "hunter2-in-the-query"
    status, headers, _b = await fetch(
        platform.http, "POST",
        platform.url(f"/api/identity/token?username=a@b.test&password={secret}"))
    assert status == 200
    request_id = headers["x-request-id"]
    log_file = platform.edge.cfg.logs_dir / "envoy-access.log"

    async def logged() -> bool:
        return log_file.exists() and request_id in log_file.read_text()

    await wait_for(logged, 15, "the access log line", every=0.1)
    text = log_file.read_text()
    assert secret not in text and "password=" not in text
    line = next(json.loads(raw) for raw in text.splitlines() if request_id in raw)
    assert line["path"] == "/api/identity/token"


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

    services = {*load_routes().services, "wishlist", "flaky", "lonely"}  # packaged + ours
    eds = [f"eds-{service}.yaml" for service in services]
    assert files == sorted(["bootstrap.yaml", "cds.yaml", *eds, "jwks.json", "lds.yaml",
                           "rds.yaml"])


async def _healthy_hosts(platform: Platform, cluster: str) -> set[int]:
    """Ports of the cluster's hosts that Envoy's health checks passed (no traffic sent)."""
    async with platform.http.get(f"{platform.edge.admin}/clusters") as resp:
        text = await resp.text()
    return {h.port for h in parse_clusters(text) if h.cluster == cluster and h.healthy}


async def _retries(platform: Platform, cluster: str) -> int:
    async with platform.http.get(f"{platform.edge.admin}/stats",
                                 params={"filter": f"^cluster\\.{cluster}\\.upstream_rq_retry$"}
                                 ) as resp:
        text = await resp.text()
    return int(text.split(":")[-1]) if text.strip() else 0


@pytest.mark.parametrize(("method", "headers", "retried"), [
    ("GET", {}, True),
    ("POST", {"Idempotency-Key": "order-key-1"}, True),
    ("POST", {}, False),
], ids=["GET", "POST with Idempotency-Key", "POST without"])
async def test_a_request_that_finds_its_instance_dead_is_retried_when_safe(
        platform: Platform, method: str, headers: dict[str, str], retried: bool) -> None:
    """An instance dies (a restart) while the edge still routes to it: the connection is
    refused. A request that is safe to repeat — a read, or a write carrying an
    Idempotency-Key the service dedupes on — is sent again to another instance; any other
    write is not (the edge cannot know what the service did with it)."""
    dying, survivor = await start_upstream("flaky-a"), await start_upstream("flaky-b")
    regs = [await register(platform.registry, "flaky", up) for up in (dying, survivor)]
    try:
        async def both_healthy() -> bool:
            return await _healthy_hosts(platform, "flaky") == {dying.port, survivor.port}

        # Checked through the admin port: traffic would open pooled connections to them.
        await wait_for(both_healthy, 10, "both flaky instances healthy at the edge")
        assert regs[0]._task is not None
        regs[0]._task.cancel()  # no more heartbeats, no deregistration: like SIGKILL
        await dying.close()
        retries = await _retries(platform, "flaky")
        # Round robin: of two requests, one is sent to the dead instance first.
        results = [await fetch(platform.http, method, platform.url("/api/flaky/orders"),
                               headers=headers, json={"n": i}) for i in range(2)]
        statuses = sorted(status for status, _h, _b in results)
        if retried:
            assert statuses == [200, 200], results
            assert await _retries(platform, "flaky") == retries + 1
            assert [s["body_bytes"] for s in survivor.seen] == [8, 8]  # the body went along
        else:
            assert statuses == [200, 503], results
            assert await _retries(platform, "flaky") == retries
            assert len(survivor.seen) == 1
        assert dying.seen == []
    finally:
        for reg in regs:
            with contextlib.suppress(Exception):
                await reg.stop()
        await survivor.close()


async def test_one_timed_out_request_does_not_take_a_services_only_instance_out(
        platform: Platform) -> None:
    """A request that times out is a local-origin failure, and one used to eject the host.
    For a service with a single instance that meant seconds of "no healthy upstream" for
    every request after one slow one (an overloaded identity, the soak's token refresh).
    The edge now ejects at most half a cluster's hosts: a lone instance stays in."""
    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.json_response({})

    lonely = await start_upstream("lonely-1", lambda app: app.router.add_get(
        "/api/lonely/slow", slow))
    reg = await register(platform.registry, "lonely", lonely)
    try:
        async def healthy() -> bool:
            return await _healthy_hosts(platform, "lonely") == {lonely.port}

        await wait_for(healthy, 10, "the lone instance healthy at the edge")
        status, _h, _b = await fetch(platform.http, "GET", platform.url("/api/lonely/slow"))
        assert status == 504
        after = [(await fetch(platform.http, "GET", platform.url("/api/lonely/x")))[0]
                 for _ in range(5)]
        assert after == [200] * 5, after
    finally:
        with contextlib.suppress(Exception):
            await reg.stop()
        await lonely.close()
