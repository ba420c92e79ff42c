"""data migration: the first customers and their orders

Revision ID: 0004
Revises: 0003
"""

from alembic import op
import sqlalchemy as sa

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Lightweight table stand-ins, not the app's models: a data migration must keep working
# when the models move on.
customers = sa.table(
    "customers",
    sa.column("email", sa.String),
    sa.column("name", sa.String),
    sa.column("plan", sa.String),
)

SEED_CUSTOMERS = [
    {"email": "ada@example.com", "name": "Ada Lovelace", "plan": "pro"},
    {"email": "grace@example.com", "name": "Grace Hopper", "plan": "team"},
    {"email": "edsger@example.com", "name": "Edsger Dijkstra", "plan": "free"},
]

# (customer email, total in cents)
SEED_ORDERS = [
    ("ada@example.com", 1999),
    ("ada@example.com", 500),
    ("grace@example.com", 12000),
]


def upgrade() -> None:
    op.bulk_insert(customers, SEED_CUSTOMERS)
    for email, total_cents in SEED_ORDERS:
        op.execute(
            sa.text(
                "INSERT INTO orders (customer_id, total_cents) "
                "SELECT id, :total_cents FROM customers WHERE email = :email"
            ).bindparams(email=email, total_cents=total_cents)
        )


def downgrade() -> None:
    emails = [c["email"] for c in SEED_CUSTOMERS]
    # Delete the orders first: SQLite does not enforce ON DELETE CASCADE by default.
    op.execute(
        sa.text(
            "DELETE FROM orders WHERE customer_id IN "
            "(SELECT id FROM customers WHERE email IN :emails)"
        ).bindparams(sa.bindparam("emails", emails, expanding=True))
    )
    op.execute(
        sa.text("DELETE FROM customers WHERE email IN :emails").bindparams(
            sa.bindparam("emails", emails, expanding=True)
        )
    )
