"""Background tasks: a failing one is retried with backoff without stopping the others (or
the service), shutdown stops them all, and the app runs them between bootstrap and
shutdown with a metric per task."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, ClassVar

import orjson
import pytest
from chassis.app import ServiceContext, create_service_app
from chassis.background import BackgroundTasks
from chassis.logging import configure_logging
from chassis.settings import ServiceSettings
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families


def logged(capsys: pytest.CaptureFixture[str], event: str) -> list[dict[str, Any]]:
    lines = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()
             if line.startswith("{")]
    return [line for line in lines if line.get("event") == event]


def runs(registry: CollectorRegistry, task: str, outcome: str) -> float:
    value = registry.get_sample_value("background_task_runs_total",
                                      {"task": task, "outcome": outcome})
    assert value is not None
    return value


async def test_a_failing_task_is_retried_with_backoff_and_the_others_go_on(
        capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("toy", "toy-1")
    registry = CollectorRegistry()
    tasks = BackgroundTasks(registry)
    attempts, steady_rounds = 0, 0
    recovered = asyncio.Event()

    async def flaky() -> None:
        nonlocal attempts
        attempts += 1
        if attempts <= 5:
            raise ConnectionError("the database is away")
        recovered.set()

    async def steady() -> None:
        nonlocal steady_rounds
        steady_rounds += 1

    tasks.every("flaky", 0.01, flaky, max_backoff_s=0.04)
    tasks.every("steady", 0.01, steady)
    assert runs(registry, "flaky", "failed") == 0  # at zero before the first round
    tasks.start()
    await asyncio.wait_for(recovered.wait(), 10)
    during = steady_rounds
    await tasks.stop()

    failures = logged(capsys, "background_task_failed")
    # Doubling from the interval, capped: 10, 20, 40, 40, 40 ms.
    assert [f["retry_in"] for f in failures] == [0.01, 0.02, 0.04, 0.04, 0.04]
    assert {f["task"] for f in failures} == {"flaky"}
    assert failures[0]["error"] == "ConnectionError: the database is away"
    assert [r["failures"] for r in logged(capsys, "background_task_recovered")] in ([], [5])
    assert runs(registry, "flaky", "failed") == 5 and runs(registry, "flaky", "ok") >= 1
    assert during >= 2 and runs(registry, "steady", "failed") == 0  # the other one went on


async def test_after_a_success_the_backoff_starts_again_from_the_interval(
        capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("toy", "toy-1")
    tasks = BackgroundTasks(CollectorRegistry())
    script = iter([False, False, True, False, False])  # False: fail this round
    done = asyncio.Event()

    async def round_() -> None:
        fine = next(script, None)
        if fine is None:
            done.set()
            return
        if not fine:
            raise RuntimeError("no")

    tasks.every("t", 0.01, round_)
    tasks.start()
    await asyncio.wait_for(done.wait(), 10)
    await tasks.stop()
    assert [f["retry_in"] for f in logged(capsys, "background_task_failed")] == [
        0.01, 0.02, 0.01, 0.02]


async def test_shutdown_stops_every_task_and_lets_the_round_in_flight_finish() -> None:
    tasks = BackgroundTasks(CollectorRegistry(), stop_timeout_s=5)
    rounds = 0
    in_round, finish = asyncio.Event(), asyncio.Event()
    finished: list[str] = []

    async def slow_round() -> None:
        nonlocal rounds
        rounds += 1
        in_round.set()
        await finish.wait()
        finished.append("round")

    tasks.every("slow", 3600, slow_round)
    tasks.start()
    await asyncio.wait_for(in_round.wait(), 5)
    stopping = asyncio.create_task(tasks.stop())
    await asyncio.sleep(0)
    assert not stopping.done()  # waits for the round in flight ...
    finish.set()
    await asyncio.wait_for(stopping, 5)  # ... which ends it, instead of a new round
    assert finished == ["round"] and rounds == 1
    assert all(t.done() for t in asyncio.all_tasks() if t.get_name().startswith("background-"))


async def test_a_round_that_outlives_the_stop_timeout_is_cancelled(
        capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("toy", "toy-1")
    tasks = BackgroundTasks(CollectorRegistry(), stop_timeout_s=0.05)
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def stuck() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    tasks.every("stuck", 1, stuck)
    tasks.start()
    await asyncio.wait_for(started.wait(), 5)
    await asyncio.wait_for(tasks.stop(), 5)
    assert cancelled.is_set()
    assert logged(capsys, "background_stop_cancelled")[0]["tasks"] == ["background-stuck"]


async def test_a_long_running_loop_that_crashes_is_started_again_and_stops_on_shutdown() -> None:
    registry = CollectorRegistry()
    tasks = BackgroundTasks(registry)
    starts = 0
    second = asyncio.Event()

    async def loop(stop: asyncio.Event) -> None:
        nonlocal starts
        starts += 1
        if starts == 1:
            raise OSError("lost the connection")
        second.set()
        await stop.wait()

    tasks.run("listener", loop, restart_after_s=0.01)
    tasks.start()
    await asyncio.wait_for(second.wait(), 5)
    await asyncio.wait_for(tasks.stop(), 5)
    assert starts == 2
    assert (runs(registry, "listener", "failed"), runs(registry, "listener", "ok")) == (1, 1)


async def test_more_work_runs_again_at_once_and_a_first_delay_is_kept() -> None:
    tasks = BackgroundTasks(CollectorRegistry())
    batches = [True, True, False]  # two full batches, then a short one
    seen: list[bool] = []
    drained = asyncio.Event()
    late_ran = False

    async def sweep() -> bool:
        more = batches.pop(0) if batches else False
        seen.append(more)
        if not more:
            drained.set()
        return more

    async def late() -> None:
        nonlocal late_ran
        late_ran = True

    tasks.every("sweep", 3600, sweep)  # only "more" can bring the next round this soon
    tasks.every("late", 3600, late, first_delay_s=3600)
    tasks.start()
    await asyncio.wait_for(drained.wait(), 5)
    await tasks.stop()
    assert seen == [True, True, False]
    assert late_ran is False


async def test_on_stop_runs_once_after_the_last_round() -> None:
    tasks = BackgroundTasks(CollectorRegistry())
    events: list[str] = []
    ran = asyncio.Event()

    async def round_() -> None:
        events.append("round")
        ran.set()

    async def release() -> None:
        events.append("released")

    tasks.every("holder", 3600, round_, on_stop=release)
    tasks.start()
    await asyncio.wait_for(ran.wait(), 5)
    assert events == ["round"]
    await tasks.stop()
    assert events == ["round", "released"]


def test_a_task_is_declared_once_with_a_positive_interval() -> None:
    tasks = BackgroundTasks(CollectorRegistry())

    async def nothing() -> None:
        return None

    tasks.every("a", 1, nothing)
    with pytest.raises(ValueError, match="twice"):
        tasks.every("a", 1, nothing)
    with pytest.raises(ValueError, match="interval_s"):
        tasks.every("b", 0, nothing)


class ToySettings(ServiceSettings):
    service_name: ClassVar[str] = "toy"


def test_the_app_starts_tasks_after_bootstrap_and_stops_them_before_it_ends() -> None:
    order: list[str] = []
    ran = asyncio.Event()

    async def tick() -> None:
        order.append("round")
        ran.set()

    @asynccontextmanager
    async def bootstrap(ctx: ServiceContext) -> AsyncIterator[None]:
        ctx.background.every("tick", 3600, tick)
        order.append("bootstrap")
        yield
        # Torn down after the tasks stopped: none of them can see a half-dismantled service.
        order.append("bootstrap_exit" if all(
            t.done() for t in asyncio.all_tasks() if t.get_name() == "background-tick")
            else "bootstrap_exit_with_tasks_running")

    app = create_service_app(ToySettings(nats_url="", database_url=""), routers=[],
                             bootstrap=bootstrap)
    async def first_round() -> None:
        await asyncio.wait_for(ran.wait(), 5)

    with TestClient(app) as client:
        assert client.portal is not None
        client.portal.call(first_round)
        metrics = client.get("/metrics").text
    assert order == ["bootstrap", "round", "bootstrap_exit"]
    with TestClient(app) as again:  # started again: bootstrap declares its tasks again
        assert again.get("/health/live").status_code == 200
    assert order.count("bootstrap") == 2 and order[-1] == "bootstrap_exit"
    samples = {(s.labels["task"], s.labels["outcome"], s.labels["service"]): s.value
               for family in text_string_to_metric_families(metrics)
               if family.name == "background_task_runs" for s in family.samples
               if s.name == "background_task_runs_total"}
    assert samples == {("tick", "ok", "toy"): 1.0, ("tick", "failed", "toy"): 0.0}
