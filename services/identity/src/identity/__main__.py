"""`python -m identity`: migrate the identity database, then serve; see ``identity.cli``."""

import sys

from identity.cli import main

if __name__ == "__main__":
    sys.exit(main())
