"""`python -m shipping`: migrate the shipping database, then serve."""

from chassis.serve import run_service

from shipping.app import MIGRATIONS_DIR, create_app
from shipping.settings import ShippingSettings

if __name__ == "__main__":
    run_service(ShippingSettings(), create_app, MIGRATIONS_DIR)  # type: ignore[arg-type]
