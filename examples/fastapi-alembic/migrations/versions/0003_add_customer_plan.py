"""add column customers.plan

Revision ID: 0003
Revises: 0002
"""

from alembic import op
import sqlalchemy as sa

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A server default, so the column can be NOT NULL on a table that already has rows.
    op.add_column(
        "customers",
        sa.Column("plan", sa.String(20), nullable=False, server_default="free"),
    )


def downgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("plan")
