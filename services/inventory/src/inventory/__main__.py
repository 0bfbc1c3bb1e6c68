"""`python -m inventory`: migrate the inventory database, then serve."""

from chassis.serve import run_service

from inventory.app import MIGRATIONS_DIR, create_app
from inventory.settings import InventorySettings

if __name__ == "__main__":
    run_service(InventorySettings(), create_app, MIGRATIONS_DIR)  # type: ignore[arg-type]
