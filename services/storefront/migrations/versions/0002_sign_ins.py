"""storefront: sign-ins under way (OAuth 2 code flow with PKCE, ADR 0021)

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
        "sign_ins",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("state", sa.String(100), nullable=False),
        sa.Column("code_verifier", sa.String(128), nullable=False),
        sa.Column("redirect_uri", sa.String(500), nullable=False),
        sa.Column("next_url", sa.String(500), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_sign_ins_created_at", "sign_ins", ["created_at"])


def downgrade() -> None:
    op.drop_table("sign_ins")
