#!/usr/bin/env python3
"""Migration harness for bench/migrate: roadie's migrate stage against a real PostgreSQL 15,
side by side with what it replaces.

Called by bench/migrate (which installs sqlx-cli, makes the alembic venv, builds roadie and
copies the inputs into a temp directory); it can also be run by hand, as root:

    python3 bench/migrate.py --roadie PATH --sqlx PATH --alembic PATH --alembic-ini PATH \\
        --migrations DIR --work DIR --out FILE [--dbmate PATH] [--csv FILE] [--quick]

Four measurements, each against the same server (initdb'd once, `fsync=off`,
`max_connections = 300`, SCRAM-SHA-256 logins over TCP for the role `app`, which owns every
database the harness makes):

1. boot overhead with nothing to migrate: `roadie --migrations DIR -- true` vs the script
   `pg_isready && sqlx migrate run && exec true` and (with --dbmate) `dbmate --wait up && exec
   true` (and bare `true`, bare `pg_isready`);
2. alembic overhead: `roadie --migrate-command "alembic upgrade head" -- true` vs bare
   `alembic upgrade head`, on an already migrated database;
3. N replicas (1, 10, 50) of roadie started at once on a fresh database, native migrations;
4. 10 bare `alembic upgrade head` at once vs 10 roadies running it, on a fresh database;
5. (with --dbmate) the same with `dbmate --wait up`: dbmate takes no lock;
6. a wrong password: what each way of waiting does (exit code, time, whether the app started).

dbmate has its own file format (`-- migrate:up` / `-- migrate:down`) and table
(`schema_migrations`): the harness writes a dbmate copy of the same migrations, and dbmate
migrates databases of its own. With --csv every per-run sample is also written, one per line:
`section,tool,run,metric,value`.

Every process is started with os.posix_spawn, in the harness's working directory (an empty
directory inside --work: roadie finds no alembic.ini or migrations/ to auto-detect there),
waited for through a pidfd with a deadline, and timed with time.perf_counter_ns. The harness
is a child subreaper: whatever a killed roadie leaves behind comes back to it and is killed.
On exit (or SIGINT/SIGTERM/SIGHUP) it kills what it started, stops the server with
`pg_ctl stop -m immediate`, and kills every child left.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import secrets
import select
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

# harness.py sits next to this file; python3 puts the script's directory on sys.path, but not
# under -P or PYTHONSAFEPATH.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (BenchError, cpu_model, diff_ci, free_port, iqr, log, loadavg, med,  # noqa: E402
                    ms, version_of)

PGBIN = harness.PGBIN
# PGBIN first: `pg_isready` is PostgreSQL's own binary, not Debian's Perl wrapper
# /usr/bin/pg_isready (~30 ms of Perl start-up per call).
BASE_ENV = {"PATH": f"{PGBIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LC_ALL": "C", "HOME": "/root"}

GOAL_BOOT_MS = 10.0
GOAL_ALEMBIC_MS = 10.0
GOAL_REPLICA_RATIO = 1.5
BOOTSTRAP_ROUNDS = 2000  # resamplings behind each diff_ci interval

# roadie's summary line of the migrate stage: the whole message, at the end of its line (the
# later "ready in …s (database …, schema up to date …)" line must not count twice).
SUMMARY = re.compile(
    r"(?:(?P<uptodate>schema up to date)(?: \(another replica migrated it; lock waited (?P<w1>[0-9.]+)s\))?"
    r"|(?P<n>\d+) migrations? applied in (?P<took>[0-9.]+)s, after (?P<w2>[0-9.]+)s waiting for the lock"
    r"|migration command done in (?P<ctook>[0-9.]+)s, after (?P<w3>[0-9.]+)s waiting for the lock)[ \t]*$",
    re.M,
)


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------

_devnull = os.open(os.devnull, os.O_RDWR)
_live: dict[int, int] = {}  # pid -> pidfd, spawned and not yet reaped


_cpu: dict[int, float] = {}  # pid -> user + system CPU seconds (its reaped descendants included)

# The gate: `sh` reads its stdin, the read end of a pipe whose write end only the harness holds,
# and execs the command (stdin then on /dev/null) once the harness closes it: every replica
# blocks there, and all of them go at the same instant.
GATE = ["/bin/sh", "-c", 'read _; exec "$@" </dev/null', "gate"]


def spawn(argv: list[str], env: dict[str, str], out: str | None = None, gate: int | None = None) -> int:
    """Starts argv (argv[0] an absolute path), stdin on /dev/null (or, with `gate`, behind the
    gate), stdout and stderr both to the file `out` (or /dev/null); returns its pid (its pidfd
    is in _live)."""
    actions = [(os.POSIX_SPAWN_DUP2, _devnull if gate is None else gate, 0)]
    if out is None:
        actions += [(os.POSIX_SPAWN_DUP2, _devnull, 1), (os.POSIX_SPAWN_DUP2, _devnull, 2)]
    else:
        actions += [(os.POSIX_SPAWN_OPEN, 1, out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
                    (os.POSIX_SPAWN_DUP2, 1, 2)]
    if gate is not None:
        argv = GATE + argv
    pid = os.posix_spawn(
        argv[0], argv, env,
        file_actions=actions,
        setsigdef=(signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGHUP),
        setsigmask=(),
    )
    try:
        _live[pid] = os.pidfd_open(pid)
    except BaseException:
        kill_and_reap(pid)
        raise
    return pid


def blocked_at_gate(pid: int) -> bool:
    """Whether pid (a gate `sh`) sits in read(0, ...)."""
    try:
        with open(f"/proc/{pid}/syscall") as f:
            fields = f.read().split()
        if len(fields) >= 2 and fields[0] != "running":
            return fields[0] == "0" and int(fields[1], 16) == 0
    except (OSError, ValueError):
        pass
    try:
        with open(f"/proc/{pid}/wchan") as f:
            return "pipe_read" in f.read()
    except OSError:
        return False


def start_at_once(argv: list[str], env: dict[str, str], outs: list[str],
                  timeout_s: float = 30) -> tuple[list[int], int]:
    """Spawns argv once per output file behind the gate, waits until every one is blocked in
    it, opens the gate; returns (pids, perf_counter_ns at the opening)."""
    r, w = os.pipe()  # both close-on-exec: only the dup2'd stdin reaches the children
    try:
        pids = [spawn(argv, env, o, gate=r) for o in outs]
        deadline = time.monotonic() + timeout_s
        waiting = set(pids)
        while waiting:
            waiting = {p for p in waiting if not blocked_at_gate(p)}
            if not waiting:
                break
            if time.monotonic() > deadline:
                raise BenchError(f"{len(waiting)} of {len(pids)} processes did not reach the gate in {timeout_s:g} s")
            time.sleep(0.002)
        t0 = time.perf_counter_ns()
        os.close(w)
        w = -1
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
    return pids, t0


def reap(pid: int) -> int:
    _, status, ru = os.wait4(pid, 0)
    os.close(_live.pop(pid))
    _cpu[pid] = ru.ru_utime + ru.ru_stime
    return os.waitstatus_to_exitcode(status)


def wait_all(pids: list[int], timeout_s: float) -> tuple[dict[int, int], dict[int, int | None]]:
    """Waits for every pid, at most timeout_s in all. Returns (perf_counter_ns at each exit,
    exit code of each; None for one still running at the deadline, which is then killed)."""
    deadline = time.monotonic() + timeout_s
    poller = select.poll()
    by_fd = {}
    for pid in pids:
        poller.register(_live[pid], select.POLLIN)
        by_fd[_live[pid]] = pid
    times: dict[int, int] = {}
    codes: dict[int, int | None] = {}
    while by_fd:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        for fd, _ in poller.poll(left * 1000):
            t = time.perf_counter_ns()
            pid = by_fd.pop(fd)
            poller.unregister(fd)
            times[pid] = t
    for pid in pids:
        if pid in times:
            codes[pid] = reap(pid)
        else:
            kill_and_reap(pid)
            times[pid] = time.perf_counter_ns()
            codes[pid] = None
    return times, codes


def run_timed(argv: list[str], env: dict[str, str], timeout_s: float,
              out: str | None = None) -> tuple[int, int | None]:
    """Runs argv to its end; returns (wall time in ns, exit code or None if it hung)."""
    t0 = time.perf_counter_ns()
    pid = spawn(argv, env, out)
    times, codes = wait_all([pid], timeout_s)
    return times[pid] - t0, codes[pid]


def kill_and_reap(pid: int) -> None:
    harness.kill_and_reap(pid)
    fd = _live.pop(pid, None)
    if fd is not None:
        os.close(fd)


def reap_strays(keep: set[int]) -> int:
    """Kills and reaps every child of the harness but those in `keep` (the postmaster): what
    came back to it as the subreaper. Returns how many it killed."""
    for pid in list(_live):
        kill_and_reap(pid)
    killed, _exited = harness.reap_strays(keep)
    return killed


def read(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def tail(path: str, lines: int = 6) -> str:
    try:
        with open(path, errors="replace") as f:
            text = f.read().strip().splitlines()
    except FileNotFoundError:
        return "(no output file)"
    return " ⏎ ".join(text[-lines:]) if text else "(no output)"


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------

class Cluster:
    def __init__(self, work: str, port: int):
        self.dir = os.path.join(work, "pg")  # owned by postgres: data, socket, log
        self.data = os.path.join(self.dir, "data")
        self.sock = os.path.join(self.dir, "sock")
        self.log = os.path.join(self.dir, "server.log")
        self.port = port
        self.super_password = secrets.token_hex(16)
        self.password = secrets.token_hex(16)  # the app role's
        self.version = "unknown"

    def as_postgres(self, argv: list[str], timeout_s: float, what: str) -> str:
        """A server tool as the postgres user; its output goes to a file, not a pipe: a daemon
        that inherited a pipe would hold it open forever."""
        with tempfile.TemporaryFile() as out:
            try:
                r = subprocess.run(["runuser", "-u", "postgres", "--", *argv], stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=subprocess.STDOUT, env=BASE_ENV, timeout=timeout_s,
                                   cwd=self.dir)
            except subprocess.TimeoutExpired:
                raise BenchError(f"{what}: no exit within {timeout_s:g} s") from None
            out.seek(0)
            text = out.read().decode(errors="replace")
        if r.returncode != 0:
            raise BenchError(f"{what} exited {r.returncode}: {text.strip()[-800:]}")
        return text

    def initdb(self) -> None:
        # 50 replicas × up to 3 connections each, plus the harness's own.
        harness.initdb(self.as_postgres, self.dir, self.data, self.sock, self.super_password,
                       "\n# bench/migrate\nmax_connections = 300\nlog_line_prefix = '%m [%p] '\n"
                       "logging_collector = off\n")

    def start(self) -> None:
        # -l is essential: without it the postmaster keeps pg_ctl's stdout and stderr open.
        self.as_postgres([f"{PGBIN}/pg_ctl", "start", "-D", self.data, "-l", self.log, "-w", "-t", "60",
                          "-s", "-o", f"-h 127.0.0.1 -p {self.port} -k {self.sock} -c fsync=off"],
                         70, "pg_ctl start")
        self.version = self.psql("SELECT version()").strip()
        self.psql(f"CREATE ROLE app LOGIN PASSWORD '{self.password}'")

    def postmaster(self) -> int | None:
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as f:
                return int(f.readline())
        except (FileNotFoundError, ValueError):
            return None

    def stop(self, mode: str) -> None:
        if self.postmaster() is None:
            return
        self.as_postgres([f"{PGBIN}/pg_ctl", "stop", "-D", self.data, "-m", mode, "-w", "-t", "30", "-s"],
                         40, f"pg_ctl stop -m {mode}")

    def psql(self, sql: str, db: str = "postgres", timeout_s: float = 60) -> str:
        """One statement as the superuser, over the socket (peer auth); its rows, `|`-separated."""
        return self.as_postgres([f"{PGBIN}/psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                                 "-h", self.sock, "-p", str(self.port), "-d", db, "-c", sql],
                                timeout_s, f"psql {sql[:60]!r}")

    def create_db(self, name: str) -> str:
        """A fresh database owned by the app role; returns its URL."""
        self.psql(f"CREATE DATABASE {name} OWNER app")
        return self.url(name)

    def drop_db(self, name: str) -> None:
        self.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def url(self, db: str) -> str:
        return f"postgres://app:{self.password}@127.0.0.1:{self.port}/{db}"

    def log_size(self) -> int:
        try:
            return os.path.getsize(self.log)
        except FileNotFoundError:
            return 0

    def log_since(self, offset: int) -> str:
        with open(self.log, errors="replace") as f:
            f.seek(offset)
            return f.read()


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------

def verdict(met: bool, within_noise: bool = False) -> str:
    if met:
        return "yes"
    return "no, within noise" if within_noise else "**no**"


@dataclass
class Summary:
    """One line of the summary table."""
    name: str
    roadie: str
    other: str
    ratio: str
    goal: str
    met: str


@dataclass
class Trial:
    """N processes started at once on a fresh database."""
    kind: str  # folder name, or "alembic" / "roadie"
    n: int
    wall_ms: float = 0.0
    failures: int = 0  # non-zero exit or hang
    hangs: int = 0
    tracebacks: int = 0
    applied: int = 0  # roadie replicas that applied migrations / ran the command
    up_to_date_fast: int = 0  # found nothing pending before taking the lock
    up_to_date_waited: int = 0  # took the lock, found the work done
    max_lock_wait_s: float = 0.0
    applier_exit_ms: float | None = None  # when the replica that applied exited
    cpu_clients_s: float = 0.0
    cpu_server_s: float = 0.0
    state_ok: bool = True
    state: str = ""
    errors: dict[str, int] = field(default_factory=dict)  # last output line of failed runs


# --------------------------------------------------------------------------------------------
# The measurements
# --------------------------------------------------------------------------------------------

class Bench:
    def __init__(self, args):
        self.roadie = os.path.abspath(args.roadie)
        self.sqlx = os.path.abspath(args.sqlx)
        self.alembic = os.path.abspath(args.alembic)
        self.dbmate = os.path.abspath(args.dbmate) if args.dbmate else None
        self.wait_for_it = os.path.abspath(args.wait_for_it) if args.wait_for_it else None
        self.ini = os.path.abspath(args.alembic_ini)
        self.migrations = os.path.abspath(args.migrations)
        self.work = os.path.abspath(args.work)
        self.quick = args.quick
        self.seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
        self.rng = random.Random(self.seed)
        self.deadline = time.monotonic() + args.deadline
        self.true = os.path.realpath(shutil.which("true") or "/bin/true")
        self.pg_isready = f"{PGBIN}/pg_isready"
        self.port = free_port()
        self.cluster = Cluster(self.work, self.port)
        self.rundir = os.path.join(self.work, "run")
        os.makedirs(self.rundir, exist_ok=True)
        # The working directory of everything the harness starts: empty, so roadie auto-detects
        # no alembic.ini or migrations/ here.
        self.cwd = os.path.join(self.work, "cwd")
        os.makedirs(self.cwd, exist_ok=True)
        os.chdir(self.cwd)
        self.slow = os.path.join(self.work, "slow-migrations")
        # `true` under another name: roadie does not migrate when the app *is* the migrator
        # (`--migrate-command true -- true` would only wait).
        self.noop = os.path.join(self.work, "noop-migrator")
        os.symlink(self.true, self.noop)
        self.notes: list[str] = []
        self.method: list[str] = []
        self.summary: list[Summary] = []
        self.details: list[str] = []
        self.n_out = 0
        self.dbmate_dir = os.path.join(self.work, "dbmate-migrations")
        # Every raw sample, for --csv: (section, tool, run, metric, value).
        self.samples: list[tuple[str, str, int, str, float]] = []

    def record(self, section: str, tool: str, metric: str, values: list[float]) -> None:
        self.samples.extend((section, tool, i, metric, v) for i, v in enumerate(values, 1))

    def dbmate_url(self, db: str) -> str:
        # dbmate's PostgreSQL driver (lib/pq) requires SSL unless the URL says otherwise, and
        # with --wait it retries "SSL is not enabled on the server" until its timeout.
        return self.cluster.url(db) + "?sslmode=disable"

    def dbmate_argv(self, db: str, *, wait: bool, command: str = "up") -> list[str]:
        argv = [self.dbmate, "--url", self.dbmate_url(db), "--migrations-dir", self.dbmate_dir,
                "--no-dump-schema"]
        return argv + (["--wait"] if wait else []) + [command]

    def n(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    def out(self, tag: str) -> str:
        self.n_out += 1
        return os.path.join(self.rundir, f"{self.n_out:04d}-{tag}.out")

    def check_time(self, need_s: float) -> None:
        if time.monotonic() + need_s > self.deadline:
            raise BenchError("out of time (BENCH_DEADLINE): the machine is too slow or too busy")

    def env(self, url: str | None = None, **extra: str) -> dict[str, str]:
        env = dict(BASE_ENV)
        if url is not None:
            env["DATABASE_URL"] = url  # alembic's env.py reads it
        env.update(extra)
        return env

    def keep(self) -> set[int]:
        pm = self.cluster.postmaster()
        return {pm} if pm else set()

    def strays(self, where: str) -> None:
        n = reap_strays(self.keep())
        if n:
            self.notes.append(f"{where}: {n} stray process(es) came back to the harness and were killed")

    def alembic_cmd(self) -> str:
        return f"{self.alembic} -c {self.ini} upgrade head"

    def setup(self) -> None:
        log(f"initdb, server on 127.0.0.1:{self.port}")
        self.cluster.initdb()
        self.cluster.start()
        # The slow folder: 5 migrations that each sleep 50 ms, so the migration itself takes a
        # measurable time (≥ 0.25 s) and waiting replicas have something to wait for.
        os.makedirs(self.slow)
        for k in range(1, 6):
            with open(os.path.join(self.slow, f"2026010100000{k}_slow_step_{k}.sql"), "w") as f:
                f.write(f"-- bench/migrate: a migration that takes a while.\n"
                        f"CREATE TABLE slow_step_{k} (id INTEGER PRIMARY KEY, note TEXT);\n"
                        f"SELECT pg_sleep(0.05);\n")
        if self.dbmate:
            self.write_dbmate_copy()

    def write_dbmate_copy(self) -> None:
        """The sqlx folder in dbmate's format: `<version>_<name>.sql` holding `-- migrate:up`,
        the SQL, `-- migrate:down` (sqlx's `.up.sql`/`.down.sql` pairs fill both halves;
        `-- no-transaction` becomes `transaction:false`)."""
        os.makedirs(self.dbmate_dir)
        ups: dict[str, str] = {}
        downs: dict[str, str] = {}
        for name in sorted(os.listdir(self.migrations)):
            m = re.fullmatch(r"(\d+_.+?)(\.up|\.down)?\.sql", name)
            if not m:
                continue
            with open(os.path.join(self.migrations, name)) as f:
                sql = f.read()
            (downs if m.group(2) == ".down" else ups)[m.group(1)] = sql
        for stem, sql in ups.items():
            opts = " transaction:false" if sql.lstrip().startswith("-- no-transaction") else ""
            with open(os.path.join(self.dbmate_dir, stem + ".sql"), "w") as f:
                f.write(f"-- migrate:up{opts}\n{sql.rstrip()}\n\n-- migrate:down{opts}\n{downs.get(stem, '').rstrip()}\n")
        if not ups:
            raise BenchError(f"no migrations in {self.migrations} to copy for dbmate")
        self.dbmate_files = len(ups)

    # -- 1. boot overhead, native, nothing to migrate -----------------------------------------

    def boot(self) -> None:
        iters, warm = self.n(50, 8), 5
        db = "boot"
        url = self.cluster.create_db(db)
        # Migrate it once with roadie; sqlx-cli must then find nothing to do (the same table).
        o = self.out("boot-first-migrate")
        _, code = run_timed([self.roadie, "migrate", "--database-url", url, "--migrations", self.migrations],
                            self.env(), 60, o)
        if code != 0:
            raise BenchError(f"roadie migrate exited {code}: {tail(o)}")
        if not re.search(r"\d+ migrations? applied", read(o)):
            raise BenchError(f"roadie migrate did not say it applied migrations: {tail(o)}")
        o = self.out("boot-sqlx-info")
        _, code = run_timed([self.sqlx, "migrate", "info", "--source", self.migrations, "--database-url", url],
                            self.env(), 60, o)
        info = read(o)
        if code != 0 or "pending" in info.lower() or "installed" not in info.lower():
            self.notes.append(f"`sqlx migrate info` after roadie migrated (exit {code}): {tail(o, 12)}")
        script = (f"pg_isready -h 127.0.0.1 -p {self.port} -q && "
                  f"{shlex.quote(self.sqlx)} migrate run --source {shlex.quote(self.migrations)} "
                  f"--database-url {shlex.quote(url)} && exec {self.true}")
        dbmate_cmds = {}
        if self.dbmate:
            # dbmate keeps its own table: a database of its own, migrated once by dbmate.
            self.cluster.create_db("boot_dbmate")
            o = self.out("boot-dbmate-first")
            _, code = run_timed(self.dbmate_argv("boot_dbmate", wait=True), self.env(), 60, o)
            if code != 0 or "Applied:" not in read(o):
                raise BenchError(f"the first `dbmate --wait up` exited {code}: {tail(o)}")
            dbmate_script = f"{shlex.join(self.dbmate_argv('boot_dbmate', wait=True))} && exec {self.true}"
            dbmate_cmds = {
                "dbmate": ["/bin/sh", "-c", dbmate_script],
                "dbmate migrate": self.dbmate_argv("boot_dbmate", wait=False, command="migrate"),
            }
        cmds = {
            "true": [self.true],
            "pg_isready": [self.pg_isready, "-h", "127.0.0.1", "-p", str(self.port), "-q"],
            "roadie": [self.roadie, "--database-url", url, "--migrations", self.migrations, "--", self.true],
            "roadie --skip-migrations": [self.roadie, "--database-url", url, "--skip-migrations", "--", self.true],
            "roadie --migrate-command true": [self.roadie, "--database-url", url, "--migrate-command", self.noop,
                                              "--", self.true],
            "script": ["/bin/sh", "-c", script],
            **dbmate_cmds,
        }
        samples: dict[str, list[int]] = {k: [] for k in cmds}
        check = {k: self.out("boot-" + re.sub(r"\W+", "", k)) for k in cmds}
        for i in range(warm + iters):
            self.check_time(10)
            order = list(cmds)
            self.rng.shuffle(order)
            for k in order:
                # Output to a file only in the first run (checked below), /dev/null after.
                t, code = run_timed(cmds[k], self.env(), 20, check[k] if i == 0 else None)
                if code != 0:
                    o = self.out("boot-fail-" + re.sub(r"\W+", "", k))
                    _, again = run_timed(cmds[k], self.env(), 20, o)
                    raise BenchError(f"boot overhead: {k} exited {code} (again: {again}): {tail(o)}")
                if i >= warm:
                    samples[k].append(t)
        said = read(check["roadie"])
        if "schema up to date" not in said:
            raise BenchError(f"roadie did not say 'schema up to date' on the migrated database: {tail(check['roadie'])}")
        if "migration command done" not in read(check["roadie --migrate-command true"]):
            raise BenchError("roadie --migrate-command noop-migrator did not say 'migration command done': "
                             + tail(check["roadie --migrate-command true"]))
        if re.search(r"lock", said):
            self.notes.append(f"boot overhead: roadie mentioned the lock with nothing to migrate: {tail(check['roadie'])}")
        logins = self.logins(cmds)
        for k, n in logins.items():
            if isinstance(n, int):
                self.record("boot", k, "logins", [n])
        sqlx_said = read(check["script"]).strip()
        if sqlx_said:
            self.notes.append(f"boot overhead: the script printed (first run): {sqlx_said[-300:]}")
        self.cluster.drop_db(db)
        if self.dbmate:
            for k in dbmate_cmds:
                if "Applying" in read(check[k]):
                    raise BenchError(f"boot overhead: {k} applied migrations on a migrated database: {tail(check[k])}")
            self.cluster.drop_db("boot_dbmate")

        m = {k: ms(med(v)) for k, v in samples.items()}
        base = m["true"]
        over = {k: m[k] - base for k in cmds}
        for k, xs in samples.items():
            self.record("boot", k, "wall_ms", [ms(x) for x in xs])
            self.record("boot", k, "over_true_ms", [ms(x) - base for x in xs])
        ci_true = tuple(ms(x) for x in diff_ci(samples["roadie"], samples["true"], self.rng, BOOTSTRAP_ROUNDS))
        ci_script = tuple(ms(x) for x in diff_ci(samples["roadie"], samples["script"], self.rng, BOOTSTRAP_ROUNDS))
        ok_over = over["roadie"] <= GOAL_BOOT_MS
        ok_script = m["roadie"] < m["script"]
        if ok_over and ok_script:
            met = "yes"
        else:
            parts = []
            if not ok_over:
                parts.append("overhead " + verdict(False, ci_true[0] <= GOAL_BOOT_MS))
            if not ok_script:
                parts.append("slower than the script" + (", within noise" if ci_script[0] < 0 else ""))
            met = "**no**: " + "; ".join(parts)
        self.summary.append(Summary(
            "boot with nothing to migrate (native folder): wall time over bare `true`",
            f"{over['roadie']:.2f} ms", f"script {over['script']:.2f} ms",
            f"{m['roadie'] / m['script']:.2f} (wall)",
            f"≤ {GOAL_BOOT_MS:.0f} ms, and faster than the script", met))
        if self.dbmate:
            ci_dbmate = tuple(ms(x) for x in diff_ci(samples["roadie"], samples["dbmate"], self.rng, BOOTSTRAP_ROUNDS))
            faster = m["roadie"] < m["dbmate"]
            self.summary.append(Summary(
                "… the same against `dbmate --wait up` (its own copy of the migrations, already applied)",
                f"{over['roadie']:.2f} ms", f"dbmate {over['dbmate']:.2f} ms",
                f"{m['roadie'] / m['dbmate']:.2f} (wall)", "faster than dbmate",
                "yes" if faster else ("**no**, within noise" if ci_dbmate[0] < 0 else "**no**")))
        rows = [
            "### 1. Boot with nothing to migrate (native folder, database already migrated)",
            "",
            f"Wall time from posix_spawn to exit; medians of {iters} runs each after {warm} warm-up runs,"
            " the commands in a new random order in every iteration. Logins: sessions the server counted"
            " (`sum(sessions)` of `pg_stat_database`) during one more run of each, after the timed ones.",
            "",
            "| command | median ms | IQR ms | minus bare `true`, ms | logins |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        label = {
            "true": f"`{self.true}`",
            "pg_isready": "`pg_isready -h 127.0.0.1 -p PORT -q`",
            "roadie": "`roadie --database-url URL --migrations DIR -- true`",
            "roadie --skip-migrations": "`roadie --database-url URL --skip-migrations -- true` (wait stage only)",
            "script": "`sh -c 'pg_isready … -q && sqlx migrate run --source DIR --database-url URL && exec true'`",
            "roadie --migrate-command true": "`roadie --database-url URL --migrate-command noop-migrator -- true`"
                                             " (the command path, under the lock, with `true` as the migrator: for section 2)",
            "dbmate": "`sh -c 'dbmate --wait --url URL?sslmode=disable --migrations-dir DIR --no-dump-schema up && exec true'`",
            "dbmate migrate": "`dbmate --url URL?sslmode=disable --migrations-dir DIR --no-dump-schema migrate`"
                              " (bare: no wait, no create-database check, no app)",
        }
        for k in ("true", "pg_isready", "roadie --skip-migrations", "roadie", "script", "roadie --migrate-command true",
                  *dbmate_cmds):
            lo, hi = (ms(x) for x in iqr(samples[k]))
            rows.append(f"| {label[k]} | {m[k]:.2f} | {lo:.2f}–{hi:.2f} | {over[k]:.2f} | {logins[k]} |")
        rows += [
            "",
            f"- roadie − `true`: {over['roadie']:.2f} ms (95% bootstrap interval {ci_true[0]:.2f} … {ci_true[1]:.2f});"
            f" roadie − script: {m['roadie'] - m['script']:+.2f} ms ({ci_script[0]:+.2f} … {ci_script[1]:+.2f});"
            f" roadie / script (wall time): {m['roadie'] / m['script']:.2f}.",
            f"- Of roadie's overhead, the wait stage (probe login + `SELECT 1`) is"
            f" {over['roadie --skip-migrations']:.2f} ms and the migration check (a second login, reading"
            f" `_sqlx_migrations`, no lock) {m['roadie'] - m['roadie --skip-migrations']:.2f} ms.",
        ]
        if self.dbmate:
            rows += [
                f"- roadie − dbmate: {m['roadie'] - m['dbmate']:+.2f} ms ({ci_dbmate[0]:+.2f} … {ci_dbmate[1]:+.2f});"
                f" roadie / dbmate (wall time): {m['roadie'] / m['dbmate']:.2f}. dbmate (the static Go binary"
                f" of the npm package, not its node wrapper) migrates a database of its own, with the same"
                f" {self.dbmate_files} migrations in its format; it logs in {logins['dbmate']} times"
                f" (`--wait` pings first, `up` checks that the database exists) where roadie logs in"
                f" {logins['roadie']} times.",
            ]
        rows.append("")
        self.details += rows
        self.boot_medians = m
        self.boot_samples = samples

    def sessions(self) -> int:
        """Sessions the server has established so far, over all databases (PostgreSQL 14+)."""
        return int(self.cluster.psql("SELECT sum(sessions) FROM pg_stat_database").strip())

    def logins(self, cmds: dict[str, list[str]]) -> dict[str, int | str]:
        """How many sessions one run of each command opens: the change in sessions() around it,
        minus the change around nothing (the counting psql's own session)."""
        base = statistics.median(-self.sessions() + self.sessions() for _ in range(3))
        out: dict[str, int | str] = {}
        for k, argv in cmds.items():
            before = self.sessions()
            _, code = run_timed(argv, self.env(), 20)
            n = self.sessions() - before - base
            out[k] = int(n) if code == 0 else f"{int(n)} (exit {code})"
        return out

    # -- 2. alembic overhead -------------------------------------------------------------------

    def alembic_overhead(self) -> None:
        iters, warm = self.n(20, 4), 2
        db = "alembic_boot"
        url = self.cluster.create_db(db)
        env = self.env(url)
        o = self.out("alembic-first")
        _, code = run_timed([self.alembic, "-c", self.ini, "upgrade", "head"], env, 120, o)
        if code != 0:
            raise BenchError(f"the first `alembic upgrade head` exited {code}: {tail(o)}")
        cmds = {
            "alembic": [self.alembic, "-c", self.ini, "upgrade", "head"],
            # --no-alembic-shortcut: this row measures what roadie adds around running alembic
            # (the lock, the spawn). By default roadie does not start alembic at all when the
            # database is at the scripts' head: that is the "at head" row (bench/alembic_at_head.py).
            "roadie": [self.roadie, "--database-url", url, "--no-alembic-shortcut", "--migrate-command",
                       self.alembic_cmd(), "--", self.true],
            "roadie at head": [self.roadie, "--database-url", url, "--migrate-command", self.alembic_cmd(),
                               "--", self.true],
            # alembic as the app: roadie waits and supervises, but takes no lock (it does not
            # migrate first when the app is the migrator itself).
            "roadie as init": [self.roadie, "--database-url", url, "--", self.alembic, "-c", self.ini, "upgrade", "head"],
        }
        samples: dict[str, list[int]] = {k: [] for k in cmds}
        check = {k: self.out("alembic-" + re.sub(r"\W+", "", k)) for k in cmds}
        for i in range(warm + iters):
            self.check_time(30)
            order = list(cmds)
            self.rng.shuffle(order)
            for k in order:
                t, code = run_timed(cmds[k], env, 60, check[k] if i == 0 else None)
                if code != 0:
                    o = self.out("alembic-fail-" + re.sub(r"\W+", "", k))
                    _, again = run_timed(cmds[k], env, 60, o)
                    raise BenchError(f"alembic overhead: {k} exited {code} (again: {again}): {tail(o)}")
                if i >= warm:
                    samples[k].append(t)
        if "migration command done" not in read(check["roadie"]):
            raise BenchError(f"roadie did not say 'migration command done': {tail(check['roadie'])}")
        if "alembic not started" not in read(check["roadie at head"]):
            raise BenchError(f"roadie did not say 'alembic not started': {tail(check['roadie at head'])}")
        if "migrator itself" not in read(check["roadie as init"]):
            self.notes.append(f"alembic overhead: `roadie -- alembic …` did not say it skips migrating: {tail(check['roadie as init'])}")
        self.cluster.drop_db(db)
        m = {k: ms(med(v)) for k, v in samples.items()}
        added = m["roadie"] - m["alembic"]
        for k, xs in samples.items():
            self.record("alembic", k, "wall_ms", [ms(x) for x in xs])
            self.record("alembic", k, "over_alembic_ms", [ms(x) - m["alembic"] for x in xs])
        ci = tuple(ms(x) for x in diff_ci(samples["roadie"], samples["alembic"], self.rng, BOOTSTRAP_ROUNDS))
        ci_init = tuple(ms(x) for x in diff_ci(samples["roadie as init"], samples["alembic"], self.rng, BOOTSTRAP_ROUNDS))
        ci_head = tuple(ms(x) for x in diff_ci(samples["roadie at head"], samples["alembic"], self.rng, BOOTSTRAP_ROUNDS))
        self.summary.append(Summary(
            "alembic on a migrated database: time roadie adds to bare `alembic upgrade head`"
            " (`--no-alembic-shortcut`: alembic started)",
            f"{added:+.1f} ms", f"alembic {m['alembic']:.0f} ms", f"{m['roadie'] / m['alembic']:.3f}",
            f"≤ {GOAL_ALEMBIC_MS:.0f} ms", verdict(added <= GOAL_ALEMBIC_MS, ci[0] <= GOAL_ALEMBIC_MS)))
        boot = getattr(self, "boot_medians", None)
        noop_text = ""
        if boot:
            # roadie + no-op migrator + app, minus what it replaces (the migrator, then the app):
            # both are `true`, so minus two bare `true` runs.
            bs = self.boot_samples
            a, t = bs["roadie --migrate-command true"], bs["true"]
            noop = boot["roadie --migrate-command true"] - 2 * boot["true"]
            diffs = sorted(med(self.rng.choices(a, k=len(a))) - 2 * med(self.rng.choices(t, k=len(t)))
                           for _ in range(2000))
            lo, hi = ms(diffs[50]), ms(diffs[1949])
            self.summary.append(Summary(
                "… the same path with a no-op migrator (free of Python's noise): roadie + migrator + app"
                " minus migrator + app",
                f"{noop:+.1f} ms", f"`true` {boot['true']:.2f} ms", "", f"≤ {GOAL_ALEMBIC_MS:.0f} ms",
                verdict(noop <= GOAL_ALEMBIC_MS, lo <= GOAL_ALEMBIC_MS)))
            noop_text = (
                f" The same path with a no-op migrator (`--migrate-command noop-migrator`, a symlink to"
                f" `true`; section 1), free of Python's noise: {boot['roadie --migrate-command true']:.2f} ms,"
                f" against {boot['true']:.2f} ms for each bare `true`; so roadie adds {noop:.1f} ms"
                f" (95% interval {lo:.1f} … {hi:.1f}) to running the migrator and then the app itself,"
                f" or {boot['roadie --migrate-command true'] - boot['true']:.1f} ms to the migrator alone"
                f" (the comparison of the row above, which also counts the app's start).")
        label = {
            "alembic": "`alembic -c INI upgrade head`",
            "roadie": "`roadie --database-url URL --no-alembic-shortcut --migrate-command \"alembic -c INI upgrade head\" -- true`",
            "roadie at head": "`roadie --database-url URL --migrate-command \"alembic -c INI upgrade head\" -- true` (the default: at head, alembic not started)",
            "roadie as init": "`roadie --database-url URL -- alembic -c INI upgrade head` (waits, no lock: alembic is the app)",
        }
        self.details += [
            "### 2. alembic with nothing to apply",
            "",
            f"Medians of {iters} runs each after {warm} warm-up runs, interleaved in a random order;"
            " `DATABASE_URL` in the environment of all.",
            "",
            "| command | median ms | IQR ms | minus bare alembic, ms (95% interval) |",
            "| --- | ---: | ---: | ---: |",
            *[f"| {label[k]} | {m[k]:.1f} | {ms(iqr(samples[k])[0]):.1f}–{ms(iqr(samples[k])[1]):.1f} |"
              f" {m[k] - m['alembic']:+.1f}" + (f" ({c[0]:+.1f} … {c[1]:+.1f})" if c else "") + " |"
              for k, c in (("alembic", None), ("roadie", ci), ("roadie at head", ci_head), ("roadie as init", ci_init))],
            "",
            f"- roadie adds {added:+.1f} ms: its logins (the wait, then the lock's connection: a READ"
            " COMMITTED transaction with `SET LOCAL` names and keepalives and"
            " `pg_try_advisory_xact_lock`, ended after the command), and starting `true`. alembic's"
            " own run-to-run spread (IQR above) is larger than that, so the interval is wide."
            f" By default (no `--no-alembic-shortcut`) roadie reads `alembic_version` and the scripts'"
            f" heads itself and does not start alembic at head: {m['roadie at head']:.1f} ms, or"
            f" {m['alembic'] / m['roadie at head']:.0f}x faster than bare alembic."
            + noop_text,
            "",
        ]

    # -- 3. concurrent replicas, native ----------------------------------------------------------

    def server_cpu(self) -> float:
        """CPU seconds of the backends the postmaster has reaped so far (its cutime + cstime)."""
        pm = self.cluster.postmaster()
        if pm is None:
            return 0.0
        with open(f"/proc/{pm}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        # After the comm: state is field 3, cutime 16, cstime 17 (1-based, see proc(5)).
        return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")

    def at_once(self, argv: list[str], env: dict[str, str], outs: list[str], timeout_s: float,
                tr: Trial) -> tuple[list[int], dict[int, float], dict[int, int | None]]:
        """Runs one argv per output file, all released at once; fills tr's wall time and CPU.
        Returns (pids, exit time of each in ms after the release, exit codes)."""
        cpu0 = self.server_cpu()
        pids, t0 = start_at_once(argv, env, outs)
        times, codes = wait_all(pids, timeout_s)
        tr.wall_ms = ms(max(times.values()) - t0)
        time.sleep(0.2)  # the postmaster reaps the last backends
        tr.cpu_server_s = self.server_cpu() - cpu0
        tr.cpu_clients_s = sum(_cpu.get(p, 0.0) for p in pids)
        return pids, {p: ms(times[p] - t0) for p in pids}, codes

    def replicas_trial(self, folder: str, kind: str, n: int, expect_rows: int) -> Trial:
        self.check_time(90)
        db = f"rep_{self.n_out + 1}"
        url = self.cluster.create_db(db)
        logpos = self.cluster.log_size()
        argv = [self.roadie, "--database-url", url, "--migrations", folder, "--", self.true]
        outs = [self.out(f"rep-{kind}-{n}-{i}") for i in range(n)]
        tr = Trial(kind, n)
        pids, exits, codes = self.at_once(argv, self.env(), outs, 60, tr)
        for pid, o in zip(pids, outs):
            text = read(o)
            code = codes[pid]
            if code != 0:
                tr.failures += 1
                tr.hangs += code is None
                self.notes.append(f"replicas ({kind}, N={n}): a roadie "
                                  f"{'hung (killed after 60 s)' if code is None else f'exited {code}'}: {tail(o, 10)}")
            if "Traceback" in text:
                tr.tracebacks += 1
            for mm in SUMMARY.finditer(text):
                if mm.group("n"):
                    tr.applied += 1
                    tr.applier_exit_ms = exits[pid]
                    tr.max_lock_wait_s = max(tr.max_lock_wait_s, float(mm.group("w2")))
                elif mm.group("w1"):
                    tr.up_to_date_waited += 1
                    tr.max_lock_wait_s = max(tr.max_lock_wait_s, float(mm.group("w1")))
                elif mm.group("uptodate"):
                    tr.up_to_date_fast += 1
        rows = self.cluster.psql("SELECT count(*) FILTER (WHERE success), count(*) FROM _sqlx_migrations", db).strip()
        tr.state = rows
        tr.state_ok = rows == f"{expect_rows}|{expect_rows}" and tr.applied == 1
        if not tr.state_ok:
            self.notes.append(f"replicas ({kind}, N={n}): after the run _sqlx_migrations has (successful|all)"
                              f" {rows} rows, expected {expect_rows}; {tr.applied} replica(s) said they applied")
        srv = self.cluster.log_since(logpos)
        bad = [l for l in srv.splitlines() if re.search(r"\b(FATAL|PANIC)\b|too many clients", l)]
        if bad:
            self.notes.append(f"replicas ({kind}, N={n}): {len(bad)} FATAL line(s) in the server log, e.g. {bad[0][:300]}")
        self.cluster.drop_db(db)
        self.strays(f"replicas ({kind}, N={n})")
        return tr

    def replicas(self) -> None:
        ns = (1, 10, 50)
        reps = self.n(5, 1)
        folders = [("repo", self.migrations, 4), ("slow", self.slow, 5)]
        trials: list[Trial] = []
        for r in range(reps):
            plan = [(f, n) for f in folders for n in ns]
            self.rng.shuffle(plan)
            done = []
            for (kind, folder, rows), n in plan:
                tr = self.replicas_trial(folder, kind, n, rows)
                trials.append(tr)
                run = sum(1 for t in trials if t.kind == kind and t.n == n)
                self.samples += [(f"replicas-native-{kind}-N{n}", "roadie", run, "wall_ms", tr.wall_ms),
                                 (f"replicas-native-{kind}-N{n}", "roadie", run, "failed", tr.failures)]
                done.append(f"{kind} N={n} {tr.wall_ms:.0f} ms" + (f" ({tr.failures} failed)" if tr.failures else ""))
            log(f"replicas round {r + 1}/{reps}: " + ", ".join(done))
        table = [
            "### 3. N replicas at once, native migrations, fresh database each time",
            "",
            f"{reps} trial(s) per cell, interleaved in a random order. Every replica is"
            " `roadie --database-url URL --migrations DIR -- true`, started behind a gate (see Method) so"
            " that all N start at the same instant; wall time: gate opened → the last replica's exit."
            " `repo` = the repository's `migrations/` (4 files); `slow` = 5 files that each create a table"
            " and `SELECT pg_sleep(0.05)` (≥ 0.25 s of migration).",
            "",
            "| folder | N | wall ms, median (each trial) | / N=1 | failed (non-zero or hung) | replicas that applied / found it done after waiting / found it done without the lock (median per trial) | max lock wait s | `_sqlx_migrations` complete | goal | met |",
            "| --- | ---: | ---: | ---: | ---: | --- | ---: | --- | --- | --- |",
        ]
        split = [
            "",
            "Where the time goes (medians over the trials): when the replica that applied exited, what"
            " came after it (the others finding the work done), and the CPU"
            " time all replicas (with their `true`) and their server backends used; with 2 cores,"
            " CPU / 2 is a floor for the wall time.",
            "",
            f"| folder | N | applier exited, ms | then the rest, ms | CPU replicas, ms | CPU server backends, ms | (replicas + server) / {os.cpu_count()} cores, ms | the goal ({GOAL_REPLICA_RATIO}× N=1), ms |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        out_of_reach = []
        for kind, _, _ in folders:
            base = med([t.wall_ms for t in trials if t.kind == kind and t.n == 1])
            for n in ns:
                ts = [t for t in trials if t.kind == kind and t.n == n]
                w = med([t.wall_ms for t in ts])
                ratio = w / base
                fails = sum(t.failures for t in ts)
                goal = f"≤ {GOAL_REPLICA_RATIO}× N=1, 0 failed" if n > 1 else "0 failed"
                met = (ratio <= GOAL_REPLICA_RATIO or n == 1) and fails == 0
                table.append(
                    f"| {kind} | {n} | {w:.0f} ({', '.join(f'{t.wall_ms:.0f}' for t in ts)}) | {ratio:.2f} |"
                    f" {fails} of {n * len(ts)} |"
                    f" {med([t.applied for t in ts]):g} / {med([t.up_to_date_waited for t in ts]):g} / {med([t.up_to_date_fast for t in ts]):g} |"
                    f" {max(t.max_lock_wait_s for t in ts):.2f} | {'yes' if all(t.state_ok for t in ts) else '**no**'} |"
                    f" {goal} | {verdict(met)} |")
                ap = [t.applier_exit_ms for t in ts if t.applier_exit_ms is not None]
                rest = [t.wall_ms - t.applier_exit_ms for t in ts if t.applier_exit_ms is not None]
                cc, cs = med([t.cpu_clients_s * 1000 for t in ts]), med([t.cpu_server_s * 1000 for t in ts])
                floor = (cc + cs) / (os.cpu_count() or 1)
                goal_ms = GOAL_REPLICA_RATIO * base
                if n > 1 and floor > goal_ms:
                    out_of_reach.append(f"`{kind}` N={n} (CPU floor {floor:.0f} ms > goal {goal_ms:.0f} ms)")
                split.append(
                    f"| {kind} | {n} | {med(ap) if ap else float('nan'):.0f} | {med(rest) if rest else float('nan'):.0f} |"
                    f" {cc:.0f} | {cs:.0f} | {floor:.0f} | {goal_ms:.0f} |")
                if n > 1:
                    self.summary.append(Summary(
                        f"{n} replicas at once vs 1 alone, native, `{kind}` folder: wall time",
                        f"{w:.0f} ms", f"1 alone {base:.0f} ms", f"{ratio:.2f}",
                        f"≤ {GOAL_REPLICA_RATIO}×, 0 failed",
                        verdict(met) + (f" ({fails} failed)" if fails else "")))
        table += split + [
            "",
            "- Out of reach on this machine whatever the lock does, because all N replicas and the"
            " server share its cores (the CPU floor is above the goal): "
            + (", ".join(out_of_reach) if out_of_reach else "none") + ". In production the replicas"
            " run on other hosts; only the server's backends (their CPU column) share one machine.",
            "- \"Then the rest\": the replicas still waiting notice that the holder is done only at"
            " their next poll (the interval is `POLL` + jitter in src/migrate/lock.rs), plus their own"
            " exit and starting `true`; on this machine also their share of the CPU.",
            "- A replica first reads `_sqlx_migrations` without the lock (\"found it done without the"
            " lock\": nothing pending). Otherwise it polls `pg_try_advisory_lock`; the one that gets it"
            " applies (exactly one should), and the others end with \"schema up to date (another replica"
            " migrated it; lock waited …)\" (\"after waiting\"), whether they took the lock to find that"
            " out or, as roadie does since a772e8e, saw between polls that nothing was pending any"
            " more. The slowest such wait is the \"max lock wait\" column.",
            "",
        ]
        self.details += table

    def alembic_trial(self, who: str, n: int) -> Trial:
        self.check_time(150)
        db = f"alembic_{self.n_out + 1}"
        url = self.cluster.create_db(db)
        env = self.env(url, ALEMBIC_APP_SLEEP="1")
        if who == "roadie":
            argv = [self.roadie, "--database-url", url, "--migrate-command", self.alembic_cmd(), "--", self.true]
        else:
            argv = [self.alembic, "-c", self.ini, "upgrade", "head"]
        outs = [self.out(f"alembic-{who}-{i}") for i in range(n)]
        tr = Trial(who, n)
        pids, _, codes = self.at_once(argv, env, outs, 120, tr)
        for pid, o in zip(pids, outs):
            text = read(o)
            code = codes[pid]
            if code != 0:
                tr.failures += 1
                tr.hangs += code is None
                # The exception's line, e.g. "sqlalchemy.exc.IntegrityError: (psycopg.errors.UniqueViolation) ..."
                exc = re.findall(r"^[A-Za-z_][\w.]*(?:Error|Exception|Violation)\w*: .*$", text, re.M)
                last = exc or [l for l in text.strip().splitlines() if l.strip()]
                key = last[-1][:200] if last else "(no output)"
                if who == "roadie":
                    self.notes.append(f"alembic replicas: a roadie {'hung' if code is None else f'exited {code}'}: {tail(o, 12)}")
                tr.errors[key] = tr.errors.get(key, 0) + 1
            if "Traceback" in text:
                tr.tracebacks += 1
            tr.up_to_date_waited += text.count("alembic not started")
            for w in re.findall(r"alembic not started; another replica migrated it, lock waited ([0-9.]+)s", text):
                tr.max_lock_wait_s = max(tr.max_lock_wait_s, float(w))
            for mm in SUMMARY.finditer(text):
                if mm.group("ctook"):
                    tr.applied += 1
                    tr.max_lock_wait_s = max(tr.max_lock_wait_s, float(mm.group("w3")))
        try:
            head = self.cluster.psql("SELECT string_agg(version_num, ',') FROM alembic_version", db).strip()
        except BenchError as e:
            head = f"(no alembic_version: {str(e)[-120:]})"
        tr.state = head
        tr.state_ok = head == "0005"
        self.cluster.drop_db(db)
        self.strays(f"alembic replicas ({who})")
        return tr

    def replica_rounds(self, tool: str, n: int, reps: int, trial, tracebacks: bool) -> dict[str, list[Trial]]:
        """`reps` rounds of `trial(who, n)` for the bare tool and for roadie running it, in a random
        order per round; the samples recorded, one progress line per round. Trials by kind."""
        trials: list[Trial] = []
        for r in range(reps):
            order = [tool, "roadie"]
            self.rng.shuffle(order)
            done = []
            for who in order:
                tr = trial(who, n)
                trials.append(tr)
                section = f"replicas-{tool}-N{n}"
                self.samples += [(section, who, r + 1, "wall_ms", tr.wall_ms),
                                 (section, who, r + 1, "failed", tr.failures)]
                if tracebacks:
                    self.samples.append((section, who, r + 1, "tracebacks", tr.tracebacks))
                    done.append(f"{who}: {tr.failures} failed, {tr.tracebacks} tracebacks, {tr.wall_ms / 1000:.1f} s")
                else:
                    done.append(f"{who}: {tr.failures} failed, {tr.wall_ms:.0f} ms")
            log(f"{tool} replicas round {r + 1}/{reps}: " + "; ".join(done))
        return {w: [t for t in trials if t.kind == w] for w in (tool, "roadie")}

    @staticmethod
    def error_counts(trials: list[Trial]) -> dict[str, int]:
        """How often each last error line came up over `trials`."""
        errs: dict[str, int] = {}
        for t in trials:
            for k, v in t.errors.items():
                errs[k] = errs.get(k, 0) + v
        return errs

    def alembic_replicas(self) -> None:
        n, reps = 10, self.n(3, 1)
        by = self.replica_rounds("alembic", n, reps, self.alembic_trial, tracebacks=True)
        fails = {w: sum(t.failures for t in by[w]) for w in by}
        tbs = {w: sum(t.tracebacks for t in by[w]) for w in by}
        total = n * reps
        self.summary.append(Summary(
            f"{n} replicas at once on a fresh database, alembic (`ALEMBIC_APP_SLEEP=1`): replicas that exited non-zero, {reps} trials",
            f"{fails['roadie']} of {total}", f"bare alembic {fails['alembic']} of {total}", "",
            "roadie 0", verdict(fails["roadie"] == 0)))
        self.summary.append(Summary(
            "… runs whose output holds a Python `Traceback`",
            f"{tbs['roadie']} of {total}", f"bare alembic {tbs['alembic']} of {total}", "",
            "roadie 0", verdict(tbs["roadie"] == 0)))
        errs = self.error_counts(by["alembic"])
        label = {"alembic": "bare `alembic -c INI upgrade head`",
                 "roadie": "`roadie --database-url URL --migrate-command \"alembic -c INI upgrade head\" -- true`"}
        self.details += [
            f"### 4. {n} replicas at once, alembic, fresh database each time",
            "",
            f"`ALEMBIC_APP_SLEEP=1` (a run that applies revisions keeps its transaction open 1 s more),"
            f" {reps} trial(s) each, the two kinds in a random order per round. stdout and stderr of every"
            " process to one file, searched for `Traceback`.",
            "",
            "| replicas | non-zero exits per trial | with a Traceback per trial | wall s per trial (gate → all exited) | CPU s per trial (processes + server backends) | roadie: ran alembic under the lock / found it at head, alembic not started / max lock wait s | `alembic_version` afterwards |",
            "| --- | --- | --- | --- | --- | --- | --- |",
            *[f"| {label[w]} | {', '.join(str(t.failures) for t in by[w])} |"
              f" {', '.join(str(t.tracebacks) for t in by[w])} | {', '.join(f'{t.wall_ms / 1000:.1f}' for t in by[w])} |"
              f" {', '.join(f'{t.cpu_clients_s + t.cpu_server_s:.1f}' for t in by[w])} |"
              f" {', '.join(f'{t.applied} / {t.up_to_date_waited} / {t.max_lock_wait_s:.1f}' for t in by[w]) if w == 'roadie' else 'n/a'} |"
              f" {', '.join(t.state for t in by[w])} |" for w in ("alembic", "roadie")],
            "",
        ]
        if errs:
            self.details += ["Last line of the failed bare alembic runs (count):", "",
                             *[f"- {v}× `{k}`" for k, v in sorted(errs.items(), key=lambda kv: -kv[1])], ""]
        self.details += [
            "- Under roadie the ten replicas are serialised by the lock: the first runs alembic, which"
            " applies the five revisions (and sleeps 1 s); each of the others then takes the lock, reads"
            " `alembic_version`, finds it at the scripts' head and does not start alembic (the column"
            " above counts them), so the wall time is about one slow run.",
            "",
        ]

    # -- 5. concurrent replicas, dbmate ----------------------------------------------------------

    def dbmate_trial(self, who: str, n: int) -> Trial:
        self.check_time(60)
        db = f"dbmate_{self.n_out + 1}"
        self.cluster.create_db(db)
        if who == "roadie":
            argv = [self.roadie, "--database-url", self.cluster.url(db), "--migrate-command",
                    shlex.join(self.dbmate_argv(db, wait=False)), "--", self.true]
        else:
            argv = self.dbmate_argv(db, wait=True)
        outs = [self.out(f"dbmate-{who}-{i}") for i in range(n)]
        tr = Trial(who, n)
        pids, _, codes = self.at_once(argv, self.env(), outs, 60, tr)
        for pid, o in zip(pids, outs):
            text = read(o)
            code = codes[pid]
            if code != 0:
                tr.failures += 1
                tr.hangs += code is None
                errs = re.findall(r"^Error: .*$", text, re.M)
                key = errs[-1][:200] if errs else (text.strip().splitlines() or ["(no output)"])[-1][:200]
                if who == "roadie":
                    self.notes.append(f"dbmate replicas: a roadie {'hung' if code is None else f'exited {code}'}: {tail(o, 12)}")
                tr.errors[key] = tr.errors.get(key, 0) + 1
            if "Applying:" in text:
                tr.applied += 1
            for mm in SUMMARY.finditer(text):
                if mm.group("ctook"):
                    tr.max_lock_wait_s = max(tr.max_lock_wait_s, float(mm.group("w3")))
        try:
            rows = self.cluster.psql("SELECT count(*) FROM schema_migrations", db).strip()
        except BenchError as e:
            rows = f"(no schema_migrations: {str(e)[-120:]})"
        tr.state = rows
        tr.state_ok = rows == str(self.dbmate_files)
        self.cluster.drop_db(db)
        self.strays(f"dbmate replicas ({who})")
        return tr

    def dbmate_replicas(self) -> None:
        if not self.dbmate:
            return
        n, reps = 10, self.n(3, 1)
        by = self.replica_rounds("dbmate", n, reps, self.dbmate_trial, tracebacks=False)
        fails = {w: sum(t.failures for t in by[w]) for w in by}
        total = n * reps
        self.summary.append(Summary(
            f"{n} replicas at once on a fresh database, dbmate: replicas that exited non-zero, {reps} trials",
            f"{fails['roadie']} of {total} (roadie running `dbmate up` under its lock)",
            f"bare `dbmate --wait up` {fails['dbmate']} of {total}", "", "roadie 0", verdict(fails["roadie"] == 0)))
        errs = self.error_counts(by["dbmate"])
        label = {"dbmate": "bare `dbmate --wait --url URL --migrations-dir DIR --no-dump-schema up`",
                 "roadie": "`roadie --database-url URL --migrate-command \"dbmate --url URL --migrations-dir DIR"
                           " --no-dump-schema up\" -- true`"}
        self.details += [
            f"### 5. {n} replicas at once, dbmate, fresh database each time",
            "",
            f"{reps} trial(s) each, the two kinds in a random order per round; the {self.dbmate_files}"
            " migrations of section 1 in dbmate's format. dbmate takes no lock of its own on PostgreSQL:"
            " the replicas race to apply the same files, and every loser exits with the server's error.",
            "",
            "| replicas | non-zero exits per trial | wall ms per trial (gate → all exited) | replicas that applied a migration (printed `Applying:`) per trial | `schema_migrations` rows afterwards |",
            "| --- | --- | --- | --- | --- |",
            *[f"| {label[w]} | {', '.join(str(t.failures) for t in by[w])} |"
              f" {', '.join(f'{t.wall_ms:.0f}' for t in by[w])} | {', '.join(str(t.applied) for t in by[w])} |"
              f" {', '.join(t.state for t in by[w])} |" for w in ("dbmate", "roadie")],
            "",
        ]
        if errs:
            self.details += ["Last `Error:` line of the failed bare dbmate runs (count):", "",
                             *[f"- {v}× `{k}`" for k, v in sorted(errs.items(), key=lambda kv: -kv[1])], ""]

    # -- 6. a wrong password -------------------------------------------------------------------

    def wrong_password(self) -> None:
        """Each waiter once against the running server with a wrong password for `app`: does it
        say so and stop, wait until a timeout, or start the app?"""
        self.check_time(60)
        db = "wrong_password"
        self.cluster.create_db(db)
        good = self.cluster.url(db)
        bad = good.replace(f":{self.cluster.password}@", ":not-the-password@")
        if bad == good:
            raise BenchError("wrong password: could not make a bad URL")
        app = "echo app-started"
        isready = f"pg_isready -h 127.0.0.1 -p {self.port} -q"
        timeout = 5
        cases: dict[str, tuple[str, list[str]]] = {
            "roadie": (f"`roadie --wait-timeout {timeout}s --database-url URL --migrations DIR -- APP`",
                       [self.roadie, "--wait-timeout", f"{timeout}s", "--database-url", bad,
                        "--migrations", self.migrations, "--", "/bin/sh", "-c", app]),
            "classic": ("`sh -c 'until pg_isready …; do sleep 1; done; exec APP'`",
                        ["/bin/sh", "-c", f"until {isready}; do sleep 1; done; exec {app}"]),
            "script": ("`sh -c 'pg_isready … && sqlx migrate run --database-url URL … && exec APP'`",
                       ["/bin/sh", "-c", f"{isready} && {shlex.quote(self.sqlx)} migrate run --source"
                        f" {shlex.quote(self.migrations)} --database-url {shlex.quote(bad)} && exec {app}"]),
        }
        if self.wait_for_it:
            cases["wait-for-it"] = ("`wait-for-it -q -t 0 127.0.0.1:PORT -- APP`",
                                    [self.wait_for_it, "-q", "-t", "0", f"127.0.0.1:{self.port}", "--",
                                     "/bin/sh", "-c", app])
        if self.dbmate:
            argv = self.dbmate_argv(db, wait=True)
            argv[argv.index("--url") + 1] = bad + "?sslmode=disable"
            argv[-1:-1] = ["--wait-timeout", f"{timeout}s"]
            cases["dbmate"] = (f"`sh -c 'dbmate --wait --wait-timeout {timeout}s --url URL … up && exec APP'`",
                               ["/bin/sh", "-c", f"{shlex.join(argv)} && exec {app}"])
        rows = [
            "### 6. A wrong password",
            "",
            f"Each once, against the running server, with a wrong password for the role in the URL;"
            f" a {timeout} s wait timeout where the tool has one. APP = `sh -c 'echo app-started'`.",
            "",
            "| waiter | exit code | seconds | started the app | last line it printed |",
            "| --- | ---: | ---: | --- | --- |",
        ]
        for k, (label, argv) in cases.items():
            o = self.out(f"wrongpw-{k}")
            t, code = run_timed(argv, self.env(), timeout + 15, o)
            text = read(o)
            started = "app-started" in text
            last = [l for l in text.strip().splitlines() if l.strip() and l.strip() != "app-started"]
            said = last[-1].replace(self.cluster.password, "***").replace("|", "\\|")[:160] if last else ""
            self.samples += [("wrong-password", k, 1, "exit_code", -1 if code is None else code),
                             ("wrong-password", k, 1, "seconds", t / 1e9),
                             ("wrong-password", k, 1, "app_started", int(started))]
            rows.append(f"| {label} | {'hung' if code is None else code} | {t / 1e9:.2f} |"
                        f" {'**yes**' if started else 'no'} | `{said}` |")
            if k == "roadie":
                self.summary.append(Summary(
                    "wrong password: roadie gives up at once (69), naming the cause; the app is not started",
                    f"exit {code} in {t / 1e9:.2f} s", "see section 6", "", "exit 69 in < 1 s, no app",
                    verdict(code == 69 and t / 1e9 < 1 and not started)))
        self.cluster.drop_db(db)
        self.details += rows + [""]

    def cleanup(self) -> None:
        for pid in list(_live):
            kill_and_reap(pid)
        try:
            self.cluster.stop("immediate")
        except BenchError as e:
            log(f"cleanup: {e}")
        reap_strays(set())


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

def report(b: Bench, commit: str, load_before: str, elapsed: float) -> str:
    size = os.path.getsize(b.roadie)
    out = [
        "# Migrations: roadie vs sqlx-cli, dbmate and alembic, PostgreSQL 15",
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"- kernel: {platform.release()} ({platform.machine()})",
        f"- CPU: {cpu_model()}, {os.cpu_count()} cores",
        f"- PostgreSQL: {b.cluster.version.split(' on ')[0]}, 127.0.0.1:{b.port}, `fsync=off`,"
        " `max_connections = 300`, role `app` (owner of each database) logs in with SCRAM-SHA-256 over TCP",
        f"- roadie: {version_of([b.roadie, '--version'], BASE_ENV, timeout_s=10)}, {commit}, static binary {size:,} bytes, default log level (info)",
        f"- sqlx-cli: {version_of([b.sqlx, '--version'], BASE_ENV, timeout_s=10)} (`--no-default-features --features postgres,rustls`)",
        *([f"- dbmate: {version_of([b.dbmate, '--version'], BASE_ENV, timeout_s=10)} (the npm package's static Go binary, run directly)"]
          if b.dbmate else []),
        f"- alembic: {version_of([b.alembic, '--version'], BASE_ENV, timeout_s=10)}, SQLAlchemy + psycopg 3 (tests/requirements.txt),"
        f" the 5-revision app of tests/blackbox/apps/alembic",
        f"- harness: Python {platform.python_version()}, random order seed {b.seed}"
        + (", QUICK mode (fewer runs: numbers are rough)" if b.quick else ""),
        f"- load average (1/5/15 min) before: {load_before}, after: {loadavg()}"
        " (other work on the machine adds noise to the timing rows)",
        f"- total benchmark time: {elapsed:.0f} s",
        "",
        "## Summary",
        "",
        "| measurement | roadie | compared with | roadie / compared | goal | met |",
        "| --- | ---: | ---: | ---: | --- | --- |",
        *[f"| {s.name} | {s.roadie} | {s.other} | {s.ratio} | {s.goal} | {s.met} |" for s in b.summary],
        "",
        "\"no, within noise\": the median misses the goal, but the 95% bootstrap interval still reaches it.",
        "",
        "## Details",
        "",
        *b.details,
        "## Method",
        "",
        "- One server for the whole run: `initdb --no-sync --auth-host=scram-sha-256 --auth-local=peer`,"
        " started with `pg_ctl start -l LOG -o '-h 127.0.0.1 -p PORT -k SOCKDIR -c fsync=off'`;"
        " `max_connections = 300` in postgresql.conf for all rows (50 replicas × up to 3 connections)."
        " Every measurement gets its own database (`CREATE DATABASE … OWNER app`, made and dropped"
        " by the harness through psql on the Unix socket, outside the timed window).",
        "- URL: `postgres://app:PASSWORD@127.0.0.1:PORT/DB`. Everything runs with an empty working"
        " directory (so roadie auto-detects no `alembic.ini` or `migrations/`), stdin on /dev/null,"
        " `PATH` with PostgreSQL's bin directory first (the real `pg_isready`, not Debian's Perl wrapper).",
        "- Timing: `time.perf_counter_ns` around posix_spawn → the pidfd reporting the exit.",
        "- \"At once\" (sections 3 and 4): each process is spawned as `sh -c 'read _; exec \"$@\" </dev/null'"
        " gate CMD…` with its stdin on a pipe whose write end only the harness holds; once every one"
        " sits in read(2) (/proc/PID/syscall), the harness closes the write end and all exec their"
        " command at the same instant, which is when the wall time starts. The `sh` costs every"
        " replica alike (N=1 included), about 1 ms.",
        "- CPU: each process's user + system time from wait4(2) (its reaped children included); the"
        " server backends' from the postmaster's cutime + cstime in /proc (10 ms ticks), read before"
        " the gate opens and 0.2 s after the last exit.",
        "- The migrations are copies taken at the start of the run (the repository's `migrations/`, the"
        " alembic app), and roadie is a copy of the binary, so edits during the run change nothing.",
    ]
    if b.notes:
        out += ["", "## Notes", "", *[f"- {n}" for n in b.notes]]
    out.append("")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--roadie", required=True)
    ap.add_argument("--sqlx", required=True, help="sqlx-cli's `sqlx` binary")
    ap.add_argument("--alembic", required=True, help="the venv's `alembic`")
    ap.add_argument("--alembic-ini", required=True)
    ap.add_argument("--migrations", required=True, help="a sqlx-format folder (the repo's migrations/)")
    ap.add_argument("--work", required=True, help="an empty directory for the cluster and run files")
    ap.add_argument("--out", required=True, help="markdown file to write")
    ap.add_argument("--csv", help="CSV file for the per-run samples (section,tool,run,metric,value)")
    ap.add_argument("--dbmate", help="dbmate's binary: adds it to sections 1, 5 and 6")
    ap.add_argument("--wait-for-it", help="Debian's wait-for-it: adds it to section 6")
    ap.add_argument("--roadie-commit", default="commit unknown")
    ap.add_argument("--quick", action="store_true", help="few runs, for trying the script")
    ap.add_argument("--deadline", type=float, default=570, help="seconds for the whole run")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()

    if os.geteuid() != 0:
        raise BenchError("needs root (runuser -u postgres)")

    harness.stop_on_signals()
    harness.become_child_subreaper()

    b = Bench(args)
    started = time.monotonic()
    load_before = loadavg()
    try:
        b.setup()
        steps = [
            ("boot overhead, nothing to migrate", b.boot),
            ("alembic overhead", b.alembic_overhead),
            ("concurrent replicas, native", b.replicas),
            ("concurrent replicas, alembic", b.alembic_replicas),
            *([("concurrent replicas, dbmate", b.dbmate_replicas)] if b.dbmate else []),
            ("wrong password", b.wrong_password),
        ]
        for name, step in steps:
            t = time.monotonic()
            log(f"{name} ...")
            step()
            b.strays(name)
            log(f"{name} done in {time.monotonic() - t:.1f} s")
    finally:
        b.cleanup()
    text = report(b, args.roadie_commit, load_before, time.monotonic() - started)
    if args.csv:
        harness.write_samples(args.csv, b.samples)
    harness.write_report(text, args.out)
    return 0


if __name__ == "__main__":
    harness.exit_with(main)
