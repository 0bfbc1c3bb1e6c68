"""Orders on a fresh, migrated embedded-PostgreSQL database, without NATS."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from chassis.testing import service_database_fixtures
from fastapi.testclient import TestClient
from orders.app import MIGRATIONS_DIR

database_url, db = service_database_fixtures(MIGRATIONS_DIR)


# pytest's importlib mode leaves this folder off sys.path; the helper module is named after
# the service so it cannot shadow another service's.
sys.path.insert(0, str(Path(__file__).parent))

from orders_kit import FakeUpstreams, api_client  # noqa: E402  (needs the path above)


@pytest.fixture
def client(database_url: str, upstreams: FakeUpstreams) -> Iterator[TestClient]:
    """The orders app over the test's database and its module's ``upstreams`` fake, trusting
    ``orders_kit.MINTER``'s tokens (a module that needs other settings defines its own)."""
    with api_client(database_url, upstreams) as c:
        yield c
