"""docs/performance.md's side-by-side runs against issue 17's starting point are what the
runs kept in bench/reference/issue-17 say: each run's CPU per order, each side's median and
their ratio, as ``mercato bench compare`` computes them."""

from __future__ import annotations

import re

from mercato.bench.baseline import compare, load_run
from mercato.runtime.services import repo_root

REFERENCE = repo_root() / "bench" / "reference" / "issue-17"
# | `bench/reference/issue-17/<folder>/`… | 127.9 ms (128.9, 121.6, 127.9) | **51.7 ms** (…) | **0.40** …
ROW = re.compile(r"^\| `bench/reference/issue-17/([\w-]+)/`[^|]*"
                 r"\| \**([\d.]+) ms\** \(([\d., ]+)\) \| \**([\d.]+) ms\** \(([\d., ]+)\) "
                 r"\| \*\*([\d.]+)\*\*", re.M)


def _side(folder: str, side: str) -> list[dict[str, object]]:
    paths = sorted(REFERENCE.glob(f"{folder}/{side}-[0-9].json"))
    return [load_run(p) for p in paths]


def test_every_alternation_on_the_page_is_its_saved_runs() -> None:
    page = (repo_root() / "docs" / "performance.md").read_text()
    rows = ROW.findall(page)
    folders = sorted(p.name for p in REFERENCE.glob("baseline-*") if p.is_dir())
    assert sorted(r[0] for r in rows) == folders, (
        "a folder of runs without its row on the page, or a row without its runs")
    for folder, before, before_runs, after, after_runs, ratio in rows:
        result = compare(_side(folder, "before"), _side(folder, "after"))
        [cpu] = [f for f in result["figures"] if f["measure"] == "cpu_ms_per_order"]
        assert f"{cpu['before']:.1f}" == before and f"{cpu['after']:.1f}" == after, folder
        assert f"{cpu['ratio']:.2f}" == ratio, folder
        assert [f"{v:.1f}" for v in cpu["before_runs"]] == before_runs.split(", "), folder
        assert [f"{v:.1f}" for v in cpu["after_runs"]] == after_runs.split(", "), folder
