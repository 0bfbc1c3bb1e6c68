"""One platform for the whole e2e session: `mercato up --detach` in a temporary home.

Everything goes through the real CLI, the real engines and the edge, as a user would.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from edge_helpers import Platform, free_port, mercato, processes_of, wait_until

E2E_ARGON2 = {"IDENTITY_ARGON2_TIME_COST": "1", "IDENTITY_ARGON2_MEMORY_COST_KIB": "8192",
              "IDENTITY_ARGON2_PARALLELISM": "1"}


@pytest.fixture(scope="session")
def platform() -> Iterator[Platform]:
    # Not under pytest's own temp root: every pytest session of the machine makes that 0700
    # again, and PostgreSQL runs as mercato_pg when started by root: a second session on the
    # machine would take its data directory away mid-run.
    home = Path(tempfile.mkdtemp(prefix="mercato-e2e-"))
    port = free_port()
    os.environ.pop("MERCATO_HOME", None)
    # A cheap argon2id for this platform's identity (the supervisor passes its environment
    # on): the concurrency tests register and log in 200 customers, which at the production
    # cost (64 MiB, t=3, p=4: ~0.3 s a hash here) took over 3 minutes on 2 cores.
    saved = {name: os.environ.get(name) for name in E2E_ARGON2}
    os.environ.update({name: saved[name] or value for name, value in E2E_ARGON2.items()})
    try:
        mercato(home, "up", "--detach", "--port", str(port), "--scale", "catalog=2",
                timeout=300)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name)
            else:
                os.environ[name] = value
    p = Platform(home=home, base_url=f"http://127.0.0.1:{port}")
    try:
        with p.client() as c:
            wait_until(lambda: c.get("/api/catalog/products").status_code == 200, 60,
                       "the catalog through the edge")
            wait_until(lambda: c.get("/.well-known/jwks.json").status_code == 200, 60,
                       "the JWKS through the edge")
            # 503 until the gateway has handed Envoy identity's keys; then a missing token
            # is a plain 401.
            wait_until(lambda: c.get("/api/identity/me").status_code == 401, 60,
                       "the edge to check tokens")
        yield p
    finally:
        mercato(home, "down", timeout=120, check=False)
        # `mercato down` must leave no process of this home behind.
        wait_until(lambda: not processes_of(home), 20, "no mercato process left after down")
        # The engines' data goes (hundreds of MB); the logs stay for whoever reads a failure.
        for data in ("pg", "nats"):
            shutil.rmtree(home / data, ignore_errors=True)
