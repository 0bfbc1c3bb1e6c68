"""`python -m catalog`: migrate the catalog database, then serve."""

from chassis.serve import run_service

from catalog.app import MIGRATIONS_DIR, create_app
from catalog.settings import CatalogSettings

if __name__ == "__main__":
    run_service(CatalogSettings(), create_app, MIGRATIONS_DIR)  # type: ignore[arg-type]
