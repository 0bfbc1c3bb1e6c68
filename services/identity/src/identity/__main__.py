"""`python -m identity`: migrate the identity database, then serve; or create an admin
(see ``identity.entrypoints.cli``)."""

import sys

from identity.entrypoints.cli import main

if __name__ == "__main__":
    sys.exit(main())
