"""``python -m mercato.console --home DIR``: the console, as the supervisor runs it."""

from __future__ import annotations

import argparse
import sys

import uvloop
from chassis.logging import configure_logging

from mercato.console.server import serve
from mercato.runtime.paths import Home


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mercato.console")
    ap.add_argument("--home", required=True)
    args = ap.parse_args(argv)
    configure_logging("console", "console")
    home = Home(args.home)
    uvloop.run(serve(home, home.ports().console))  # as the services (ADR 0050)
    return 0


if __name__ == "__main__":
    sys.exit(main())
