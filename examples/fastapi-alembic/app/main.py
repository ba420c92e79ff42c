"""The example's web app: run it with
    roadie -- uvicorn app.main:app --workers 2 --host 0.0.0.0 --port 8000
from this directory, with DATABASE_URL set (see README.md).

GET /health     200 {"status": "ok"} when the database answers SELECT 1, else 503
GET /customers  every customer (the data migration seeds three) with their orders' count and total
"""

import logging

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.db import engine, get_session
from app.models import Customer, Order

log = logging.getLogger("uvicorn.error")

app = FastAPI(title="roadie example: FastAPI + alembic")


class CustomerOut(BaseModel):
    id: int
    email: str
    name: str
    plan: str
    orders: int
    total_cents: int


@app.exception_handler(SQLAlchemyError)
async def database_error(request: Request, error: SQLAlchemyError) -> JSONResponse:
    """A database error is a 503 naming it (e.g. a table missing because migrations were
    skipped), not a bare 500 with a traceback."""
    cause = getattr(error, "orig", None) or error
    message = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    log.warning("%s %s: database error: %s", request.method, request.url.path, message)
    return JSONResponse(
        status_code=503, content={"detail": f"database error: {message}"}
    )


@app.get("/health")
def health() -> dict[str, str]:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    return {"status": "ok"}


@app.get("/customers")
def customers(session: Session = Depends(get_session)) -> list[CustomerOut]:
    rows = session.execute(
        select(
            Customer.id,
            Customer.email,
            Customer.name,
            Customer.plan,
            func.count(Order.id).label("orders"),
            func.coalesce(func.sum(Order.total_cents), 0).label("total_cents"),
        )
        .outerjoin(Order)
        .group_by(Customer.id)
        .order_by(Customer.id)
    )
    return [CustomerOut(**row._mapping) for row in rows]
