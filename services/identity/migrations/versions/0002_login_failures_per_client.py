"""identity: sign-in throttling per (account, client) instead of a lock per account

The per-account counter on users (five failures locked the owner out for 15 minutes, and
the 429 told that the account exists) gives way to login_failures, keyed by a digest of
the typed username and the client address.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_failures",
        sa.Column("account_key", sa.String(64), primary_key=True),
        sa.Column("client", sa.String(64), primary_key=True),
        sa.Column("failures", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retry_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("failures >= 0", name="ck_login_failures_failures"),
    )
    op.create_index("ix_login_failures_last_failure", "login_failures", ["last_failure_at"])
    op.drop_constraint("ck_users_failed_logins", "users", type_="check")
    op.drop_column("users", "failure_window_started_at")
    op.drop_column("users", "failed_logins")


def downgrade() -> None:
    op.add_column("users", sa.Column("failed_logins", sa.Integer(), nullable=False,
                                     server_default="0"))
    op.add_column("users", sa.Column("failure_window_started_at", sa.DateTime(timezone=True),
                                     nullable=True))
    op.create_check_constraint("ck_users_failed_logins", "users", "failed_logins >= 0")
    op.drop_index("ix_login_failures_last_failure", table_name="login_failures")
    op.drop_table("login_failures")
