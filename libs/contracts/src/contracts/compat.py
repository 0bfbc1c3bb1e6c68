"""Backward compatibility of a contract's JSON Schema against its last published version.

Breaking: a field removed (renaming is removing one and adding another), a field's type
changed, an optional field made required, a new required field. Compatible: a new optional
field, changed titles or descriptions.
"""

from __future__ import annotations

from typing import Any

_DESCRIPTIVE = {"title", "description", "default", "examples"}


def _normal(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _normal(v) for k, v in schema.items() if k not in _DESCRIPTIVE}
    if isinstance(schema, list):
        return [_normal(v) for v in schema]
    return schema


def _object_changes(where: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    old_req, new_req = set(old.get("required", [])), set(new.get("required", []))
    for name, old_prop in old_props.items():
        if name not in new_props:
            problems.append(f"{where}: field '{name}' was removed")
        elif _normal(old_prop) != _normal(new_props[name]):
            problems.append(f"{where}: field '{name}' changed type")
    for name in new_req - old_req:
        if name in old_props:
            problems.append(f"{where}: optional field '{name}' became required")
        else:
            problems.append(f"{where}: new field '{name}' is required")
    return problems


def breaking_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    problems = _object_changes("root", old, new)
    old_defs, new_defs = old.get("$defs", {}), new.get("$defs", {})
    for name, old_def in old_defs.items():
        if name not in new_defs:
            problems.append(f"$defs: '{name}' was removed")
        else:
            problems.extend(_object_changes(name, old_def, new_defs[name]))
    return problems
