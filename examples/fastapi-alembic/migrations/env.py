"""alembic's environment: the database URL from DATABASE_URL (or DATABASE_URL_FILE), through
the app's own database_url() (app/db.py), so postgres://, postgresql://, postgresql+psycopg://
and sqlite:///example.db all work, and alembic migrates the very database the app serves.

On PostgreSQL every revision of one `upgrade` runs in one transaction (transactional DDL):
a failing revision leaves the schema as it was. SQLite runs in batch mode, so a future
revision that alters a column works there too.
"""

from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool

from app.db import database_url
from app.models import Base

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

# For `alembic revision --autogenerate`: the models are the schema wanted.
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    """`alembic upgrade head --sql`: print the SQL instead of running it."""
    context.configure(
        url=database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(database_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
