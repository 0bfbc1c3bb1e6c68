"""The shop on a fresh, migrated embedded-PostgreSQL database, with the real payment
provider simulator (its own process, as in a platform run)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from legacy.migrate import upgrade_to_head

# pytest's importlib mode leaves this folder off sys.path; the helper module is named after
# the package so it cannot shadow a service's.
sys.path.insert(0, str(Path(__file__).parent))

from legacy_kit import PROVIDER_TOKEN


@pytest.fixture
def database_url(fresh_database: str) -> str:
    upgrade_to_head(fresh_database)
    return fresh_database


@pytest.fixture(scope="session")
def provider_url() -> Iterator[str]:
    from mercato.runtime.paths import free_port

    port = free_port()
    data = tempfile.mkdtemp(prefix="legacy-provider-")
    env = {**os.environ, "PAYMENTS_PROVIDER_PORT": str(port),
           "PAYMENTS_PROVIDER_DATA_DIR": data, "PAYMENTS_PROVIDER_API_TOKEN": PROVIDER_TOKEN,
           "PAYMENTS_PROVIDER_TIMEOUT_CARD_DELAY_MS": "3000"}
    proc = subprocess.Popen([sys.executable, "-m", "simulators.payment_provider"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the payment provider simulator did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
