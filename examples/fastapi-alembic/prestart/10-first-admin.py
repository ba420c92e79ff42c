#!/usr/bin/env python3
"""Seed data, as the FastAPI full-stack template's prestart does: the first admin account,
created with the app's own models when it is missing. Run it under roadie's migration lock
(`--locked-hooks prestart`, or ROADIE_LOCKED_HOOKS=/app/prestart), right after the
migrations: ten replicas starting at once then create it once, where ten unlocked copies of
"look, then insert" would race on the unique email."""

import os
import sys

# roadie runs hooks in the app's working directory; Python puts only this file's folder on
# the path, so add the app's.
sys.path.insert(0, os.getcwd())

from sqlalchemy import select  # noqa: E402

from app.db import SessionLocal  # noqa: E402
from app.models import Customer  # noqa: E402

ADMIN_EMAIL = os.environ.get("FIRST_ADMIN_EMAIL", "admin@example.com")

with SessionLocal() as session:
    if session.scalar(select(Customer).where(Customer.email == ADMIN_EMAIL)) is None:
        session.add(Customer(email=ADMIN_EMAIL, name="Admin", plan="pro"))
        session.commit()
        print(f"created the first admin, {ADMIN_EMAIL}")
    else:
        print(f"the first admin, {ADMIN_EMAIL}, exists already")
