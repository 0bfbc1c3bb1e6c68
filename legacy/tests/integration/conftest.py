"""The shop on a fresh, migrated embedded-PostgreSQL database, with the real payment
provider simulator (its own process, as in a platform run)."""

from __future__ import annotations

import os
import sys
import tempfile
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
    from mercato.testing.infra import serving

    port = free_port()
    data = tempfile.mkdtemp(prefix="legacy-provider-")
    env = {**os.environ, "PAYMENTS_PROVIDER_PORT": str(port),
           "PAYMENTS_PROVIDER_DATA_DIR": data, "PAYMENTS_PROVIDER_API_TOKEN": PROVIDER_TOKEN,
           "PAYMENTS_PROVIDER_TIMEOUT_CARD_DELAY_MS": "3000"}
    with serving([sys.executable, "-m", "simulators.payment_provider"], env,
                 f"http://127.0.0.1:{port}/health", timeout=20):
        yield f"http://127.0.0.1:{port}"
