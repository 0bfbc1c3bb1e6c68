"""Gateway tests. ``nats_url`` comes from ``mercato.testing.infra`` (the root conftest);
the helpers live in ``gateway_test_support`` beside this file."""

from __future__ import annotations

import sys
from pathlib import Path

# importlib import mode does not put the test directory on sys.path.
sys.path.insert(0, str(Path(__file__).parent))
