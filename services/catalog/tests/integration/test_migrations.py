"""The migrations build exactly the tables the code uses (no drift between the two)."""

from __future__ import annotations

import pytest
from catalog.adapters.orm import metadata
from catalog.app import MIGRATIONS_DIR
from chassis.migrations import upgrade_to_head
from chassis.testing import schema_drift

pytestmark = pytest.mark.integration


def test_migrated_schema_matches_the_tables_in_code(fresh_database: str) -> None:
    upgrade_to_head(MIGRATIONS_DIR, fresh_database)
    assert schema_drift(fresh_database, metadata) == []
