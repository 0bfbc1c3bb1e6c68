"""`python -m orders`: migrate the orders database, then serve."""

from chassis.serve import run_service

from orders.app import MIGRATIONS_DIR, create_app
from orders.settings import OrdersSettings

if __name__ == "__main__":
    run_service(OrdersSettings(), create_app, MIGRATIONS_DIR)  # type: ignore[arg-type]
