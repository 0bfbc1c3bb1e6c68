"""One PostgreSQL round trip over loopback TCP beside one over a unix socket: client and
server CPU, and wall time, per round trip (BEGIN, a one-row UPDATE, COMMIT in a loop).

The platform's PostgreSQL listens on TCP only, so run this against a server that has both:

    initdb -D /tmp/pgx -U postgres --auth=trust
    postgres -D /tmp/pgx -p 25432 -c listen_addresses=127.0.0.1 \\
             -c unix_socket_directories=/tmp/pgx-sock -c fsync=off -c synchronous_commit=off
    .venv/bin/python bench/pg_round_trip.py --port 25432 --socket-dir /tmp/pgx-sock

Rounds alternate between the two transports; medians are printed with the ratio
unix / TCP. docs/performance.md ("measured and not taken") quotes it.
"""

from __future__ import annotations

import argparse
import statistics
import time

import asyncpg
import psutil
import uvloop


async def measure(host: str, port: int, user: str, n: int) -> tuple[float, float, float]:
    """(client CPU, server backend CPU, wall) in µs per round trip."""
    conn = await asyncpg.connect(host=host, port=port, user=user, database="postgres")
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS round_trip (id int PRIMARY KEY, v int)")
        await conn.execute("INSERT INTO round_trip VALUES (1, 0) ON CONFLICT DO NOTHING")
        backend = psutil.Process(await conn.fetchval("SELECT pg_backend_pid()"))
        bump = await conn.prepare("UPDATE round_trip SET v = v + 1 WHERE id = $1 RETURNING v")
        for _ in range(200):  # warm up
            async with conn.transaction():
                await bump.fetchval(1)
        client0, server0 = time.process_time(), sum(backend.cpu_times()[:2])
        wall0 = time.perf_counter()
        for _ in range(n):
            async with conn.transaction():  # BEGIN, UPDATE, COMMIT: three round trips
                await bump.fetchval(1)
        wall = time.perf_counter() - wall0
        client = time.process_time() - client0
        server = sum(backend.cpu_times()[:2]) - server0
    finally:
        await conn.close()
    trips = 3 * n
    return client / trips * 1e6, server / trips * 1e6, wall / trips * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--socket-dir", required=True)
    parser.add_argument("--user", default="postgres")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--transactions", type=int, default=4000)
    args = parser.parse_args()
    transports = [("tcp", "127.0.0.1"), ("unix", args.socket_dir)]
    runs: dict[str, list[tuple[float, float, float]]] = {"tcp": [], "unix": []}
    for i in range(args.rounds):
        for name, host in transports if i % 2 == 0 else transports[::-1]:
            runs[name].append(await measure(host, args.port, args.user, args.transactions))
            print(f"round {i + 1} {name}: done", flush=True)
    medians = {name: [statistics.median(r[k] for r in rows) for k in range(3)]
               for name, rows in runs.items()}
    for name, (client, server, wall) in medians.items():
        print(f"{name:5s} per round trip: client CPU {client:5.1f} µs, server CPU "
              f"{server:5.1f} µs, wall {wall:5.1f} µs")
    ratios = [u / t for u, t in zip(medians["unix"], medians["tcp"], strict=True)]
    print("unix / tcp: client CPU {:.2f}, server CPU {:.2f}, wall {:.2f}".format(*ratios))


if __name__ == "__main__":
    uvloop.run(main())
