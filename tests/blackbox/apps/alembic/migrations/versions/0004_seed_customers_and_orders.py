"""data migration: a few customers and their orders

Revision ID: 0004
Revises: 0003
"""

from alembic import op
import sqlalchemy as sa

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

customers = sa.table(
    "customers",
    sa.column("email", sa.String),
    sa.column("name", sa.String),
)

SEED_CUSTOMERS = [
    {"email": "ada@example.com", "name": "Ada Lovelace"},
    {"email": "grace@example.com", "name": "Grace Hopper"},
    {"email": "edsger@example.com", "name": "Edsger Dijkstra"},
]

# (customer email, total in cents, status)
SEED_ORDERS = [
    ("ada@example.com", 1999, "paid"),
    ("ada@example.com", 500, "pending"),
    ("grace@example.com", 12000, "shipped"),
    ("edsger@example.com", 42, "paid"),
]


def upgrade() -> None:
    op.bulk_insert(customers, SEED_CUSTOMERS)
    for email, total_cents, status in SEED_ORDERS:
        op.execute(
            sa.text(
                "INSERT INTO orders (customer_id, total_cents, status) "
                "SELECT id, :total_cents, :status FROM customers WHERE email = :email"
            ).bindparams(email=email, total_cents=total_cents, status=status)
        )


def downgrade() -> None:
    # Orders go with their customers (ON DELETE CASCADE).
    op.execute(
        sa.text("DELETE FROM customers WHERE email IN :emails").bindparams(
            sa.bindparam(
                "emails", [c["email"] for c in SEED_CUSTOMERS], expanding=True
            )
        )
    )
