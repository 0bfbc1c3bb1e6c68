"""The platform the cross-service tests share: one `mercato up --detach` in a scratch home
for the whole session, whether e2e, browser or both run (starting one costs ~20-40 s)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from edge_helpers import Platform, running_platform, scratch_home

# The console's alerts with every rule's `for:` at a twentieth (10 min -> 30 s): the browser
# test sees one fire and clear within its budget. The expressions are the production ones.
ALERT_FOR_SCALE = "0.05"


@pytest.fixture(scope="session")
def platform() -> Iterator[Platform]:
    saved = os.environ.get("MERCATO_ALERT_FOR_SCALE")
    os.environ["MERCATO_ALERT_FOR_SCALE"] = ALERT_FOR_SCALE
    try:
        with running_platform(scratch_home("mercato-e2e-"), "--scale", "catalog=2") as p:
            yield p
    finally:
        if saved is None:
            os.environ.pop("MERCATO_ALERT_FOR_SCALE", None)
        else:
            os.environ["MERCATO_ALERT_FOR_SCALE"] = saved


CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's chromium through Playwright, for one test module: Playwright's event loop
    must not outlive the module (asyncio.run fails in later tests while it runs). `make
    test` installs it (make browser); without it the browser tests skip, and fail in CI."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (make browser)")
        pytest.skip(f"no {CHROMIUM}: `make browser` installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield browser
        browser.close()
