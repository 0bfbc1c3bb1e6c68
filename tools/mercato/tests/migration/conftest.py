"""Migration tests; they borrow the gateway tests' helpers (a token signer)."""

from __future__ import annotations

import sys
from pathlib import Path

# importlib import mode does not put test directories on sys.path.
sys.path.insert(0, str(Path(__file__).parents[1] / "gateway"))
sys.path.insert(0, str(Path(__file__).parent))
