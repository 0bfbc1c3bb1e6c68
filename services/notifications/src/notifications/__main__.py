"""`python -m notifications`: migrate the notifications database, then serve."""

from chassis.serve import run_service

from notifications.app import MIGRATIONS_DIR, create_app
from notifications.settings import NotificationsSettings

if __name__ == "__main__":
    run_service(NotificationsSettings(), create_app, MIGRATIONS_DIR)  # type: ignore[arg-type]
