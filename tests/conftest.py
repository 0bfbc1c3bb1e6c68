"""The platform the cross-service tests share: one `mercato up --detach` in a scratch home
for the whole session, whether e2e, browser or both run (starting one costs ~20-40 s)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from edge_helpers import Platform, running_platform, scratch_home


@pytest.fixture(scope="session")
def platform() -> Iterator[Platform]:
    with running_platform(scratch_home("mercato-e2e-"), "--scale", "catalog=2") as p:
        yield p
