"""A resilient client for service-to-service HTTP calls, on aiohttp.

``http://<service>/path`` is resolved through the registry on every attempt (so calls and
retries spread over live instances). Every attempt has a timeout; the lookup is not part of
it (discovery answers from what it knows at once, or gives up after its own short bound), so
a slow registry can neither eat a call's budget nor count against a healthy target. Only
requests that are safe to repeat are retried — idempotent methods, or any method carrying an
``Idempotency-Key`` — after a full-jitter exponential backoff, and only on transport errors,
timeouts and 502/503/504. A connection that could not even be opened (the instance discovery
listed has died and its port is closed) sent nothing, so any request gets one more attempt,
on another instance: the resolver is told to forget the dead one. Each target service has
its own circuit breaker (stop calling a service that is failing, probe it again after a
cool-down) and its own bulkhead (a cap on concurrent calls that fails fast, so one slow
dependency cannot take every connection and task). What cannot be answered surfaces as
``UpstreamUnavailable``, a 503 problem the caller may map to a fallback. The W3C trace
context and the caller's identity travel with each request.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
import orjson
from opentelemetry import propagate
from prometheus_client import CollectorRegistry

from chassis import metric_catalogue as m
from chassis.errors import ServiceUnavailable
from chassis.service_identity import CallerSigner
from chassis.tracing import client_trace_config

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
RETRYABLE_STATUSES = frozenset({502, 503, 504})
H_IDEMPOTENCY_KEY = "Idempotency-Key"
H_SERVICE_IDENTITY = "Mercato-Caller"  # the caller's signed identity (chassis.service_identity)


class UrlResolver(Protocol):
    async def resolve_url(self, url: str) -> str: ...


class ForgetfulResolver(UrlResolver, Protocol):
    def forget(self, url: str) -> None:
        """The instance ``url`` points at refused a connection: stop choosing it."""


class UpstreamUnavailable(ServiceUnavailable):
    """The target could not answer usefully; ``reason`` says why (for logs and fallbacks)."""

    def __init__(self, target: str, reason: str, *, status: int | None = None) -> None:
        super().__init__(f"'{target}' is unavailable: {reason}", headers={"Retry-After": "2"})
        self.target, self.reason, self.upstream_status = target, reason, status


class CircuitOpen(UpstreamUnavailable):
    pass


class BulkheadFull(UpstreamUnavailable):
    pass


@dataclass(frozen=True)
class BreakerSettings:
    consecutive_failures: int = 5
    failure_ratio: float = 0.5  # over the last ``window`` calls, once ``min_calls`` were made
    window: int = 20
    min_calls: int = 10
    cool_down_s: float = 5.0


class CircuitBreaker:
    CLOSED, HALF_OPEN, OPEN = 0, 1, 2  # also the values of the state gauge
    NAMES = ("closed", "half_open", "open")  # the transitions counter's ``state`` label

    def __init__(self, settings: BreakerSettings, clock: Callable[[], float] = time.monotonic,
                 on_change: Callable[[int], None] | None = None) -> None:
        self._s = settings
        self._clock = clock
        self._on_change = on_change
        self._state = self.CLOSED
        self._opened_at = 0.0
        self._consecutive = 0
        self._recent: deque[bool] = deque(maxlen=settings.window)  # True = failed
        self._probing = False

    @property
    def state(self) -> int:
        return self._state

    def allow(self) -> bool:
        """May a call go out now? In half-open, exactly one probe at a time may."""
        if self._state == self.OPEN and self._clock() - self._opened_at >= self._s.cool_down_s:
            self._set(self.HALF_OPEN)
        if self._state == self.CLOSED:
            return True
        if self._state == self.HALF_OPEN and not self._probing:
            self._probing = True
            return True
        return False

    def success(self) -> None:
        self._probing = False
        self._consecutive = 0
        if self._state != self.CLOSED:
            self._recent.clear()  # the old failures say nothing about the recovered service
            self._set(self.CLOSED)
        self._recent.append(False)

    def failure(self) -> None:
        self._probing = False
        self._consecutive += 1
        self._recent.append(True)
        if self._state == self.HALF_OPEN or self._tripped():
            self._opened_at = self._clock()
            self._set(self.OPEN)

    def release(self) -> None:
        """A call ended with no verdict (cancelled): let another probe go."""
        self._probing = False

    def _tripped(self) -> bool:
        if self._consecutive >= self._s.consecutive_failures:
            return True
        n = len(self._recent)
        return n >= self._s.min_calls and sum(self._recent) / n >= self._s.failure_ratio

    def _set(self, state: int) -> None:
        if state != self._state:
            self._state = state
            if self._on_change is not None:
                self._on_change(state)


@dataclass(frozen=True)
class ServiceResponse:
    """A read response: the connection is back in the pool before the caller sees it."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def ok(self) -> bool:
        return self.status < 400

    def json(self) -> Any:
        return orjson.loads(self.body)


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.calls = m.CLIENT_CALLS.counter(registry)
        self.retries = m.CLIENT_RETRIES.counter(registry)
        self.breaker = m.BREAKER_STATE.gauge(registry)
        self.transitions = m.BREAKER_TRANSITIONS.counter(registry)

    def breaker_watcher(self, target: str) -> Callable[[int], None]:
        """The gauge follows the breaker; each change is counted by the state entered, so
        a breaker that opened and closed between two scrapes still shows."""
        gauge = self.breaker.labels(target)
        gauge.set(CircuitBreaker.CLOSED)
        entered = {state: self.transitions.labels(target, name)
                   for state, name in enumerate(CircuitBreaker.NAMES)}

        def changed(state: int) -> None:
            gauge.set(state)
            entered[state].inc()

        return changed


def traced_session(**kwargs: Any) -> aiohttp.ClientSession:
    """An aiohttp session whose every request is a CLIENT span, its trace context sent along
    (``chassis.tracing.client_trace_config``): for a service's own calls outside the service
    client, such as payments' to the card network."""
    configs = [*kwargs.pop("trace_configs", ()), client_trace_config()]
    return aiohttp.ClientSession(trace_configs=configs, **kwargs)


def service_of_host(host: str) -> str:
    """The service a host name stands for: ``identity`` on a laptop (the registry's name),
    ``identity.mercato.svc.cluster.local`` or ``order-history`` in a cluster (DNS labels)."""
    return host.split(".", 1)[0].replace("-", "_")


class ServiceClient:
    def __init__(self, session_provider: Callable[[], aiohttp.ClientSession],
                 resolver: UrlResolver, *, timeout_s: float = 2.0, retries: int = 2,
                 backoff_base_s: float = 0.05, backoff_max_s: float = 1.0,
                 breaker: BreakerSettings | None = None, bulkhead: int = 32,
                 service_identity: str | None = None,
                 caller_signer: CallerSigner | None = None,
                 registry: CollectorRegistry | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        # session_provider: the app's shared session is created in its lifespan, after us.
        self._sessions = session_provider
        self._resolver = resolver
        self._timeout_s = timeout_s
        self._retries = retries
        self._backoff = (backoff_base_s, backoff_max_s)
        self._breaker_settings = breaker or BreakerSettings()
        self._bulkhead_size = bulkhead
        self._identity = service_identity
        self._signer = caller_signer
        self._clock = clock
        self._metrics = _Metrics(registry) if registry is not None else None
        self._breakers: dict[str, CircuitBreaker] = {}
        self._bulkheads: dict[str, asyncio.Semaphore] = {}

    def breaker(self, target: str) -> CircuitBreaker:
        if target not in self._breakers:
            self._breakers[target] = CircuitBreaker(
                self._breaker_settings, self._clock,
                on_change=self._metrics.breaker_watcher(target) if self._metrics else None)
        return self._breakers[target]

    async def get(self, url: str, **kw: Any) -> ServiceResponse:
        return await self.request("GET", url, **kw)

    async def head(self, url: str, **kw: Any) -> ServiceResponse:
        return await self.request("HEAD", url, **kw)

    async def post(self, url: str, **kw: Any) -> ServiceResponse:
        return await self.request("POST", url, **kw)

    async def put(self, url: str, **kw: Any) -> ServiceResponse:
        return await self.request("PUT", url, **kw)

    async def patch(self, url: str, **kw: Any) -> ServiceResponse:
        return await self.request("PATCH", url, **kw)

    async def delete(self, url: str, **kw: Any) -> ServiceResponse:
        return await self.request("DELETE", url, **kw)

    async def request(self, method: str, url: str, *, params: Mapping[str, str] | None = None,
                      json: Any = None, data: bytes | None = None,
                      headers: Mapping[str, str] | None = None,
                      authorization: str | None = None, idempotency_key: str | None = None,
                      timeout_s: float | None = None) -> ServiceResponse:
        """Call ``url``; a 2xx to 4xx answer is returned, anything else raises
        ``UpstreamUnavailable`` (``CircuitOpen``/``BulkheadFull`` when refused locally)."""
        method = method.upper()
        target = urlsplit(url).hostname or url
        out = dict(headers or {})
        if authorization:
            out["Authorization"] = authorization
        if self._signer is not None:
            # Verifiable by the callee (chassis.service_identity); the bare name is not.
            out[H_SERVICE_IDENTITY] = self._signer.token_for(service_of_host(target))
        elif self._identity:
            out[H_SERVICE_IDENTITY] = self._identity
        if idempotency_key:
            out[H_IDEMPOTENCY_KEY] = idempotency_key
        # A traced_session (the chassis's own) replaces this with its CLIENT span's context;
        # with any other session the callee still joins the caller's trace.
        propagate.inject(out)
        repeatable = method in IDEMPOTENT_METHODS or H_IDEMPOTENCY_KEY in out
        body = orjson.dumps(json) if json is not None else data
        if json is not None:
            out.setdefault("Content-Type", "application/json")

        bulkhead = self._bulkheads.setdefault(target, asyncio.Semaphore(self._bulkhead_size))
        if bulkhead.locked():
            self._count(target, "bulkhead_full")
            raise BulkheadFull(target, f"{self._bulkhead_size} calls already in flight")
        async with bulkhead:
            return await self._attempts(method, url, target, params, body, out,
                                        1 + (self._retries if repeatable else 0),
                                        timeout_s or self._timeout_s)

    async def _attempts(self, method: str, url: str, target: str,
                        params: Mapping[str, str] | None, body: bytes | None,
                        headers: dict[str, str], attempts: int,
                        timeout_s: float) -> ServiceResponse:
        breaker = self.breaker(target)
        reason, status = "no attempt made", None
        forget = getattr(self._resolver, "forget", None)
        refused_once = False
        attempt = -1
        while attempt + 1 < attempts:
            attempt += 1
            if attempt:
                if self._metrics:
                    self._metrics.retries.labels(target).inc()
                base, cap = self._backoff
                # Full jitter: callers that failed together do not retry together.
                await asyncio.sleep(random.uniform(0, min(cap, base * 2 ** attempt)))  # noqa: S311
            try:
                resolved = await self._resolver.resolve_url(url)
            except ServiceUnavailable as exc:
                # Discovery already waited as long as it should; asking again at once finds
                # the registry no better. Not the target's failure: its breaker is untouched.
                self._count(target, "unresolved")
                raise UpstreamUnavailable(target, exc.detail or str(exc)) from exc
            if not breaker.allow():
                self._count(target, "circuit_open")
                raise CircuitOpen(target, "circuit open after repeated failures")
            try:
                response = await self._once(method, resolved, params, body, headers, timeout_s)
            except aiohttp.ClientConnectorError as exc:
                # Nothing was sent: safe to send again, whatever the method, to an instance
                # that is alive (a restarted one listens on a new port).
                breaker.failure()
                reason, status = _describe(exc, timeout_s), None
                if forget is not None:
                    forget(resolved)
                if not refused_once and attempt + 1 == attempts:
                    refused_once = True
                    attempts += 1
                continue
            except (TimeoutError, aiohttp.ClientError) as exc:
                breaker.failure()
                reason, status = _describe(exc, timeout_s), None
                continue
            except BaseException:
                breaker.release()
                raise
            if response.status < 500:
                breaker.success()
                self._count(target, "ok" if response.status < 400 else "client_error")
                return response
            breaker.failure()
            reason, status = f"answered {response.status}", response.status
            if response.status not in RETRYABLE_STATUSES:
                break  # a 500 is a bug over there; asking again rarely helps
        self._count(target, "failed")
        raise UpstreamUnavailable(target, reason, status=status)

    async def _once(self, method: str, url: str, params: Mapping[str, str] | None,
                    body: bytes | None, headers: dict[str, str],
                    timeout_s: float) -> ServiceResponse:
        # One bound for the whole exchange, body included.
        async with asyncio.timeout(timeout_s):
            async with self._sessions().request(method, url, params=params, data=body,
                                                headers=headers) as r:
                return ServiceResponse(r.status, dict(r.headers), await r.read())

    def _count(self, target: str, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.calls.labels(target, outcome).inc()


def _describe(exc: BaseException, timeout_s: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout_s:g}s"
    return f"{type(exc).__name__}: {exc}"[:300]


__all__ = ["BreakerSettings", "BulkheadFull", "CircuitBreaker", "CircuitOpen", "ForgetfulResolver",
           "ServiceClient", "ServiceResponse", "UpstreamUnavailable"]
