"""`python -m storefront`: migrate the storefront database, then serve."""

from chassis.serve import run_service

from storefront.app import MIGRATIONS_DIR, create_app
from storefront.settings import StorefrontSettings

if __name__ == "__main__":
    run_service(StorefrontSettings(), create_app, MIGRATIONS_DIR)  # type: ignore[arg-type]
