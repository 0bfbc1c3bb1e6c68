"""`python -m payments`: migrate the payments database, then serve."""

from chassis.serve import run_service

from payments.app import MIGRATIONS_DIR, create_app
from payments.settings import PaymentsSettings

if __name__ == "__main__":
    run_service(PaymentsSettings(), create_app, MIGRATIONS_DIR)  # type: ignore[arg-type]
