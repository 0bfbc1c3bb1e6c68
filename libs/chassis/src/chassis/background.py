"""Background work of a service: periodic rounds and long-running loops, one way for all.

A service declares its tasks in ``bootstrap`` (``ctx.background.every(...)`` or
``ctx.background.run(...)``); the app starts them once ``bootstrap`` has wired everything
(so a task never sees a half-built service) and stops them at shutdown before ``bootstrap``
tears its wiring down. What every task gets without writing it:

- a failure never ends the task, nor the service: it is logged (``background_task_failed``,
  with the error and when the task runs again) and retried after a backoff that doubles from
  the task's interval up to ``max_backoff_s``, and resets after a success;
- ``background_task_runs_total{task, outcome}`` counts rounds (``ok`` / ``failed``), so a task
  that keeps failing shows on ``/metrics`` (every task's series start at zero);
- shutdown sets the stop event, lets the round in flight finish (up to ``stop_timeout_s``),
  then cancels what is left.

``every(name, interval_s, round)``: ``round()`` runs at once (or after ``first_delay_s``),
then every ``interval_s``; a round that returns ``True`` says more work is waiting and runs
again at once (a full batch); ``on_stop()`` runs once after the task's last round, at
shutdown (release what the task held). ``run(name, loop)``: ``loop(stop)`` is one long-running
coroutine that returns when ``stop`` is set; if it raises it is started again after the
backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from prometheus_client import CollectorRegistry, Counter

from chassis import metric_catalogue as m

log = structlog.get_logger("chassis.background")

Round = Callable[[], Awaitable[bool | None]]
Cleanup = Callable[[], Awaitable[None]]
Loop = Callable[[asyncio.Event], Awaitable[None]]

MAX_BACKOFF_S = 30.0
STOP_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class _Task:
    name: str
    interval_s: float
    round: Round | None = None
    loop: Loop | None = None
    first_delay_s: float = 0.0
    max_backoff_s: float = MAX_BACKOFF_S
    on_stop: Cleanup | None = None
    stop_timeout_s: float = 0.0  # longer than the runner's: a round that may take longer


class BackgroundTasks:
    def __init__(self, registry: CollectorRegistry, *,
                 stop_timeout_s: float = STOP_TIMEOUT_S) -> None:
        self._registry = registry
        self._runs_counter: Counter | None = None  # served only by a service that has tasks
        self._declared: dict[str, _Task] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self._stop_timeout_s = stop_timeout_s

    @property
    def _runs(self) -> Counter:
        if self._runs_counter is None:
            self._runs_counter = m.BACKGROUND_RUNS.counter(self._registry)
        return self._runs_counter

    @property
    def names(self) -> list[str]:
        return list(self._declared)

    def every(self, name: str, interval_s: float, round: Round, *,
              first_delay_s: float = 0.0, max_backoff_s: float = MAX_BACKOFF_S,
              on_stop: Cleanup | None = None, stop_timeout_s: float = 0.0) -> None:
        """Run ``round()`` every ``interval_s`` seconds (see the module docstring);
        ``stop_timeout_s`` lets a round in flight at shutdown finish for longer than the
        runner's default (one that waits on a slow mail server)."""
        if interval_s <= 0:
            raise ValueError(f"background task {name!r}: interval_s must be > 0")
        self._declare(_Task(name, interval_s, round=round, first_delay_s=first_delay_s,
                            max_backoff_s=max_backoff_s, on_stop=on_stop,
                            stop_timeout_s=stop_timeout_s))

    def run(self, name: str, loop: Loop, *, restart_after_s: float = 1.0,
            max_backoff_s: float = MAX_BACKOFF_S) -> None:
        """Run ``loop(stop)`` until shutdown, started again after a backoff if it raises."""
        self._declare(_Task(name, restart_after_s, loop=loop, max_backoff_s=max_backoff_s))

    def _declare(self, task: _Task) -> None:
        if task.name in self._declared:
            raise ValueError(f"background task {task.name!r} is declared twice")
        if self._tasks:
            raise RuntimeError("background tasks are declared in bootstrap, before they start")
        self._declared[task.name] = task
        for outcome in ("ok", "failed"):
            self._runs.labels(task.name, outcome)

    def start(self) -> None:
        """Start every declared task (once)."""
        if self._tasks:
            return
        self._stop.clear()
        for task in self._declared.values():
            body = self._every(task) if task.round is not None else self._loop(task)
            self._tasks.append(asyncio.create_task(body, name=f"background-{task.name}"))
        if self._declared:
            log.info("background_started", tasks=self.names)

    async def stop(self) -> None:
        """Ask every task to stop, wait for the rounds in flight, cancel what is left. The
        declarations go too: an app started again declares its tasks again."""
        self._stop.set()
        try:
            await self._stop_tasks()
        finally:
            self._declared.clear()

    async def _stop_tasks(self) -> None:
        if not self._tasks:
            return
        timeout = max([self._stop_timeout_s,
                       *(t.stop_timeout_s for t in self._declared.values())])
        _, late = await asyncio.wait(self._tasks, timeout=timeout)
        for task in late:
            task.cancel()
        # Their errors are theirs; a cancel of this stop itself still propagates.
        await asyncio.gather(*late, return_exceptions=True)
        if late:
            log.warning("background_stop_cancelled", tasks=sorted(t.get_name() for t in late))
        self._tasks.clear()

    async def _pause(self, seconds: float) -> bool:
        """Wait ``seconds`` or until stop; True if the task should go on."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)
        return not self._stop.is_set()

    def _failed(self, task: _Task, exc: BaseException, failures: int) -> float:
        delay = min(task.interval_s * 2 ** (failures - 1), max(task.max_backoff_s,
                                                                task.interval_s))
        self._runs.labels(task.name, "failed").inc()
        log.warning("background_task_failed", task=task.name, failures=failures,
                    retry_in=round(delay, 3), error=f"{type(exc).__name__}: {exc}"[:300])
        return delay

    async def _every(self, task: _Task) -> None:
        try:
            await self._rounds(task)
        finally:
            if task.on_stop is not None:
                try:
                    await task.on_stop()
                except Exception as exc:
                    log.warning("background_task_cleanup_failed", task=task.name,
                                error=f"{type(exc).__name__}: {exc}"[:300])

    async def _rounds(self, task: _Task) -> None:
        assert task.round is not None
        if task.first_delay_s and not await self._pause(task.first_delay_s):
            return
        failures = 0
        while not self._stop.is_set():
            try:
                more = await task.round()
            except Exception as exc:
                failures += 1
                delay = self._failed(task, exc, failures)
            else:
                self._runs.labels(task.name, "ok").inc()
                if failures:
                    log.info("background_task_recovered", task=task.name, failures=failures)
                failures = 0
                if more is True:
                    continue  # more is waiting: no pause between full batches
                delay = task.interval_s
            if not await self._pause(delay):
                return

    async def _loop(self, task: _Task) -> None:
        assert task.loop is not None
        failures = 0
        while not self._stop.is_set():
            try:
                await task.loop(self._stop)
            except Exception as exc:
                failures += 1
                if not await self._pause(self._failed(task, exc, failures)):
                    return
            else:
                self._runs.labels(task.name, "ok").inc()
                return
