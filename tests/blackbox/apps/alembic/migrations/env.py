"""Alembic environment: online mode only, database URL from $DATABASE_URL.

Accepts the URLs users put in DATABASE_URL (postgres://user:pass@host:port/db or
postgresql://...) and hands SQLAlchemy the psycopg 3 driver (postgresql+psycopg://).
All revisions of one `upgrade` run in a single transaction (alembic's default with
PostgreSQL's transactional DDL).

ALEMBIC_APP_SLEEP (seconds, optional, for tests and benchmarks): when this run applied
revisions, keep its transaction open that long before committing, like a slow migration,
so that concurrent runs surely overlap. A run with nothing to apply does not sleep.

ALEMBIC_IMPORTED_MARKER (a file, optional): a line is appended each time this env.py runs,
so a test can prove that a boot never started alembic (Python).
The version table is alembic's default; a test that renames it edits the copy's
`context.configure(...)` call, as a project would.
"""

import os
import sys
import time
from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool

config = context.config
if os.environ.get("ALEMBIC_IMPORTED_MARKER"):
    with open(os.environ["ALEMBIC_IMPORTED_MARKER"], "a", encoding="utf-8") as marker:
        marker.write("alembic started\n")
if config.config_file_name is not None:
    fileConfig(config.config_file_name)

target_metadata = None


def database_url() -> str:
    url = os.environ.get("DATABASE_URL", "").strip()
    if not url:
        sys.exit("alembic env.py: DATABASE_URL is not set")
    scheme, sep, rest = url.partition("://")
    if not sep:
        sys.exit("alembic env.py: DATABASE_URL is not a URL (want postgres://user:pass@host:port/db)")
    if scheme in ("postgres", "postgresql"):
        scheme = "postgresql+psycopg"
    return f"{scheme}://{rest}"


def run_migrations_online() -> None:
    engine = create_engine(database_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
        )
        with context.begin_transaction():
            migration = context.get_context()
            before = migration.get_current_heads()
            context.run_migrations()
            pause = float(os.environ.get("ALEMBIC_APP_SLEEP") or 0)
            if pause > 0 and migration.get_current_heads() != before:
                time.sleep(pause)


if context.is_offline_mode():
    sys.exit("alembic env.py: offline (--sql) mode is not supported")
run_migrations_online()
