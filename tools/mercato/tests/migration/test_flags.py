"""The flag file and its OpenFeature provider."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mercato.migration import flags
from openfeature.exception import ErrorCode


def test_no_file_is_all_legacy(tmp_path: Path) -> None:
    shares = flags.evaluate(tmp_path / "flags.json")
    assert all(s.percent == 0 and s.shadow == 0 and not s.finished for s in shares.values())


def test_written_switches_are_read_through_openfeature(tmp_path: Path) -> None:
    path = tmp_path / "m" / "flags.json"
    flags.write_flags(path, {"migration.catalog.percent": 10, "migration.cart.shadow": 5})
    shares = flags.evaluate(path)
    assert (shares["catalog"].percent, shares["cart"].shadow) == (10, 5)
    details = flags.client_for(path).get_integer_details("migration.catalog.percent", 0)
    assert details.value == 10 and details.reason == "STATIC" and details.error_code is None


@pytest.mark.parametrize("change", [{"migration.catalog.percent": 101},
                                    {"migration.catalog.percent": True},
                                    {"migration.catalog.finished": 1},
                                    {"migration.unknown.percent": 1}])
def test_a_bad_value_writes_nothing(tmp_path: Path, change: dict[str, object]) -> None:
    path = tmp_path / "flags.json"
    flags.write_flags(path, {"migration.catalog.percent": 10})
    before = path.read_text()
    with pytest.raises(flags.FlagFileError):
        flags.write_flags(path, change)
    assert path.read_text() == before


def test_a_broken_file_gives_the_defaults_with_an_error(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps({"version": 1, "flags": {"migration.catalog.percent": "x"}}))
    details = flags.client_for(path).get_integer_details("migration.catalog.percent", 0)
    assert details.value == 0 and details.error_code == ErrorCode.PARSE_ERROR
    with pytest.raises(flags.FlagFileError):
        flags.read_flags(path)


def test_a_flag_of_another_type_is_a_type_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    flags.write_flags(path, {"migration.catalog.finished": True})
    details = flags.client_for(path).get_integer_details("migration.catalog.finished", 0)
    assert details.value == 0 and details.error_code == ErrorCode.TYPE_MISMATCH
