"""JSON Schema export of every contract, and where the published copies live."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from contracts.base import Contract
from contracts.registry import ALL

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"


def schema_of(contract: type[Contract]) -> dict[str, Any]:
    schema = contract.model_json_schema()
    schema["x-message-type"] = contract.message_type()
    schema["x-subject"] = contract.subject()
    return schema


def path_of(contract: type[Contract]) -> Path:
    return SCHEMA_DIR / contract.owner / f"{contract.message_type()}.json"


def export(directory: Path | None = None) -> list[Path]:
    written = []
    for contract in ALL:
        path = path_of(contract) if directory is None else \
            directory / contract.owner / f"{contract.message_type()}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(schema_of(contract), indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written


def published(contract: type[Contract]) -> dict[str, Any] | None:
    path = path_of(contract)
    return json.loads(path.read_text()) if path.exists() else None
