"""The database connection, from DATABASE_URL (the same variable roadie waits on), or from
the file DATABASE_URL_FILE names (a Docker or Kubernetes secret), as roadie reads it.

Accepts the URLs people put in DATABASE_URL and hands SQLAlchemy a driver it has:
  postgres://user:pass@host:5432/db      -> postgresql+psycopg://user:pass@host:5432/db
  postgresql://user:pass@host:5432/db    -> postgresql+psycopg://... (psycopg 3, not psycopg2)
  postgresql+psycopg://...               as is
  sqlite:///example.db                   as is (relative to the working directory)
  sqlite:////abs/path/example.db         as is
migrations/env.py uses the same function, so the app and alembic always agree.
"""

import os
from collections.abc import Iterator

from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker


def configured_url() -> str:
    """DATABASE_URL, else the contents of DATABASE_URL_FILE; both set is an error, as in
    roadie, so the app can never serve a different database than the one roadie migrated."""
    url, path = os.environ.get("DATABASE_URL", ""), os.environ.get("DATABASE_URL_FILE", "")
    if url and path:
        raise RuntimeError("both DATABASE_URL and DATABASE_URL_FILE are set: use one")
    if path:
        with open(path, encoding="utf-8") as secret:
            return secret.read()
    return url


def database_url(raw: str | None = None) -> str:
    url = (configured_url() if raw is None else raw).strip()
    if not url:
        raise RuntimeError(
            "neither DATABASE_URL nor DATABASE_URL_FILE is set"
            " (postgres://user:pass@host:5432/db or sqlite:///example.db)"
        )
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise RuntimeError(
            "DATABASE_URL is not a URL (postgres://user:pass@host:5432/db or sqlite:///example.db)"
        )
    if scheme in ("postgres", "postgresql"):
        return f"postgresql+psycopg://{rest}"
    return url


# pool_pre_ping: a connection the server closed (a database restart) is replaced, not
# handed to a request. Creating the engine does not connect.
engine = create_engine(database_url(), pool_pre_ping=True)
SessionLocal = sessionmaker(engine, expire_on_commit=False)


def get_session() -> Iterator[Session]:
    """A FastAPI dependency: one session per request."""
    with SessionLocal() as session:
        yield session
