"""index orders by customer and date

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_orders_customer_id_created_at", "orders", ["customer_id", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_orders_customer_id_created_at", table_name="orders")
