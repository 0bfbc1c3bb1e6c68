"""Helpers for the gateway tests: real Envoy, tiny aiohttp upstreams, signed tokens.

Everything binds to 127.0.0.1 on free ports; every wait polls a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import json
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import jwt
from aiohttp import web
from chassis.registry import Registration, RegistryClient
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from mercato.gateway import GatewayConfig, prepare
from mercato.runtime.paths import free_port
from multidict import CIMultiDict

ISSUER = "mercato-identity"
AUDIENCE = "mercato"


def die_with_parent() -> None:
    # PR_SET_PDEATHSIG: a killed test run must not leave Envoy or NATS behind.
    ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


async def wait_for(check: Callable[[], Awaitable[bool]], timeout: float, what: str,
                   every: float = 0.05) -> float:
    """Poll ``check`` until it is true; return the seconds it took."""
    start = time.monotonic()
    deadline = start + timeout
    while True:
        if await check():
            return time.monotonic() - start
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(every)


@contextlib.asynccontextmanager
async def registry_client(url: str) -> AsyncIterator[RegistryClient]:
    import nats

    nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=3)
    try:
        yield RegistryClient(nc)
    finally:
        await nc.drain()


# -- Envoy ---------------------------------------------------------------------------------

@dataclass
class Edge:
    cfg: GatewayConfig
    proc: subprocess.Popen[bytes]
    log_file: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.cfg.edge_port}"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.cfg.admin_port}"

    def output(self) -> str:
        return self.log_file.read_text(errors="replace")


def start_envoy(root: Path, routes_file: Path | None = None) -> Edge:
    cfg = GatewayConfig(envoy_dir=root / "envoy", logs_dir=root / "logs",
                        edge_port=free_port(), admin_port=free_port(), routes_file=routes_file,
                        resync_every_s=2.0)
    argv = prepare(cfg)
    log_file = root / "logs" / "envoy.log"
    proc = subprocess.Popen(argv, stdout=open(log_file, "wb"),
                            stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
    edge = Edge(cfg, proc, log_file)
    deadline = time.monotonic() + 20
    import urllib.request

    while True:
        assert proc.poll() is None, f"envoy exited:\n{edge.output()}"
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{edge.admin}/ready", timeout=1) as resp:
                if resp.status == 200:
                    return edge
        assert time.monotonic() < deadline, f"envoy not ready:\n{edge.output()}"
        time.sleep(0.05)


# -- upstreams -----------------------------------------------------------------------------

@dataclass
class Upstream:
    name: str
    runner: web.AppRunner
    port: int
    seen: list[dict[str, Any]] = field(default_factory=list)

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_upstream(name: str, extra: Callable[[web.Application], None] | None = None
                         ) -> Upstream:
    """An aiohttp app that answers every path with what it received (and its own name)."""
    seen: list[dict[str, Any]] = []

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        info = {"instance": name, "method": request.method, "path": request.path_qs,
                "authorization": request.headers.get("Authorization"),
                "client_address": request.headers.get("x-mercato-client-address"),
                "body_bytes": len(body)}
        seen.append(info)
        # As the chassis does: the edge must not pass the instance name on to the public.
        return web.json_response(info, headers={"x-mercato-instance": name})

    async def ready(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application(client_max_size=8 << 20)
    app.router.add_get("/health/ready", ready)
    if extra:
        extra(app)
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return Upstream(name, runner, port, seen)


@dataclass
class Signer:
    """An RSA key pair published as JWKS by the fake identity, and tokens signed with it."""

    kid: str = "test-key-1"
    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048))

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update(kid=self.kid, alg="RS256", use="sig")
        return {"keys": [jwk]}

    def token(self, *, key: rsa.RSAPrivateKey | None = None, kid: str | None = None,
              alg: str = "RS256", **overrides: Any) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "roles": ["customer"],
                  "email": "u@example.com", "iat": now, "exp": now + 900}
        claims.update(overrides)
        return jwt.encode(claims, key or self.key, algorithm=alg,
                          headers={"kid": kid or self.kid})


def tamper(token: str) -> str:
    """Same header and signature, payload changed: the signature no longer matches."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["roles"] = ["admin"]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


async def start_identity(signer: Signer) -> Upstream:
    def add_jwks(app: web.Application) -> None:
        async def jwks(_: web.Request) -> web.Response:
            return web.json_response(signer.jwks())

        app.router.add_get("/.well-known/jwks.json", jwks)

    return await start_upstream("identity-1", add_jwks)


async def register(registry: RegistryClient, service: str, upstream: Upstream) -> Registration:
    reg = Registration(registry, service=service, instance_id=upstream.name, host="127.0.0.1",
                       port=upstream.port)
    await reg.start()
    return reg


def client_from(address: str, **kw: Any) -> aiohttp.ClientSession:
    """A client whose connections leave from ``address``: Linux routes all of 127.0.0.0/8 on
    lo, so 127.0.0.2, 127.0.0.3 ... are distinct clients to Envoy (its remote address)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0)),
                                 timeout=aiohttp.ClientTimeout(total=10), **kw)


async def fetch(session: aiohttp.ClientSession, method: str, url: str,
                **kw: Any) -> tuple[int, CIMultiDict[str], Any]:
    async with session.request(method, url, **kw) as resp:
        raw = await resp.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        return resp.status, CIMultiDict(resp.headers), body


def envoy_route_for(route_config: dict[str, Any], method: str, path: str,
                    headers: dict[str, str] | None = None) -> dict[str, Any] | None:
    """The first rendered route Envoy would pick for (method, path, headers): a model of
    Envoy's matcher for exactly the match kinds the renderer emits. The integration tests
    check the same decisions against the real Envoy."""
    import re

    present = {name.lower() for name in headers or {}}
    bare = path.split("?", 1)[0]
    for route in route_config["virtual_hosts"][0]["routes"]:
        match = route["match"]
        if "path" in match:
            ok = bare == match["path"]
        elif "path_separated_prefix" in match:
            p = match["path_separated_prefix"]
            ok = bare == p or bare.startswith(p + "/")
        else:
            ok = bare.startswith(match["prefix"])
        for header in match.get("headers", []):
            if header["name"] != ":method":
                assert header == {"name": header["name"], "present_match": True}
                ok = ok and header["name"] in present
                continue
            hit = re.fullmatch(header["string_match"]["safe_regex"]["regex"], method) is not None
            ok = ok and (hit != header.get("invert_match", False))
        if ok:
            return dict(route)
    return None
