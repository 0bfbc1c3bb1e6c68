"""A pull consumer's loop beside a push consumer's, on one throw-away nats-server (ADR 0040).

Ten durable consumers each get 15 messages a second (the platform at 12 orders/s delivers
~160 a second across its consumers, mostly one message at a time). A separate process
publishes them one by one, like a relay's small batches. For each mode the script measures
the CPU of the consumers' process and of nats-server per message (the server's figure
includes storing the published message, the same in both modes):

- pull: the loop before ADR 0040: ``fetch(64, 10 ms)`` to drain, then ``fetch(1, 5 s)``
  to wait, an ack per message;
- push: the broker pushes to a queue subscription; the loop takes what has arrived, an ack
  per message.

Rounds alternate (pull, push, push, pull, ...); medians and the ratio push / pull are printed.

    .venv/bin/python bench/push_pull.py [--rounds 4] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nats
from nats.aio.client import Client as NATS
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

CONSUMERS, RATE_EACH = 10, 15.0


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def publish(url: str, seconds: float) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    interval, n = 1.0 / (RATE_EACH * CONSUMERS), 0
    due = time.monotonic()
    end = due + seconds
    while time.monotonic() < end:
        await js.publish(f"ev.{n % CONSUMERS}", b"x" * 300, headers={"Nats-Msg-Id": f"m{n}"})
        n += 1
        due += interval
        await asyncio.sleep(max(0.0, due - time.monotonic()))
    await nc.close()


async def pull_loop(nc: NATS, i: int, stop: asyncio.Event, count: list[int]) -> None:
    js = nc.jetstream()
    await js.add_consumer("EV", ConsumerConfig(
        durable_name=f"c{i}", ack_policy=AckPolicy.EXPLICIT, filter_subject=f"ev.{i}",
        max_ack_pending=1000))
    sub = await js.pull_subscribe_bind(durable=f"c{i}", stream="EV")
    while not stop.is_set():
        try:
            msgs = await sub.fetch(64, timeout=0.01)
        except TimeoutError:
            try:
                msgs = await sub.fetch(1, timeout=5.0)
            except TimeoutError:
                continue
        for m in msgs:
            await m.ack()
            count[0] += 1


async def push_loop(nc: NATS, i: int, stop: asyncio.Event, count: list[int]) -> None:
    js = nc.jetstream()
    deliver = f"{nc.new_inbox()}.deliver.c{i}"
    await js.add_consumer("EV", ConsumerConfig(
        durable_name=f"c{i}", ack_policy=AckPolicy.EXPLICIT, filter_subject=f"ev.{i}",
        max_ack_pending=1000, deliver_subject=deliver, deliver_group=f"c{i}"))
    arrived: asyncio.Queue = asyncio.Queue()

    async def receive(msg) -> None:  # type: ignore[no-untyped-def]
        arrived.put_nowait(msg)

    await nc.subscribe(deliver, queue=f"c{i}", cb=receive)
    while not stop.is_set():
        msgs = [await arrived.get()]
        while not arrived.empty() and len(msgs) < 64:
            msgs.append(arrived.get_nowait())
        for m in msgs:
            await m.ack()
            count[0] += 1


async def one_round(mode: str, url: str, server_pid: int, seconds: float) -> tuple[float, float]:
    """(client µs, server µs) per message."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    with contextlib.suppress(Exception):
        await js.delete_stream("EV")
    await js.add_stream(StreamConfig(name="EV", subjects=["ev.>"]))
    stop, count = asyncio.Event(), [0]
    loop = pull_loop if mode == "pull" else push_loop
    tasks = [asyncio.create_task(loop(nc, i, stop, count)) for i in range(CONSUMERS)]
    await asyncio.sleep(0.5)
    publisher = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--publish", url, "--seconds", str(seconds + 3))
    await asyncio.sleep(2)  # past the start
    c0, s0, n0 = cpu_s(os.getpid()), cpu_s(server_pid), count[0]
    await asyncio.sleep(seconds)
    c1, s1, n1 = cpu_s(os.getpid()), cpu_s(server_pid), count[0]
    await publisher.wait()
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await nc.close()
    n = max(n1 - n0, 1)
    print(f"  {mode}: {n} messages, consumers {1e6 * (c1 - c0) / n:.0f} µs/msg, "
          f"nats-server {1e6 * (s1 - s0) / n:.0f} µs/msg", flush=True)
    return 1e6 * (c1 - c0) / n, 1e6 * (s1 - s0) / n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--publish", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publish:
        asyncio.run(publish(args.publish, args.seconds))
        return
    server = shutil.which("nats-server", path=str(Path(sys.executable).parent))
    if server is None:
        sys.exit("nats-server is not beside this Python: run it with the project's .venv")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = tempfile.mkdtemp(prefix="push-pull-")
    proc = subprocess.Popen(  # noqa: S603 (the nats-server beside this interpreter)
        [server, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", store],
        stderr=subprocess.DEVNULL)
    url = f"nats://127.0.0.1:{port}"
    results: dict[str, list[tuple[float, float]]] = {"pull": [], "push": []}
    try:
        time.sleep(1.0)
        for r in range(args.rounds):
            order = ("pull", "push") if r % 2 == 0 else ("push", "pull")
            print(f"round {r + 1}/{args.rounds}", flush=True)
            for mode in order:
                results[mode].append(asyncio.run(one_round(mode, url, proc.pid, args.seconds)))
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(store, ignore_errors=True)
    print("medians, µs per message:")
    for i, what in enumerate(("consumers", "nats-server")):
        pull = statistics.median(x[i] for x in results["pull"])
        push = statistics.median(x[i] for x in results["push"])
        print(f"  {what:12} pull {pull:6.0f}  push {push:6.0f}  push / pull {push / pull:.2f}")


if __name__ == "__main__":
    main()
