"""Releases inside the supervisor: new instances of a service beside its running ones, and
the edge's split between them (``mercato release``; the decisions are the CLI's, see
``mercato.release``).

A release starts its instances (``<service>-r<N>-<i>``, a new N per release) from the
working tree, or from ``source`` put first on their PYTHONPATH, after telling the gateway
that those instance names form the ``<service>-next`` cluster at weight 0: they never take
traffic before a weight says so. Then the CLI moves the weight, and ends the release:

- ``promote`` (weight 100): the old instances are stopped and forgotten, the new ones join the
  service's own cluster; ``finish`` then drops the split once Envoy has checked them there.
- ``rollback``: weight 0, the new instances are stopped and forgotten, the split dropped.

Promoted instances stay supervised as any other (restarted when they crash, shown by
``mercato status``), with the source they were started from. A release is not persisted: it
lasts as long as the supervisor, and the next ``mercato up`` runs the working tree.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mercato.runtime.supervisor import Child, Supervisor

ACTIONS = ("start", "weight", "promote", "finish", "rollback")
MAX_NEW_INSTANCES = 16
_GENERATION = re.compile(r"-r(\d+)-\d+$")
# After a weight change, before stopping instances: Envoy reads the routes file within
# milliseconds; this leaves it ample time, then requests under way are waited for.
DRAIN_SETTLE_S = 0.5
DRAIN_TIMEOUT_S = 10.0


class ReleaseError(Exception):
    pass


class Releases:
    def __init__(self, supervisor: Supervisor) -> None:
        self.sup = supervisor
        self.under_way: dict[str, dict[str, Any]] = {}
        self._lock = asyncio.Lock()

    def as_json(self) -> dict[str, Any]:
        return {s: dict(r) for s, r in self.under_way.items()}

    async def handle(self, service: str, args: dict[str, Any]) -> dict[str, Any]:
        action = str(args.get("action", ""))
        if action not in ACTIONS:
            return {"ok": False, "error": f"unknown release action {action!r}; actions are "
                    + ", ".join(ACTIONS)}
        if self.sup.phase != "ready":
            return {"ok": False, "error": f"the platform is {self.sup.phase}"}
        if service not in self.sup.services:
            return {"ok": False, "error": f"no service {service!r} runs here"}
        if self.sup.edge is None or self.sup.edge.splits is None:
            return {"ok": False, "error": "the platform runs without its edge (--no-gateway): "
                    "there is no traffic to shift"}
        async with self._lock:  # one change at a time: each reads what the last one left
            try:
                answer = await getattr(self, f"_{action}")(service, args)
            except ReleaseError as exc:
                return {"ok": False, "error": str(exc)}
        self._emit(action, service)
        self.sup.write_state()
        return {"ok": True, **answer}

    # -- actions -------------------------------------------------------------------------------

    async def _start(self, service: str, args: dict[str, Any]) -> dict[str, Any]:
        if service in self.under_way:
            raise ReleaseError(f"a release of {service} is already under way (`mercato release "
                               f"{service} --rollback` or --finish ends it)")
        count = args.get("count")
        if not isinstance(count, int) or not 1 <= count <= MAX_NEW_INSTANCES:
            raise ReleaseError(f"count must be a number from 1 to {MAX_NEW_INSTANCES}")
        source = args.get("source")
        if source is not None and not await asyncio.to_thread(Path(str(source)).is_dir):
            raise ReleaseError(f"source {source!r} is not a directory")
        old = sorted(self._instances(service))
        if not old:
            raise ReleaseError(f"{service} has no running instances to release beside")
        generation = 1 + max((int(m.group(1)) for n in old if (m := _GENERATION.search(n))),
                             default=0)
        new = [f"{service}-r{generation}-{i}" for i in range(1, count + 1)]
        from mercato.gateway import Split

        # Before the instances exist: registered without a split, they would join the
        # service's own cluster and take traffic unjudged.
        self._splits().set(Split(service, frozenset(new), weight=0))
        module = self.sup.services[service]
        for name in new:
            spec = self.sup._service_spec(service, module, name)
            if source is not None:
                spec.env = _with_source(spec.env, str(source), self.sup.base_env)
            self.sup.add(spec)
        self.under_way[service] = {
            "mode": str(args.get("mode", "canary")), "old": old, "new": new, "weight": 0,
            "phase": "starting", "source": source, "started_at": time.time()}
        return {"new": new, "old": old}

    async def _weight(self, service: str, args: dict[str, Any]) -> dict[str, Any]:
        release = self._release(service)
        weight = args.get("weight")
        if not isinstance(weight, int) or not 0 <= weight <= 100:
            raise ReleaseError("weight must be a percentage from 0 to 100")
        if release["phase"] == "promoting":
            raise ReleaseError(f"{service}'s old instances are stopped already: finish it")
        from mercato.gateway import Split

        self._splits().set(Split(service, frozenset(release["new"]), weight=weight))
        release.update(weight=weight, phase="shifting")
        return {"weight": weight}

    async def _promote(self, service: str, args: dict[str, Any]) -> dict[str, Any]:
        release = self._release(service)
        if release["weight"] != 100:
            raise ReleaseError(f"{service}'s new instances take {release['weight']} % of its "
                               "traffic: promote only at 100 %")
        from mercato.gateway import Split

        # They take no traffic at 100 %: stopping them drops nothing, and once stopped they
        # deregister, so the service's own cluster can hold the new instances alone.
        await self._drained(service)
        await self._stop_and_forget(release["old"])
        self._splits().set(Split(service, frozenset(release["new"]), weight=100,
                                 promoting=True))
        release["phase"] = "promoting"
        return {"stopped": release["old"]}

    async def _finish(self, service: str, args: dict[str, Any]) -> dict[str, Any]:
        release = self._release(service)
        if release["phase"] != "promoting":
            raise ReleaseError(f"{service} is not promoted yet")
        self._splits().clear(service)
        del self.under_way[service]
        return {"instances": release["new"]}

    async def _rollback(self, service: str, args: dict[str, Any]) -> dict[str, Any]:
        release = self._release(service)
        if release["phase"] == "promoting":
            raise ReleaseError(f"{service}'s old instances are stopped already: nothing to go "
                               "back to")
        from mercato.gateway import Split
        from mercato.gateway.render import next_cluster

        # Traffic back first (the old instances never stopped), then the new ones go once
        # Envoy has stopped sending them requests and those under way have ended.
        self._splits().set(Split(service, frozenset(release["new"]), weight=0))
        release.update(weight=0, phase="rolling back")
        self.sup.write_state()
        await self._drained(next_cluster(service))
        await self._stop_and_forget(release["new"])
        self._splits().clear(service)
        del self.under_way[service]
        return {"stopped": release["new"], "instances": release["old"]}

    # -- helpers -------------------------------------------------------------------------------

    def _release(self, service: str) -> dict[str, Any]:
        release = self.under_way.get(service)
        if release is None:
            raise ReleaseError(f"no release of {service} is under way")
        return release

    def _splits(self) -> Any:
        assert self.sup.edge is not None and self.sup.edge.splits is not None
        return self.sup.edge.splits

    def _instances(self, service: str) -> list[str]:
        return [name for name, c in self.sup.children.items()
                if c.spec.kind == "service" and c.spec.service == service
                and not c.stop_requested]

    async def _stop_and_forget(self, names: list[str]) -> None:
        children: list[Child] = [self.sup.children[n] for n in names if n in self.sup.children]
        await asyncio.gather(*(self.sup.stop_child(c) for c in children))
        for c in children:
            self.sup.children.pop(c.spec.name, None)

    async def _drained(self, cluster: str) -> None:
        """Until Envoy has no request under way to ``cluster`` (bounded): a weight just set
        takes Envoy a moment to read, and requests already sent must finish before their
        instances are stopped, or their clients would get a 503."""
        from mercato.gateway.envoy import admin_get

        await asyncio.sleep(DRAIN_SETTLE_S)
        stat = f"cluster.{cluster}.upstream_rq_active"
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        quiet = 0
        while time.monotonic() < deadline and quiet < 2:
            try:
                _, text = await admin_get(self.sup.home.envoy_admin_socket,
                                          f"/stats?filter=^{re.escape(stat)}$")
                value = int(text.strip().rpartition(":")[2] or 0)
            except (OSError, TimeoutError, ValueError, Exception):
                value = 0  # no admin to ask: the settle time is all we can give
            quiet = quiet + 1 if value == 0 else 0
            await asyncio.sleep(0.1)

    def _emit(self, action: str, service: str) -> None:
        from mercato.runtime.supervisor import emit

        emit(logging.INFO, "release", action=action, service=service,
             release=self.under_way.get(service))


def _with_source(env: Any, source: str, base_env: dict[str, str]) -> Any:
    """The spec's environment with ``source`` first on PYTHONPATH: its packages shadow the
    installed (editable) ones, so the new instances run that copy of the service."""
    before = base_env.get("PYTHONPATH", "")

    def env_with_source(port: int | None) -> dict[str, str]:
        out = dict(env(port))
        out["PYTHONPATH"] = source + (os.pathsep + before if before else "")
        return out

    return env_with_source
