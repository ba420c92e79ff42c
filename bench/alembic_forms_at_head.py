#!/usr/bin/env python3
"""alembic's other forms at head: `flask db upgrade` (Flask-Migrate) and `alembic upgrade heads`
(two heads), each booted through roadie vs the command alone, on a database already at head,
interleaved runs, medians:

  flask db upgrade          roadie --migrate-command "flask --app app db upgrade" -- true
                            vs `flask --app app db upgrade`
  alembic upgrade heads     roadie --migrate-command "alembic upgrade heads" -- true
                            vs `alembic upgrade heads`

The projects: the black-box tests' alembic app (revisions 0001 to 0005), as a Flask-Migrate app
(`flask db init`'s migrations/) and with two heads 0006, 0007 off 0005.
As root (the cluster runs as postgres): python3 bench/alembic_forms_at_head.py [--runs 20].
Needs .venv (scripts/venv.sh) and a built roadie (ROADIE_BIN, else target/release/roadie).
Writes bench/results/alembic_forms_at_head.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import med, ms  # noqa: E402
from migrate import Cluster  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST_APP = os.path.join(ROOT, "tests/blackbox/apps/alembic")
VENV_BIN = os.path.join(ROOT, ".venv/bin")

FLASK_APP = """import os
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from flask_migrate import Migrate

app = Flask(__name__)
app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["DATABASE_URL"].replace(
    "postgres://", "postgresql+psycopg://", 1)
db = SQLAlchemy(app)
migrate = Migrate(app, db)
"""

REVISION = """revision = "{id}"
down_revision = "0005"
branch_labels = None
depends_on = None

from alembic import op


def upgrade():
    op.execute("CREATE TABLE t_{id} (id int)")


def downgrade():
    op.execute("DROP TABLE t_{id}")
"""


def timed(argv: list[str], cwd: str, env: dict[str, str]) -> float:
    """Wall time of one run, in ns; it must exit 0."""
    start = time.perf_counter_ns()
    r = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    took = time.perf_counter_ns() - start
    if r.returncode != 0:
        raise harness.BenchError(f"{argv[:4]} exited {r.returncode}: {r.stderr.decode()[-500:]}")
    return took


def commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                          capture_output=True, text=True)
    return done.stdout.strip() or "an unknown commit"


def projects(work: str, env: dict[str, str]) -> tuple[str, str]:
    """The Flask-Migrate app and the two-heads alembic project, in `work`."""
    flask = os.path.join(work, "flask_app")
    os.makedirs(flask)
    with open(os.path.join(flask, "app.py"), "w") as f:
        f.write(FLASK_APP)
    subprocess.run([os.path.join(VENV_BIN, "flask"), "--app", "app", "db", "init"], cwd=flask,
                   env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    versions = os.path.join(TEST_APP, "migrations/versions")
    for name in os.listdir(versions):
        if name.endswith(".py"):
            shutil.copy(os.path.join(versions, name), os.path.join(flask, "migrations/versions"))
    heads = os.path.join(work, "two_heads")
    shutil.copytree(TEST_APP, heads)
    for rev in ("0006", "0007"):
        with open(os.path.join(heads, f"migrations/versions/{rev}_more.py"), "w") as f:
            f.write(REVISION.format(id=rev))
    return flask, heads


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    roadie = os.environ.get("ROADIE_BIN", os.path.join(ROOT, "target/release/roadie"))
    if not os.path.exists(roadie):
        raise harness.BenchError(f"no roadie at {roadie} (set ROADIE_BIN)")
    harness.become_child_subreaper()
    with tempfile.TemporaryDirectory(prefix="bench-alembic-forms-") as work:
        os.chmod(work, 0o755)  # the postgres user enters it to reach its own directory
        cluster = Cluster(work, harness.free_port())
        cluster.initdb()
        cluster.start()
        try:
            env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1",
                       PATH=f"{VENV_BIN}:/usr/bin:/bin", ROADIE_LOG="warn")
            env_flask = dict(env, DATABASE_URL=cluster.create_db("flask"))
            env_heads = dict(env, DATABASE_URL=cluster.create_db("heads"))
            flask, heads = projects(work, env_flask)
            flask_cmd = ["flask", "--app", "app", "db", "upgrade"]
            heads_cmd = ["alembic", "upgrade", "heads"]
            cases = {
                "roadie, flask db upgrade": (
                    [roadie, "--migrate-command", " ".join(flask_cmd), "--", "true"], flask, env_flask),
                "flask db upgrade alone": (flask_cmd, flask, env_flask),
                "roadie, alembic upgrade heads": (
                    [roadie, "--migrate-command", " ".join(heads_cmd), "--", "true"], heads, env_heads),
                "alembic upgrade heads alone": (heads_cmd, heads, env_heads),
            }
            # Migrate once, so every measured run is at head.
            timed(*cases["roadie, flask db upgrade"])
            timed(*cases["roadie, alembic upgrade heads"])
            samples: dict[str, list[float]] = {name: [] for name in cases}
            for _ in range(args.runs):
                for name, case in cases.items():
                    samples[name].append(timed(*case))
        finally:
            cluster.stop("fast")
    lines = [
        "# alembic's other forms at head: flask db upgrade, alembic upgrade heads",
        "",
        f"{args.runs} interleaved runs each, medians (min-max); machine: {harness.cpu_model()}, "
        f"load {harness.loadavg()}; roadie {os.path.relpath(roadie, ROOT)} at {commit()}.",
        "",
        "| at head | ms (min-max) | vs the command alone |",
        "| --- | ---: | ---: |",
    ]
    for mine, alone in (("roadie, flask db upgrade", "flask db upgrade alone"),
                        ("roadie, alembic upgrade heads", "alembic upgrade heads alone")):
        for name in (mine, alone):
            xs = samples[name]
            lines.append(f"| {name} | {ms(med(xs)):.1f} ({ms(min(xs)):.1f}-{ms(max(xs)):.1f}) | "
                         f"{med(xs) / med(samples[alone]):.2f}x |")
    harness.write_report("\n".join(lines) + "\n",
                         os.path.join(ROOT, "bench/results/alembic_forms_at_head.md"))
    return 0


if __name__ == "__main__":
    harness.exit_with(main)
