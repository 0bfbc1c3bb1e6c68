"""Orders on a fresh, migrated embedded-PostgreSQL database, without NATS."""

from __future__ import annotations

import sys
from pathlib import Path

from chassis.testing import service_database_fixtures
from orders.app import MIGRATIONS_DIR

database_url, db = service_database_fixtures(MIGRATIONS_DIR)


# pytest's importlib mode leaves this folder off sys.path; the helper module is named after
# the service so it cannot shadow another service's.
sys.path.insert(0, str(Path(__file__).parent))
