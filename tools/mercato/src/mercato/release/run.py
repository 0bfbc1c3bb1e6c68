"""``mercato release``: the decisions of a release, taken from outside the supervisor.

The supervisor runs the instances and sets the edge's weights when asked (through its
command channel, ``mercato.runtime.releases``); this module decides: it starts the new
instances, waits until they are ready and Envoy has health-checked them, moves the weight
step by step while comparing the new instances' metrics with the old ones', and promotes or
rolls back. Every wait here is bounded; any failure on the way rolls back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from mercato.gateway.envoy import admin_get, parse_clusters
from mercato.gateway.render import next_cluster
from mercato.release.analysis import Sample, Thresholds, Verdict, judge, parse, total
from mercato.runtime import commands, control
from mercato.runtime.paths import Home

READY_TIMEOUT_S = 90.0


class ReleaseFailed(Exception):
    """The release cannot go on; it was rolled back (``rolled_back``) or never started."""

    def __init__(self, message: str, rolled_back: bool = False) -> None:
        super().__init__(message)
        self.rolled_back = rolled_back


@dataclass(frozen=True)
class Plan:
    service: str
    steps: tuple[int, ...]  # weights in percent, the last one 100
    blue_green: bool = False
    instances: int | None = None  # None: as many as the service runs now
    source: Path | None = None
    window_s: float = 30.0
    poll_s: float = 1.0
    limits: Thresholds = field(default_factory=Thresholds)


def canary_steps(first: int, steps: list[int] | None) -> tuple[int, ...]:
    """``--canary 10 --steps 10,50,100`` -> (10, 50, 100): from the first weight upwards,
    ending at 100. Raises ValueError for weights outside 1..100."""
    weights = [first, *(steps or [])]
    for w in weights:
        if not 1 <= w <= 100:
            raise ValueError(f"a step is a percentage from 1 to 100, got {w}")
    ordered = sorted({w for w in weights if w >= first})
    if ordered[-1] != 100:
        ordered.append(100)
    return tuple(ordered)


Say = Callable[[str], None]
Confirm = Callable[[str], bool]


class Release:
    def __init__(self, home: Home, plan: Plan, say: Say, confirm: Confirm | None) -> None:
        self.home = home
        self.plan = plan
        self.say = say
        self.confirm = confirm  # None: --auto
        self.http: aiohttp.ClientSession | None = None

    # -- the supervisor ------------------------------------------------------------------------

    async def _ask(self, action: str, timeout: float = 60.0, **args: Any) -> dict[str, Any]:
        try:
            answer = await commands.send(self.home.supervisor_socket, commands.RELEASE,
                                         self.plan.service, timeout=timeout,
                                         args={"action": action, **args})
        except (OSError, TimeoutError) as exc:
            raise ReleaseFailed(f"the supervisor did not answer ({exc!r})") from exc
        if not answer.get("ok"):
            raise ReleaseFailed(str(answer.get("error", "refused")))
        return answer

    def _state(self) -> dict[str, Any]:
        return control.read_state(self.home) or {}

    def _processes(self) -> dict[str, Any]:
        return dict(self._state().get("processes") or {})

    # -- Envoy ---------------------------------------------------------------------------------

    async def _healthy_in(self, cluster: str) -> set[str]:
        """Instance names Envoy holds healthy in ``cluster`` (its admin's /clusters)."""
        try:
            status, text = await admin_get(self.home.envoy_admin_socket, "/clusters")
        except (aiohttp.ClientError, OSError, TimeoutError):
            return set()
        if status != 200:
            return set()
        return {h.hostname for h in parse_clusters(text)
                if h.cluster == cluster and h.healthy and h.hostname}

    async def _wait_healthy(self, names: list[str], cluster: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            procs = self._processes()
            states = {n: (procs.get(n) or {}).get("state") for n in names}
            healthy = await self._healthy_in(cluster) if all(
                s == "ready" for s in states.values()) else set()
            if set(names) <= healthy:
                return
            if time.monotonic() > deadline:
                raise ReleaseFailed(f"the new instances were not ready and healthy at the edge "
                                    f"within {timeout:g} s (states: {states}; healthy in "
                                    f"{cluster}: {sorted(healthy)})")
            await asyncio.sleep(0.2)

    # -- metrics -------------------------------------------------------------------------------

    async def _scrape(self, names: list[str]) -> dict[str, Sample]:
        http = self.http
        assert http is not None
        procs = self._processes()

        async def one(name: str) -> tuple[str, Sample | None]:
            port = (procs.get(name) or {}).get("port")
            if not port:
                return name, None
            try:
                async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                    if resp.status != 200:
                        return name, None
                    return name, parse(await resp.text())
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
                return name, None

        got = await asyncio.gather(*(one(n) for n in names))
        return {n: s for n, s in got if s is not None}

    async def _watch(self, weight: int, old: list[str], new: list[str]) -> Verdict:
        """One step's window: scrape both sides at its start and every poll; stop early when
        the new side already fails on enough requests."""
        limits = self.plan.limits
        start_old, start_new = await self._scrape(old), await self._scrape(new)
        started = time.monotonic()
        verdict = judge(Sample(), Sample(), limits)
        while True:
            await asyncio.sleep(self.plan.poll_s)
            now_old, now_new = await self._scrape(old), await self._scrape(new)
            window_old = total(s - start_old.get(n, Sample()) for n, s in now_old.items())
            window_new = total(s - start_new.get(n, Sample()) for n, s in now_new.items())
            verdict = judge(window_old, window_new, limits)
            elapsed = time.monotonic() - started
            self.say(f"  {weight:>3} %  {elapsed:4.1f} s  {verdict.summary()}")
            if not verdict.ok and window_new.requests >= limits.min_requests:
                return verdict
            if elapsed >= self.plan.window_s:
                return verdict

    # -- the release ---------------------------------------------------------------------------

    async def run(self) -> str:
        plan = self.plan
        current = [n for n, p in self._processes().items()
                   if p.get("kind") == "service" and p.get("service") == plan.service
                   and p.get("state") != "stopped"]
        count = plan.instances or len(current) or 1
        started = await self._ask("start", count=count,
                                  source=str(plan.source) if plan.source else None,
                                  mode="blue-green" if plan.blue_green else "canary")
        new, old = list(started["new"]), list(started["old"])
        self.say(f"started {', '.join(new)} beside {', '.join(old)}"
                 + (f" from {plan.source}" if plan.source else " from the working tree"))
        timeout = aiohttp.ClientTimeout(total=2.0)
        async with aiohttp.ClientSession(timeout=timeout) as self.http:
            try:
                await self._wait_healthy(new, next_cluster(plan.service), READY_TIMEOUT_S)
                self.say("new instances ready and healthy at the edge")
                for weight in plan.steps:
                    if self.confirm is not None and not self.confirm(
                            f"send {weight} % of {plan.service}'s traffic to {', '.join(new)}?"):
                        raise ReleaseFailed("stopped at your request")
                    await self._ask("weight", weight=weight)
                    self.say(f"step {weight} %: watching for {plan.window_s:g} s")
                    verdict = await self._watch(weight, old, new)
                    if not verdict.ok:
                        raise ReleaseFailed(f"step {weight} % failed: "
                                            + "; ".join(verdict.reasons))
                    if not verdict.judged:
                        self.say(f"  warning: only {verdict.new.requests:.0f} requests reached "
                                 f"the new instances (fewer than {plan.limits.min_requests}); "
                                 "not enough to judge, going on")
                    self.say(f"step {weight} % held")
            except (ReleaseFailed, asyncio.CancelledError, KeyboardInterrupt) as exc:
                await self._rollback_quietly()
                if isinstance(exc, ReleaseFailed):
                    raise ReleaseFailed(str(exc), rolled_back=True) from exc
                raise
        if plan.blue_green:
            return (f"{plan.service}: all traffic on {', '.join(new)}; {', '.join(old)} kept "
                    f"for an instant rollback (`mercato release {plan.service} --rollback`); "
                    f"`mercato release {plan.service} --finish` stops them")
        await self.finish()
        return f"{plan.service} promoted: {', '.join(new)} serve all of its traffic"

    async def finish(self) -> None:
        """Stop the old instances and hand the service's own cluster to the new ones."""
        release = (self._state().get("releases") or {}).get(self.plan.service)
        if release is None:
            raise ReleaseFailed(f"no release of {self.plan.service} is under way")
        if release.get("weight") != 100:
            raise ReleaseFailed(f"the new instances take {release.get('weight')} % of the "
                                "traffic, not 100 %: nothing to finish")
        new = list(release["new"])
        if release.get("phase") != "promoting":
            stopped = await self._ask("promote", timeout=90.0)
            self.say(f"stopped {', '.join(stopped['stopped'])}")
        # The route goes back to the service's own cluster only once Envoy holds the new
        # instances healthy in it: before that, it would have no host to send to.
        await self._wait_healthy(new, self.plan.service, READY_TIMEOUT_S)
        await self._ask("finish")

    async def rollback(self) -> dict[str, Any]:
        return await self._ask("rollback", timeout=90.0)

    async def _rollback_quietly(self) -> None:
        try:
            answer = await self.rollback()
            self.say(f"rolled back: traffic on {', '.join(answer['instances'])}, "
                     f"stopped {', '.join(answer['stopped'])}")
        except ReleaseFailed as exc:
            self.say(f"rollback failed: {exc}")
