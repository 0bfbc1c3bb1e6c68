"""Fixtures of the storefront's browser tests: a platform started as tests/e2e starts one
(edge_helpers.running_platform), Debian's chromium driven by Playwright, and axe-core
(vendored from the npm registry under vendor/) to check pages for accessibility."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from edge_helpers import Platform, running_platform, scratch_home

AXE = Path(__file__).with_name("vendor") / "axe-4.14.1.min.js"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "images"


# Module scope, both: a platform and a Playwright loop left for the rest of the session
# would load the machine during every later test, and Playwright's running event loop makes
# asyncio.run fail in the e2e tests that come after.
@pytest.fixture(scope="module")
def storefront_platform() -> Iterator[Platform]:
    with running_platform(scratch_home("mercato-storefront-browser-")) as p:
        yield p


@pytest.fixture
def page(chromium: Any, storefront_platform: Platform) -> Iterator[Any]:
    """A fresh browser (no cookies) on the shop. The pages' CSP allows only the shop's own
    scripts; axe is injected by the test, so the context bypasses CSP for it alone."""
    context = chromium.new_context(base_url=storefront_platform.base_url, bypass_csp=True,
                                   viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    context.close()
    assert not errors, f"script errors on the page: {errors}"


def axe_violations(pg: Any) -> list[dict[str, Any]]:
    """Serious and critical violations axe-core finds on the page as it is now."""
    pg.add_script_tag(content=AXE.read_text())
    found = pg.evaluate("async () => (await axe.run(document, {resultTypes: ['violations'], "
                        "runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21aa', "
                        "'best-practice']}}))"
                        ".violations.map(v => ({id: v.id, impact: v.impact, help: v.help, "
                        "nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))")
    return [v for v in found if v["impact"] in ("serious", "critical")]


def screenshot(pg: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SCREENSHOTS / f"storefront-{name}.png"), full_page=False)
