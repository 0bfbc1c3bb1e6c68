"""One platform for the whole e2e session: `mercato up --detach` in a temporary home.

Everything goes through the real CLI, the real engines and the edge, as a user would.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from edge_helpers import Platform, running_platform, scratch_home


@pytest.fixture(scope="session")
def platform() -> Iterator[Platform]:
    with running_platform(scratch_home("mercato-e2e-"), "--scale", "catalog=2") as p:
        yield p
