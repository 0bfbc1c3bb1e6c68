"""The image's HEALTHCHECK: exit 0 when the service in this container answers /health/live.

The port is the service's own setting (``<SERVICE>_PORT``, 8000 by default), read the way the
service reads it, so a service moved to another port is still checked where it listens.
Standard library only: the image carries no curl.
"""

import os
import sys
import urllib.request

module = os.environ.get("MERCATO_MODULE", "")
port = os.environ.get(module.split(".")[0].upper() + "_PORT", "8000")
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=2) as answer:
        sys.exit(0 if answer.status == 200 else 1)
except OSError as exc:
    print(f"{module} on port {port}: {exc}", file=sys.stderr)
    sys.exit(1)
