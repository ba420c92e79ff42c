"""Migrations that never stall the site, measured against a real PostgreSQL 15.

1. A blocker holds ACCESS SHARE on `orders` for 5 s (`LOCK TABLE`, then `pg_sleep(5)`, in one
   transaction); a migration ALTERs `orders` meanwhile; ordinary `SELECT count(*) FROM orders`
   run back to back for the whole migration, each timed by psql's `\\timing` (server round trip,
   connecting excluded). Reported: the longest and median wait of those SELECTs, and the
   migration's wall time, without and with `--ddl-lock-timeout 200ms` (same server, same run,
   alternating).
2. A partition: roadie in a network namespace of this harness's own (a veth pair on a /30 that
   exists only between the two ends) runs a slow migration (`pg_sleep`) under the lock; then
   everything in and out of the namespace is dropped (iptables inside it). Reported: seconds from
   the cut to the server having no session from the namespace left (lock free, migration rolled
   back), and to the partitioned roadie's exit (and its code).

   python3 bench/ddl.py [--runs N]      # as root; ROADIE_BIN=path (default target/debug/roadie)

Writes bench/results/ddl.md. Standard library only; harness.py for initdb and the plumbing.
"""

from __future__ import annotations

import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import PGBIN, BenchError, log  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROADIE = os.environ.get("ROADIE_BIN") or os.path.join(
    os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target"), "debug", "roadie")
HOLD_S = 5.0
DDL_TIMEOUT = "200ms"


class Cluster:
    def __init__(self, work: str, port: int, extra_listen: str = "", extra_hba: str = ""):
        self.dir = os.path.join(work, "pg")
        self.data = os.path.join(self.dir, "data")
        self.sock = os.path.join(self.dir, "sock")
        self.log = os.path.join(self.dir, "server.log")
        self.port = port
        self.password = secrets.token_hex(16)
        os.makedirs(self.dir)
        harness.initdb(self.as_postgres, self.dir, self.data, self.sock, secrets.token_hex(16),
                       "\n# bench/ddl\nlogging_collector = off\n")
        if extra_hba:
            with open(os.path.join(self.data, "pg_hba.conf"), "a") as f:
                f.write(extra_hba)
        listen = "127.0.0.1" + (f",{extra_listen}" if extra_listen else "")
        self.as_postgres([f"{PGBIN}/pg_ctl", "start", "-D", self.data, "-l", self.log, "-w", "-t", "60",
                          "-s", "-o", f"-h {listen} -p {port} -k {self.sock} -c fsync=off"], 70, "pg_ctl start")
        self.psql(f"CREATE ROLE app LOGIN PASSWORD '{self.password}'")

    def as_postgres(self, argv: list[str], timeout_s: float, what: str) -> str:
        with tempfile.TemporaryFile() as out:
            r = subprocess.run(["runuser", "-u", "postgres", "--", *argv], stdin=subprocess.DEVNULL,
                               stdout=out, stderr=subprocess.STDOUT, timeout=timeout_s, cwd="/")
            out.seek(0)
            text = out.read().decode(errors="replace")
        if r.returncode != 0:
            raise BenchError(f"{what} exited {r.returncode}: {text.strip()[-800:]}")
        return text

    def psql(self, sql: str, db: str = "postgres", extra: tuple[str, ...] = ()) -> str:
        return self.as_postgres([f"{PGBIN}/psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                                 "-h", self.sock, "-p", str(self.port), "-d", db, *extra, "-c", sql],
                                60, f"psql {sql[:60]!r}").strip()

    def url(self, db: str, host: str = "127.0.0.1") -> str:
        return f"postgres://app:{self.password}@{host}:{self.port}/{db}"

    def stop(self) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", f"{PGBIN}/pg_ctl", "stop", "-D", self.data,
                        "-m", "immediate", "-w", "-s"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def folder(work: str, name: str, files: dict[str, str]) -> str:
    path = os.path.join(work, name)
    os.makedirs(path)
    for file, sql in files.items():
        with open(os.path.join(path, file), "w") as f:
            f.write(sql)
    return path


def roadie(url: str, migrations: str, extra: list[str], prefix: list[str] = ()) -> subprocess.Popen:
    return subprocess.Popen([*prefix, ROADIE, "migrate", "--database-url", url, "--migrations", migrations,
                             *extra], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def select_ms(pg: Cluster, db: str) -> float:
    out = pg.as_postgres([f"{PGBIN}/psql", "-X", "-A", "-t", "-h", pg.sock, "-p", str(pg.port), "-d", db,
                          "-c", "\\timing on", "-c", "SELECT count(*) FROM orders"], 60, "timed SELECT")
    for line in out.splitlines():
        if line.startswith("Time: "):
            return float(line.split()[1])
    raise BenchError(f"no timing in {out!r}")


def stall_run(pg: Cluster, work: str, n: int, ddl: bool) -> dict:
    db = f"stall{n}"
    pg.psql(f"CREATE DATABASE {db} OWNER app")
    first = folder(work, f"{db}-1", {"1_orders.sql": "CREATE TABLE orders (id int PRIMARY KEY);\n"
                                                     "INSERT INTO orders SELECT generate_series(1, 1000);"})
    r = roadie(pg.url(db), first, [])
    if r.wait(60) != 0:
        raise BenchError(f"creating orders: {r.stderr.read()}")
    both = folder(work, f"{db}-2", {"1_orders.sql": open(os.path.join(first, "1_orders.sql")).read(),
                                    "2_status.sql": "ALTER TABLE orders ADD COLUMN status text;"})
    blocker = subprocess.Popen(["runuser", "-u", "postgres", "--", f"{PGBIN}/psql", "-X", "-q", "-h", pg.sock,
                                "-p", str(pg.port), "-d", db, "-c",
                                f"BEGIN; LOCK TABLE orders IN ACCESS SHARE MODE; SELECT pg_sleep({HOLD_S}); COMMIT;"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")
    while pg.psql("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                  "WHERE c.relname = 'orders' AND l.mode = 'AccessShareLock' AND l.granted", db) == "0":
        time.sleep(0.01)
    began = time.monotonic()
    r = roadie(pg.url(db), both, ["--ddl-lock-timeout", DDL_TIMEOUT] if ddl else [])
    waits = []
    while r.poll() is None:
        waits.append(select_ms(pg, db))
    took = time.monotonic() - began
    stderr = r.stderr.read()
    blocker.wait(30)
    if r.returncode != 0:
        raise BenchError(f"the migration failed ({r.returncode}): {stderr[-800:]}")
    return {"longest_ms": max(waits), "median_ms": statistics.median(waits), "queries": len(waits),
            "migration_s": took, "retries": stderr.count("gave up waiting for a table lock")}


def run(argv: list[str], check: bool = True) -> None:
    r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if check and r.returncode != 0:
        raise BenchError(f"{' '.join(argv)}: {r.stderr.strip()}")


def partition_run(work: str, n: int) -> dict:
    port = harness.free_port()
    ns, host_if, ns_if = f"roadie-b{port}", f"rbh{port}", f"rbn{port}"
    x, y = (port % 16384) // 64, (port % 64) * 4
    host_ip, ns_ip, net = f"10.232.{x}.{y + 1}", f"10.232.{x}.{y + 2}", f"10.232.{x}.{y}/30"
    pg = None
    try:
        for step in (["ip", "netns", "add", ns],
                     ["ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if],
                     ["ip", "link", "set", ns_if, "netns", ns],
                     ["ip", "addr", "add", f"{host_ip}/30", "dev", host_if],
                     ["ip", "link", "set", host_if, "up"],
                     ["ip", "-n", ns, "addr", "add", f"{ns_ip}/30", "dev", ns_if],
                     ["ip", "-n", ns, "link", "set", ns_if, "up"]):
            run(step)
        pg = Cluster(os.path.join(work, f"part{n}"), port, host_ip, f"host all app {net} scram-sha-256\n")
        pg.psql("CREATE DATABASE part OWNER app")
        slow = folder(work, f"part{n}-m", {"1_slow.sql": "CREATE TABLE done (id int);\nSELECT pg_sleep(120);"})
        r = roadie(pg.url("part", host_ip), slow, [], prefix=["ip", "netns", "exec", ns])
        until = time.monotonic() + 30
        while pg.psql("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                      "AND query LIKE '%pg_sleep(120)%' AND pid <> pg_backend_pid()") != "1":
            if time.monotonic() > until or r.poll() is not None:
                raise BenchError("the migration never started in the namespace")
            time.sleep(0.02)
        for chain in ("INPUT", "OUTPUT"):
            run(["ip", "netns", "exec", ns, "iptables", "-A", chain, "-j", "DROP"])
        cut = time.monotonic()
        freed = exited = None
        code = None
        while time.monotonic() - cut < 60 and (freed is None or exited is None):
            if freed is None and pg.psql(f"SELECT count(*) FROM pg_stat_activity WHERE client_addr = '{ns_ip}'") == "0":
                freed = time.monotonic() - cut
            if exited is None and r.poll() is not None:
                exited, code = time.monotonic() - cut, r.returncode
            time.sleep(0.02)
        if r.poll() is None:
            r.kill()
            r.wait()
        return {"freed_s": freed, "exited_s": exited, "code": code}
    finally:
        if pg:
            pg.stop()
        run(["ip", "link", "del", host_if], check=False)
        run(["ip", "netns", "del", ns], check=False)


def main() -> int:
    runs = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 3
    if os.geteuid() != 0:
        raise BenchError("run as root (runuser, ip netns)")
    if not os.access(ROADIE, os.X_OK):
        raise BenchError(f"no roadie at {ROADIE} (cargo build, or ROADIE_BIN=path)")
    harness.stop_on_signals()
    work = tempfile.mkdtemp(prefix="roadie-bench-ddl-")
    os.chmod(work, 0o755)
    pg = None
    try:
        pg = Cluster(work, harness.free_port())
        stall = {False: [], True: []}
        for n in range(runs):
            for ddl in (False, True):
                log(f"stall run {n + 1}/{runs}, {'with' if ddl else 'without'} --ddl-lock-timeout")
                stall[ddl].append(stall_run(pg, work, 2 * n + ddl, ddl))
        pg.stop()
        pg = None
        parts = []
        for n in range(runs):
            log(f"partition run {n + 1}/{runs}")
            parts.append(partition_run(work, n))
    finally:
        if pg:
            pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    med = lambda xs: statistics.median(xs)  # noqa: E731
    lines = [
        "# bench/ddl: migrations that never stall the site",
        "",
        f"roadie `{ROADIE}`; {harness.cpu_model()}, {os.cpu_count()} CPUs; load {harness.loadavg()}; "
        f"{runs} runs each, medians over runs.",
        "",
        f"A blocker holds ACCESS SHARE on `orders` for {HOLD_S:g} s; a migration ALTERs `orders`; "
        "`SELECT count(*) FROM orders` back to back meanwhile (psql `\\timing`).",
        "",
        "| | longest SELECT wait | median SELECT wait | SELECTs | migration wall time | retries |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for ddl in (False, True):
        rs = stall[ddl]
        name = f"with `--ddl-lock-timeout {DDL_TIMEOUT}`" if ddl else "without"
        lines.append(f"| {name} | {med([r['longest_ms'] for r in rs]):.0f} ms (max {max(r['longest_ms'] for r in rs):.0f}) "
                     f"| {med([r['median_ms'] for r in rs]):.1f} ms | {med([r['queries'] for r in rs]):.0f} "
                     f"| {med([r['migration_s'] for r in rs]):.2f} s | {med([r['retries'] for r in rs]):.0f} |")
    lines += ["", "A partition (everything in and out of roadie's network namespace dropped) during a "
              "native migration (`pg_sleep(120)`) under the lock:", "",
              "| run | cut → server has no session of roadie's (lock free, rolled back) | cut → roadie exited | exit code |",
              "| --- | ---: | ---: | ---: |"]
    for n, p in enumerate(parts, 1):
        fmt = lambda v: "not within 60 s" if v is None else f"{v:.1f} s"  # noqa: E731
        lines.append(f"| {n} | {fmt(p['freed_s'])} | {fmt(p['exited_s'])} | {p['code']} |")
    text = "\n".join(lines) + "\n"
    harness.write_report(text, os.path.join(REPO, "bench", "results", "ddl.md"))
    return 0


if __name__ == "__main__":
    harness.exit_with(main)
