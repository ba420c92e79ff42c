"""The example's FastAPI app: a customers table that alembic creates and seeds."""
