"""`python -m cart`: migrate the cart database, then serve."""

from chassis.serve import run_service

from cart.app import MIGRATIONS_DIR, create_app
from cart.settings import CartSettings

if __name__ == "__main__":
    run_service(CartSettings(), create_app, MIGRATIONS_DIR)  # type: ignore[arg-type]
