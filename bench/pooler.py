#!/usr/bin/env python3
"""Behind a pooler: roadie through a real PgBouncer (Debian's 1.18, `pool_mode = transaction`,
`default_pool_size = 2`) side by side with roadie connecting directly, in one run, against
one PostgreSQL 15 (`fsync=off`, SCRAM logins over TCP):

1. boot with nothing to migrate (`roadie --migrations DIR -- true`, native folder up to date):
   direct URL; the pooler's URL; the pooler's URL with `--migrate-database-url` direct.
   Runs interleaved, medians and quartiles.
2. 10 replicas started at once on a fresh database: wall time (first start to last exit) and
   failed replicas, for native migrations direct / through the pooler with a direct URL /
   through the pooler without one (refused: 78, by design), and for the real alembic example
   (`alembic upgrade head`, 5 revisions) direct / through the pooler. Each migration applied
   once is checked after every round.

    python3 bench/pooler.py --roadie PATH [--runs N] [--rounds N] [--out FILE]

Needs root (the server and PgBouncer run as the postgres user), pgbouncer on PATH, PostgreSQL
15 in /usr/lib/postgresql/15/bin and the venv of scripts/venv.sh (.venv) for alembic.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

PGBIN = "/usr/lib/postgresql/15/bin"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PW = "bench-pw"


def as_postgres(argv, timeout_s=60, what="command"):
    out = subprocess.run(["runuser", "-u", "postgres", "--", *argv], cwd="/",
                         capture_output=True, text=True, timeout=timeout_s)
    if out.returncode != 0:
        raise SystemExit(f"{what} failed: {out.stdout}{out.stderr}")
    return out.stdout


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--roadie", required=True)
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(REPO, "bench/results/pooler.md"))
    args = ap.parse_args()
    load_before = harness.loadavg()
    work = tempfile.mkdtemp(prefix="roadie-bench-pooler-")
    os.chmod(work, 0o755)  # the postgres user goes through it
    pg_dir, pgb_dir = os.path.join(work, "pg"), os.path.join(work, "pgbouncer")
    os.makedirs(pg_dir)
    data, sock = os.path.join(pg_dir, "data"), os.path.join(pg_dir, "sock")
    pg_port, pgb_port = harness.free_port(), harness.free_port()
    conf = (f"port = {pg_port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{sock}'\n"
            "fsync = off\nmax_connections = 300\n")
    harness.initdb(as_postgres, pg_dir, data, sock, PW, conf)
    as_postgres([f"{PGBIN}/pg_ctl", "-D", data, "-l", os.path.join(pg_dir, "log"), "-w", "start"],
                60, "pg_ctl start")
    pgb = None
    try:
        def psql(sql: str, db: str = "postgres") -> str:
            return as_postgres([f"{PGBIN}/psql", "-XqAt", "-h", sock, "-p", str(pg_port), "-d", db,
                                "-c", sql], 60, f"psql {sql!r}").strip()

        psql(f"CREATE ROLE app LOGIN PASSWORD '{PW}'")
        os.makedirs(pgb_dir)
        with open(os.path.join(pgb_dir, "pgbouncer.ini"), "w") as f:
            f.write(f"[databases]\n* = host=127.0.0.1 port={pg_port}\n[pgbouncer]\n"
                    f"listen_addr = 127.0.0.1\nlisten_port = {pgb_port}\nunix_socket_dir = {pgb_dir}\n"
                    f"auth_type = scram-sha-256\nauth_file = {pgb_dir}/userlist.txt\n"
                    "pool_mode = transaction\ndefault_pool_size = 2\nmax_client_conn = 500\n"
                    f"logfile = {pgb_dir}/log\npidfile = {pgb_dir}/pid\n")
        with open(os.path.join(pgb_dir, "userlist.txt"), "w") as f:
            f.write(f'"app" "{PW}"\n')
        pw = pwd.getpwnam("postgres")
        for p in [pgb_dir, *[os.path.join(pgb_dir, n) for n in os.listdir(pgb_dir)]]:
            os.chown(p, pw.pw_uid, pw.pw_gid)
        as_postgres([shutil.which("pgbouncer") or "/usr/sbin/pgbouncer", "-d", os.path.join(pgb_dir, "pgbouncer.ini")], 30, "pgbouncer")
        pgb = os.path.join(pgb_dir, "pid")
        time.sleep(0.3)

        def direct(db):
            return f"postgres://app:{PW}@127.0.0.1:{pg_port}/{db}"

        def pooled(db):
            return f"postgres://app:{PW}@127.0.0.1:{pgb_port}/{db}"

        migrations = os.path.join(work, "migrations")
        os.makedirs(migrations)
        for v, name, sql in [
            (1, "log", "CREATE TABLE applied_log (version int NOT NULL);\nINSERT INTO applied_log VALUES (1);"),
            (2, "customers", "CREATE TABLE customers (id int PRIMARY KEY);\nINSERT INTO applied_log VALUES (2);"),
            (3, "email", "ALTER TABLE customers ADD COLUMN email text;\nINSERT INTO applied_log VALUES (3);"),
        ]:
            with open(os.path.join(migrations, f"{v}_{name}.sql"), "w") as f:
                f.write(sql)
        cwd = os.path.join(work, "cwd")
        os.makedirs(cwd)
        venv_bin = os.path.join(REPO, ".venv/bin")
        alembic_dir = os.path.join(REPO, "tests/blackbox/apps/alembic")
        base_env = {"PATH": f"{venv_bin}:/usr/bin:/bin", "ROADIE_LOG": os.environ.get("ROADIE_LOG", "warn")}

        # 1. boot with nothing to migrate.
        psql("CREATE DATABASE boot OWNER app")
        native = ["--migrations", migrations, "--", "true"]
        variants = {
            "direct": ["--database-url", direct("boot")],
            "PgBouncer (transaction)": ["--database-url", pooled("boot")],
            "PgBouncer + --migrate-database-url": ["--database-url", pooled("boot"),
                                                  "--migrate-database-url", direct("boot")],
        }
        subprocess.run([args.roadie, *variants["direct"], *native], cwd=cwd, env=base_env, check=True)
        times = {k: [] for k in variants}
        for _ in range(args.runs):
            for name, v in variants.items():
                t = time.perf_counter_ns()
                run = subprocess.run([args.roadie, *v, *native], cwd=cwd, env=base_env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                times[name].append((time.perf_counter_ns() - t) / 1e6)
                if run.returncode != 0:
                    raise SystemExit(f"boot {name} exited {run.returncode}: {run.stderr}")

        # 2. 10 replicas at once on a fresh database.
        counter = [0]

        def fresh() -> str:
            counter[0] += 1
            db = f"r{counter[0]}"
            psql(f"CREATE DATABASE {db} OWNER app")
            return db

        def native_rep(url_of, with_direct):
            def argv(db):
                a = ["--database-url", url_of(db)]
                if with_direct:
                    a += ["--migrate-database-url", direct(db)]
                return a + native, cwd, {}
            return argv

        def alembic_rep(url_of):
            def argv(db):
                return (["--database-url", url_of(db), "--", "true"], alembic_dir,
                        {"DATABASE_URL": url_of(db)})
            return argv

        def check(db, kind):
            if kind == "native":
                return psql("SELECT string_agg(version::text, ',' ORDER BY version) FROM applied_log", db) == "1,2,3"
            return psql("SELECT version_num FROM alembic_version", db) == "0005"

        replica_variants = [
            ("native, direct", native_rep(direct, False), "native", 0),
            ("native, PgBouncer + --migrate-database-url", native_rep(pooled, True), "native", 0),
            ("native, PgBouncer without a direct URL (78 expected)", native_rep(pooled, False), "none", 78),
            ("alembic, direct", alembic_rep(direct), "alembic", 0),
            ("alembic, PgBouncer (transaction)", alembic_rep(pooled), "alembic", 0),
        ]
        rep = {name: {"wall": [], "failed": [], "codes": set(), "once": True, "migrated_anyway": 0}
               for name, *_ in replica_variants}
        for _ in range(args.rounds):
            for name, make, kind, ok_code in replica_variants:
                db = fresh()
                procs = []
                t = time.perf_counter_ns()
                for _ in range(10):
                    argv, where, env = make(db)
                    procs.append(subprocess.Popen([args.roadie, *argv], cwd=where, env={**base_env, **env},
                                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                codes = [p.wait(timeout=120) for p in procs]
                rep[name]["wall"].append((time.perf_counter_ns() - t) / 1e6)
                rep[name]["failed"].append(sum(c != ok_code for c in codes))
                rep[name]["codes"].update(codes)
                if kind != "none" and not check(db, kind):
                    rep[name]["once"] = False
                if kind == "none" and psql("SELECT to_regclass('applied_log') IS NOT NULL", db) == "t":
                    rep[name]["migrated_anyway"] += 1

        def q(xs):
            s = sorted(xs)
            return f"{statistics.median(s):.1f} ({s[len(s) // 4]:.1f}–{s[(3 * len(s)) // 4]:.1f})"

        lines = [
            "# Behind a pooler: PgBouncer 1.18 (transaction mode, default_pool_size = 2) vs direct",
            "",
            f"roadie `{args.roadie}`; {os.cpu_count()} CPUs; load average before {load_before}, "
            f"after {harness.loadavg()}.",
            "",
            f"## Boot with nothing to migrate ({args.runs} runs each, interleaved; ms, median (IQR))",
            "",
            "| how | boot ms | vs direct |",
            "| --- | --- | --- |",
        ]
        d = statistics.median(times["direct"])
        for name, xs in times.items():
            lines.append(f"| {name} | {q(xs)} | {statistics.median(xs) / d:.2f}x |")
        lines += ["", f"## 10 replicas at once on a fresh database ({args.rounds} rounds each)", "",
                  "| how | wall ms, median (IQR) | failed replicas (all rounds) | exit codes | each migration once |",
                  "| --- | --- | --- | --- | --- |"]
        for name, r in rep.items():
            if name.endswith("(78 expected)"):
                once = (f"refused; the pooler not seen (migrated through it anyway) in "
                        f"{r['migrated_anyway']} of {args.rounds} rounds")
            else:
                once = "yes" if r["once"] else "NO"
            lines.append(f"| {name} | {q(r['wall'])} | {sum(r['failed'])} of {10 * args.rounds} | "
                         f"{','.join(map(str, sorted(r['codes'])))} | {once} |")
        lines.append("")
        text = "\n".join(lines)
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text)
        print(text)
        return 0
    finally:
        if pgb and os.path.exists(pgb):
            try:
                os.kill(int(open(pgb).read().strip()), 15)
            except (OSError, ValueError):
                pass
        subprocess.run(["runuser", "-u", "postgres", "--", f"{PGBIN}/pg_ctl", "-D", data, "-m",
                        "immediate", "-w", "stop"], cwd="/", capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
