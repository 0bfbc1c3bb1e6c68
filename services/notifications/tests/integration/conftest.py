"""Notifications on a fresh, migrated embedded-PostgreSQL database, and a real mail sink
process on free ports."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from chassis.testing import service_database_fixtures
from notifications.app import MIGRATIONS_DIR

# pytest's importlib mode leaves this folder off sys.path; the helper module is named after
# the service so it cannot shadow another service's.
sys.path.insert(0, str(Path(__file__).parent))

from notifications_kit import MailSink

database_url, db = service_database_fixtures(MIGRATIONS_DIR)


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[MailSink]:
    """A mail sink process, not started yet (``start()``); always stopped afterwards."""
    s = MailSink(tmp_path / "mailsink")
    try:
        yield s
    finally:
        s.stop()
