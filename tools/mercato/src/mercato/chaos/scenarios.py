"""The scenarios of ``mercato chaos``: what each injects and what it needs from the platform.

A scenario's ``inject`` runs while orders flow; it returns when the fault is over (a kill:
at once; a stop, an outage or a proxy fault: after its length), with what it did. The
runner then measures how long the shop takes to recover and whether every order ends well.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from mercato.chaos import faults
from mercato.runtime.faultproxy import route_name
from mercato.runtime.paths import Home
from mercato.runtime.services import SERVICES

SAGA_SERVICES = ("orders", "inventory", "payments", "shipping")
SIMULATORS = ("payments-provider", "mailsink")
NATS_OUTAGE_S = 20.0
SIGSTOP_S = 15.0
PROXY_FAULT_S = 10.0
PROXY_LATENCY_MS = 200.0
PROXY_RESET_EVERY_S = 2.0


@dataclass(frozen=True)
class Context:
    home: Home
    nats_url: str
    state: dict[str, Any]  # run/state.json when the scenario starts


Inject = Callable[[Context], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str  # one line: the fault, as the report shows it
    inject: Inject
    # Why it cannot run on this platform (None: it can), from state.json.
    missing: Callable[[dict[str, Any]], str | None] = lambda _state: None
    # Probe catalog reads, sign-in and order placement while the fault lasts (all must 2xx).
    probes: bool = False
    # Part of the default (short) set that `make test` runs.
    short: bool = False


def _has_process(name: str, hint: str) -> Callable[[dict[str, Any]], str | None]:
    def missing(state: dict[str, Any]) -> str | None:
        return None if name in (state.get("processes") or {}) else hint

    return missing


def _has_route(route: str) -> Callable[[dict[str, Any]], str | None]:
    def missing(state: dict[str, Any]) -> str | None:
        routes = (state.get("fault_proxy") or {}).get("routes") or {}
        return None if route in routes else "needs mercato up --fault-proxy"

    return missing


def _kill(name: str) -> Inject:
    return lambda ctx: faults.kill_9(ctx.home, name)


def _latency(route: str) -> Inject:
    return lambda ctx: faults.latency(ctx.home, route, PROXY_LATENCY_MS, PROXY_FAULT_S)


def _resets(route: str) -> Inject:
    return lambda ctx: faults.resets(ctx.home, route, PROXY_RESET_EVERY_S, PROXY_FAULT_S)


def all_scenarios() -> list[Scenario]:
    out: list[Scenario] = []
    for service in SERVICES:
        out.append(Scenario(f"kill-{service}", f"kill -9 of {service}-1", _kill(f"{service}-1"),
                            _has_process(f"{service}-1", f"{service} does not run here"),
                            short=service == "payments"))
    for sim in SIMULATORS:
        out.append(Scenario(f"kill-{sim}", f"kill -9 of the {sim} simulator", _kill(sim),
                            _has_process(sim, f"no {sim} here")))
    out += [
        Scenario("kill-postgres", "kill -9 of PostgreSQL (the postmaster)", _kill("postgres")),
        Scenario("kill-nats", "kill -9 of NATS", _kill("nats"), probes=True, short=True),
        Scenario("nats-outage", f"kill -9 of NATS each time it is back, for {NATS_OUTAGE_S:g} s",
                 lambda ctx: faults.kill_repeatedly(ctx.home, "nats", NATS_OUTAGE_S),
                 probes=True),
        Scenario("kill-envoy", "kill -9 of Envoy (the edge)", _kill("envoy"),
                 _has_process("envoy", "runs without the edge")),
        Scenario("kill-supervisor", "kill -9 of the supervisor (everything dies with it), "
                 "then mercato up", lambda ctx: faults.kill_supervisor_and_up(ctx.home)),
        Scenario("sigstop-payments", f"SIGSTOP of payments-1 for {SIGSTOP_S:g} s",
                 lambda ctx: faults.stop_for(ctx.home, "payments-1", SIGSTOP_S),
                 _has_process("payments-1", "payments does not run here")),
        Scenario("down-up", "mercato down, then mercato up, with orders in flight",
                 lambda ctx: faults.down_and_up(ctx.home)),
        Scenario("poison-messages", "a non-JSON and an unknown-version command to inventory",
                 lambda ctx: faults.poison_messages(ctx.home, ctx.nats_url)),
    ]
    for service, engine in (("orders", "postgres"), ("payments", "postgres"),
                            ("inventory", "postgres"), ("orders", "nats"),
                            ("payments", "nats")):
        route = route_name(service, engine)
        out.append(Scenario(
            f"latency-{service}-{engine}",
            f"+{PROXY_LATENCY_MS:g} ms each way between {service} and {engine} for "
            f"{PROXY_FAULT_S:g} s",
            _latency(route),
            _has_route(route)))
        out.append(Scenario(
            f"resets-{service}-{engine}",
            f"connections between {service} and {engine} reset every "
            f"{PROXY_RESET_EVERY_S:g} s for {PROXY_FAULT_S:g} s",
            _resets(route),
            _has_route(route), short=(service, engine) == ("orders", "postgres")))
    for service in SAGA_SERVICES:
        out.append(Scenario(
            f"kill-second-{service}", f"kill -9 of {service}-2 while {service}-1 runs",
            _kill(f"{service}-2"),
            _has_process(f"{service}-2", f"needs mercato up --scale {service}=2"),
            short=service == "orders"))
    return out


def select(names: list[str] | None, everything: bool) -> list[Scenario]:
    """The scenarios asked for, in the catalogue's order; ValueError names unknown ones."""
    known = all_scenarios()
    if names:
        by_name = {s.name: s for s in known}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise ValueError(f"unknown scenario(s): {', '.join(unknown)}; known: "
                             + ", ".join(by_name))
        return [s for s in known if s.name in set(names)]
    return known if everything else [s for s in known if s.short]
