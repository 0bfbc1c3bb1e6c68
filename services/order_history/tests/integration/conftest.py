"""order_history on a fresh, migrated embedded-PostgreSQL database."""

from __future__ import annotations

import sys
from pathlib import Path

from chassis.testing import service_database_fixtures
from order_history.app import MIGRATIONS_DIR

database_url, db = service_database_fixtures(MIGRATIONS_DIR, pool_size=10)


# pytest's importlib mode leaves this folder off sys.path; the helper module is named after
# the service so it cannot shadow another service's.
sys.path.insert(0, str(Path(__file__).parent))
