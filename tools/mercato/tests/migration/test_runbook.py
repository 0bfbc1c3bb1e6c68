"""The runbook's table of commands is the command line's: every `mercato migrate` and
`mercato legacy` command is there, and nothing the command line does not have."""

from __future__ import annotations

import re
from pathlib import Path

import typer.main
from mercato.cli import legacy, migrate

RUNBOOK = Path(__file__).resolve().parents[4] / "docs" / "migration.md"


def _commands_table() -> str:
    text = RUNBOOK.read_text()
    start = text.index("## The commands")
    return text[start:text.index("\n## ", start + 1)]


def test_every_migration_command_is_in_the_runbook_and_only_those() -> None:
    table = _commands_table()
    for group, app in (("migrate", migrate.migrate_app), ("legacy", legacy.legacy_app)):
        have = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
        documented = set(re.findall(rf"`mercato {group} ([a-z-]+)", table))
        assert documented == have, (group, documented ^ have)


def test_the_backfills_in_the_runbook_are_the_ones_the_sync_runs() -> None:
    from mercato.migration.sync.process import FOLLOWED

    row = next(line for line in _commands_table().splitlines()
               if "`mercato migrate backfill" in line)
    named = set(re.search(r"backfill ([a-z\\|]+)`", row).group(1).split("\\|"))  # type: ignore[union-attr]
    assert named == set(FOLLOWED)
