"""`python -m contracts export|check`: write the JSON Schemas, or check them for breaks."""

from __future__ import annotations

import sys

from contracts.compat import breaking_changes
from contracts.registry import ALL
from contracts.schemas import export, published, schema_of


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "check"
    if command == "export":
        for path in export():
            print(f"wrote {path}")
        return 0
    if command == "check":
        failed = False
        for contract in ALL:
            old = published(contract)
            if old is None:
                print(f"{contract.message_type()}: not published yet "
                      "(run: python -m contracts export)")
                failed = True
                continue
            for problem in breaking_changes(old, schema_of(contract)):
                print(f"{contract.message_type()}: BREAKING: {problem}")
                failed = True
        if not failed:
            print(f"{len(ALL)} contracts compatible with their published schemas")
        return 1 if failed else 0
    print("usage: python -m contracts [export|check]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
