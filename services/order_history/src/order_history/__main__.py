"""`python -m order_history`: migrate the database, then serve; or ``rebuild`` the view
(see ``order_history.entrypoints.cli``)."""

import sys

from order_history.entrypoints.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
