"""The migration's switches in a flag file in the home, read through OpenFeature.

One JSON file (``<home>/migration/flags.json``) holds every switch: per capability the
routing share (``migration.<cap>.percent``, 0-100), the shadow share
(``migration.<cap>.shadow``, 0-100) and whether the move is finished
(``migration.<cap>.finished``). `mercato migrate` writes it (temp file + rename, so a reader
never sees half a file); the gateway control plane and `migrate status` read it through
``FlagFileProvider``, an OpenFeature provider, so code that needs a switch asks an
OpenFeature client and the store can later be flagd or the registry without touching it.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagResolutionDetails, Reason
from openfeature.provider import AbstractProvider
from openfeature.provider.metadata import Metadata

from mercato.migration.capabilities import CAPABILITIES, NAMES

VERSION = 1
KINDS = {"percent": int, "shadow": int, "finished": bool}


class FlagFileError(ValueError):
    pass


def flag_file(home_root: Path) -> Path:
    return home_root / "migration" / "flags.json"


def key(capability: str, kind: str) -> str:
    return f"migration.{capability}.{kind}"


def defaults() -> dict[str, Any]:
    """All legacy: no share moved, nothing shadowed."""
    return {key(c.name, k): (False if t is bool else 0)
            for c in CAPABILITIES for k, t in KINDS.items()}


def _check(flags: Mapping[str, Any]) -> dict[str, Any]:
    known = defaults()
    for name, value in flags.items():
        if name not in known:
            raise FlagFileError(f"unknown flag {name!r}")
        kind = name.rsplit(".", 1)[1]
        want = KINDS[kind]
        if want is int and (isinstance(value, bool) or not isinstance(value, int)
                            or not 0 <= value <= 100):
            raise FlagFileError(f"{name} is a percentage 0-100, not {value!r}")
        if want is bool and not isinstance(value, bool):
            raise FlagFileError(f"{name} is true or false, not {value!r}")
    return {**known, **flags}


def read_flags(path: Path) -> dict[str, Any]:
    """Every flag, defaults filled in; a missing file is the all-legacy start."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return defaults()
    except (OSError, ValueError) as exc:
        raise FlagFileError(f"{path}: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("version") != VERSION \
            or not isinstance(doc.get("flags"), dict):
        raise FlagFileError(f"{path}: not a version {VERSION} flag file")
    try:
        return _check(doc["flags"])
    except FlagFileError as exc:
        raise FlagFileError(f"{path}: {exc}") from exc


def write_flags(path: Path, changes: Mapping[str, Any]) -> dict[str, Any]:
    """Apply ``changes`` (checked first: a bad value writes nothing) and return the flags."""
    flags = _check({**read_flags(path), **changes})
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"version": VERSION, "updated_at": time.time(), "flags": flags},
                      indent=1, sort_keys=True) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".flags.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return flags


@dataclass(frozen=True, slots=True)
class Share:
    """One capability's switches."""

    capability: str
    percent: int = 0
    shadow: int = 0
    finished: bool = False


def shares(flags: Mapping[str, Any]) -> dict[str, Share]:
    return {n: Share(n, percent=flags[key(n, "percent")], shadow=flags[key(n, "shadow")],
                     finished=flags[key(n, "finished")]) for n in NAMES}


class FlagFileProvider(AbstractProvider):
    """OpenFeature over the flag file: read on every evaluation (a few hundred bytes; the
    control plane asks once per pass), so a change made by another process shows at once."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def get_metadata(self) -> Metadata:
        return Metadata(name="mercato-flag-file")

    def _resolve(self, flag_key: str, default: Any, want: type) -> FlagResolutionDetails[Any]:
        try:
            flags = read_flags(self.path)
        except FlagFileError as exc:
            return FlagResolutionDetails(default, error_code=ErrorCode.PARSE_ERROR,
                                         error_message=str(exc), reason=Reason.ERROR)
        if flag_key not in flags:
            return FlagResolutionDetails(default, error_code=ErrorCode.FLAG_NOT_FOUND,
                                         error_message=f"no flag {flag_key!r}",
                                         reason=Reason.ERROR)
        value = flags[flag_key]
        if (want is int and isinstance(value, bool)) or not isinstance(value, want):
            return FlagResolutionDetails(default, error_code=ErrorCode.TYPE_MISMATCH,
                                         error_message=f"{flag_key} is {type(value).__name__}",
                                         reason=Reason.ERROR)
        reason = Reason.STATIC if self.path.exists() else Reason.DEFAULT
        return FlagResolutionDetails(value, reason=reason, variant=str(value).lower())

    def resolve_boolean_details(self, flag_key: str, default_value: bool,
                                evaluation_context: EvaluationContext | None = None
                                ) -> FlagResolutionDetails[bool]:
        return self._resolve(flag_key, default_value, bool)

    def resolve_integer_details(self, flag_key: str, default_value: int,
                                evaluation_context: EvaluationContext | None = None
                                ) -> FlagResolutionDetails[int]:
        return self._resolve(flag_key, default_value, int)

    def resolve_string_details(self, flag_key: str, default_value: str,
                               evaluation_context: EvaluationContext | None = None
                               ) -> FlagResolutionDetails[str]:
        return self._resolve(flag_key, default_value, str)

    def resolve_float_details(self, flag_key: str, default_value: float,
                              evaluation_context: EvaluationContext | None = None
                              ) -> FlagResolutionDetails[float]:
        return self._resolve(flag_key, default_value, float)

    def resolve_object_details(self, flag_key: str, default_value: Any,
                               evaluation_context: EvaluationContext | None = None
                               ) -> FlagResolutionDetails[Any]:
        return self._resolve(flag_key, default_value, dict)


def client_for(path: Path) -> Any:
    """An OpenFeature client bound to this flag file (one provider per file, by domain)."""
    from openfeature import api

    domain = f"mercato-migration:{path}"
    api.set_provider(FlagFileProvider(path), domain=domain)
    return api.get_client(domain=domain)


def evaluate(path: Path) -> dict[str, Share]:
    """Every capability's switches, asked through OpenFeature."""
    client = client_for(path)
    return {c.name: Share(c.name,
                          percent=client.get_integer_value(key(c.name, "percent"), 0),
                          shadow=client.get_integer_value(key(c.name, "shadow"), 0),
                          finished=client.get_boolean_value(key(c.name, "finished"), False))
            for c in CAPABILITIES}
