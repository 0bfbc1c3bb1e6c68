"""The migrations build exactly the tables the code uses (no drift between the two)."""

from __future__ import annotations

import pytest
from cart.adapters.orm import metadata
from chassis.testing import schema_drift

pytestmark = pytest.mark.integration


def test_migrated_schema_matches_the_tables_in_code(database_url: str) -> None:
    assert schema_drift(database_url, metadata) == []
