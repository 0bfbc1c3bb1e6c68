"""Payments on a fresh, migrated embedded-PostgreSQL database, without NATS, talking to a real
simulated provider process (``python -m simulators.payment_provider``) on a free port."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from chassis.testing import service_database_fixtures
from payments.app import MIGRATIONS_DIR

# pytest's importlib mode leaves this folder off sys.path; the helper module is named after
# the service so it cannot shadow another service's.
sys.path.insert(0, str(Path(__file__).parent))

from payments_kit import ProviderProcess

database_url, db = service_database_fixtures(MIGRATIONS_DIR, pool_size=10)


@pytest.fixture(scope="session")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProviderProcess]:
    """One provider for the session; tests use fresh payment ids, so they never meet."""
    process = ProviderProcess(tmp_path_factory.mktemp("provider"))
    process.start()
    try:
        yield process
    finally:
        process.stop()
