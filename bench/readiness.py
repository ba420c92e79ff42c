#!/usr/bin/env python3
"""Readiness-detection harness for bench/readiness: roadie side by side with two pg_isready
loops and wait-for-it, over cold starts of a real PostgreSQL 15.

Called by bench/readiness (which builds roadie and compiles stamp.c); it can also be run by
hand, as root:

    python3 bench/readiness.py --roadie PATH --stamp PATH --work DIR --out FILE [--rounds N] \\
        [--wait-for-it /usr/bin/wait-for-it]

One run: the waiter starts first while the server is down; after a random delay of 0.5-1.5 s
the harness starts the (initdb'd, stopped) cluster with `pg_ctl start`; the waiter notices, and
starts the app (bench/stamp.c), which writes its own start time. The latency of the run is
that time minus the time in the server's "database system is ready to accept connections" log
line (log_line_prefix '%n ': Unix epoch with milliseconds). Then the server is stopped with
`pg_ctl stop -m fast`. Every round runs the waiters in a new random order.

wait-for-it checks only that the port accepts a TCP connection. PostgreSQL listens a few ms
before it is ready after a clean shutdown (for the whole WAL replay after a crash); a login then
gets 57P03, "the database system is starting up". A check that lands in that window starts the
app before the ready line: a negative latency, counted as "too early".

The harness is a child subreaper: the postmaster (daemonized by pg_ctl) and anything a waiter
leaves behind come back to it; on exit (or SIGINT/SIGTERM) it stops the server with
`pg_ctl stop -m immediate` and kills and reaps every child left. It never leaves a process.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import re
import secrets
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

# harness.py sits next to this file; python3 puts the script's directory on sys.path, but not
# under -P or PYTHONSAFEPATH.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (BenchError, cpu_model, free_port, log, loadavg, percentile,  # noqa: E402
                    positive_ratio, reap_strays, reap_zombies, version_of)

PGBIN = harness.PGBIN
ALL_WAITERS = ("roadie", "classic", "tight", "wait-for-it", "dbmate")
WAITERS = ALL_WAITERS  # without --wait-for-it or --dbmate, those are left out (see main)
LABEL = {
    "roadie": "roadie",
    "classic": "classic script (`sleep 1`)",
    "tight": "tight script (`sleep 0.1`)",
    "wait-for-it": "wait-for-it (TCP only)",
    "dbmate": "`dbmate wait` (a login a second)",
}
# Two ways the server comes up: after a clean shutdown (`pg_ctl stop -m fast`), and after a
# crash (`pg_ctl stop -m immediate` right after some writes), when it replays the WAL with its
# port open and answers every login 57P03 ("the database system is starting up") until done.
KINDS = ("clean", "crash")
KIND_LABEL = {"clean": "clean start (after `pg_ctl stop -m fast`)",
              "crash": "start after a crash (`pg_ctl stop -m immediate` after writes: WAL replay)"}
# PGBIN first: `pg_isready` in the scripts is PostgreSQL's own binary, not Debian's Perl
# wrapper /usr/bin/pg_isready (which costs ~30 ms of Perl start-up per call).
ENV = {"PATH": f"{PGBIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
READY_LOG = re.compile(r"^(\d+)\.(\d{3}) .*database system is ready to accept connections", re.M)
LISTEN_LOG = re.compile(r"^(\d+)\.(\d{3}) .*listening on IPv4 address", re.M)
CONN_LOG = re.compile(r"^(\d+)\.(\d{3}) .*connection received: host=127\.0\.0\.1", re.M)
ROADIE_READY = re.compile(r"ready in ([0-9.]+)s after (\d+) attempts?(?: and (\d+) port checks?)?")

GOAL_MEDIAN_MS = 25.0
GOAL_P95_MS = 40.0
GOAL_RATE = 20.0  # logins the server sees per second, but in roadie's 0.3 s window after a 57P03
# The crash runs' writes: about 25 MB of WAL for the server to replay after the immediate stop.
CRASH_WRITES = ("DROP TABLE IF EXISTS filler; CREATE TABLE filler AS"
                " SELECT g, md5(g::text) AS h FROM generate_series(1, 200000) g")


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------

def as_postgres(argv: list[str], timeout_s: float, what: str) -> str:
    """Runs a server tool as the postgres user; returns its output. Output goes to a file, not
    a pipe: a daemon that inherited a pipe would hold it open forever."""
    with open(os.devnull, "rb") as devnull, _TempOut() as out:
        try:
            r = subprocess.run(
                ["runuser", "-u", "postgres", "--", *argv],
                stdin=devnull, stdout=out.f, stderr=subprocess.STDOUT, env=ENV, timeout=timeout_s,
            )
        except subprocess.TimeoutExpired:
            raise BenchError(f"{what}: no exit within {timeout_s:g} s") from None
        text = out.read()
    if r.returncode != 0:
        raise BenchError(f"{what} exited {r.returncode}: {text.strip()[-800:]}")
    return text


class _TempOut:
    def __enter__(self):
        import tempfile
        self.f = tempfile.TemporaryFile()
        return self

    def read(self) -> str:
        self.f.seek(0)
        return self.f.read().decode(errors="replace")

    def __exit__(self, *exc):
        self.f.close()


# --------------------------------------------------------------------------------------------
# The cluster
# --------------------------------------------------------------------------------------------

class Cluster:
    def __init__(self, work: str, port: int):
        self.dir = os.path.join(work, "pg")  # owned by postgres: data, socket, logs
        self.data = os.path.join(self.dir, "data")
        self.sock = os.path.join(self.dir, "sock")
        self.port = port
        self.password = secrets.token_hex(16)

    def initdb(self) -> None:
        harness.initdb(as_postgres, self.dir, self.data, self.sock, self.password,
                       "\n# bench/readiness\nlog_line_prefix = '%n '\nlogging_collector = off\n"
                       "log_connections = on\n")

    def url(self) -> str:
        return f"postgres://postgres:{self.password}@127.0.0.1:{self.port}/postgres"

    def options(self) -> str:
        return f"-h 127.0.0.1 -p {self.port} -k {self.sock} -c fsync=off"

    def start(self, logfile: str) -> None:
        # -l is essential: without it the postmaster keeps pg_ctl's stdout and stderr.
        as_postgres([f"{PGBIN}/pg_ctl", "start", "-D", self.data, "-l", logfile, "-w", "-t", "30",
                     "-s", "-o", self.options()], 40, "pg_ctl start")

    def running(self) -> bool:
        return os.path.exists(os.path.join(self.data, "postmaster.pid"))

    def stop(self, mode: str = "fast") -> None:
        as_postgres([f"{PGBIN}/pg_ctl", "stop", "-D", self.data, "-m", mode, "-w", "-t", "30", "-s"],
                    40, f"pg_ctl stop -m {mode}")
        reap_zombies()  # the postmaster came back to the harness (subreaper) when pg_ctl exited

    def psql(self, sql: str) -> None:
        """Runs SQL as postgres over the socket (peer authentication)."""
        as_postgres([f"{PGBIN}/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.sock, "-p",
                     str(self.port), "-d", "postgres", "-c", sql], 60, "psql")


def port_refuses(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        try:
            s.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return True
        except OSError:
            return True
        return False


# --------------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------------

@dataclass
class Run:
    waiter: str
    kind: str  # clean | crash
    round: int
    delay_s: float
    latency_ms: float  # server ready (log line) -> app's own start time
    failed: int  # failed attempts before success
    window_s: float  # waiter start -> server ready
    startup_ms: float  # pg_ctl start issued -> server ready (log line)
    rate: float  # failed / window_s
    # Server ready -> the successful attempt reaches the server (the last connection it logs
    # before the app started), and that connection -> app started; log_connections, ms resolution.
    poll_ms: float | None = None
    finish_ms: float | None = None
    roadie_says: tuple[float, int] | None = None  # roadie's own "ready in Xs after N attempts"
    starting_up: int = 0  # roadie's attempts answered "the database system is starting up"
    failed_after_ready: int = 0  # connections logged after the ready line that were not the successful one
    listen_ms: float | None = None  # the server's "listening on IPv4" line -> its ready line
    server_logins: int = 0  # TCP connections the server logged (log_connections), all of the run
    logins_before_ready: int = 0  # ... of which before its ready line (refused 57P03)
    most_logins_1s: int = 0  # the most of them in any one second [t, t + 1 s)
    port_checks: int | None = None  # roadie: bare connects the kernel refused ("M port checks")

    @property
    def too_early(self) -> bool:
        """The app started before the server's ready line: its first login would get 57P03."""
        return self.latency_ms < 0


def read_epoch_ns(text: str) -> int:
    sec, _, frac = text.strip().partition(".")
    return int(sec) * 10**9 + int(frac.ljust(9, "0")[:9])


class Bench:
    def __init__(self, args):
        self.roadie = os.path.abspath(args.roadie)
        self.stamp_link = args.stamp_link
        self.stamp = os.path.abspath(args.stamp)
        self.wait_for_it = args.wait_for_it
        self.dbmate = args.dbmate
        self.kinds = KINDS if args.kinds == "both" else (args.kinds,)
        self.work = os.path.abspath(args.work)
        self.rounds = args.rounds
        self.warmup = args.warmup
        self.seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
        self.rng = random.Random(self.seed)
        self.deadline = time.monotonic() + args.deadline
        self.port = free_port()
        self.cluster = Cluster(self.work, self.port)
        self.rundir = os.path.join(self.work, "run")
        os.makedirs(self.rundir, exist_ok=True)
        self.stamp_file = os.path.join(self.rundir, "app.stamp")
        self.count_file = os.path.join(self.rundir, "attempts")
        self.pgid_file = os.path.join(self.rundir, "waiter.pgid")
        # The waiters' working directory: empty, so a roadie that looks for migrations to run
        # (alembic.ini, migrations/) in its working directory finds none and only waits.
        self.cwd = os.path.join(self.work, "cwd")
        os.makedirs(self.cwd, exist_ok=True)
        self.migrated = 0  # roadie runs that ran a migrate stage anyway
        self.runs: list[Run] = []
        self.notes: list[str] = []
        self.proc: subprocess.Popen | None = None
        self.n = 0

    def argv(self, waiter: str) -> list[str]:
        app = [self.stamp, self.stamp_file]
        if waiter == "roadie":
            return [self.roadie, "--log-level", "debug", "--database-url", self.cluster.url(), "--", *app]
        if waiter == "wait-for-it":
            # -t 0: wait with no timeout (and no `timeout` wrapper process). Debian's script runs
            # unmodified, so its attempts are not counted.
            return [self.wait_for_it, "-q", "-t", "0", f"127.0.0.1:{self.port}", "--", *app]
        if waiter == "dbmate":
            # Its PostgreSQL driver (lib/pq) requires SSL unless told otherwise (bench/migrate).
            script = (f"{shlex.quote(self.dbmate)} --url {shlex.quote(self.cluster.url() + '?sslmode=disable')}"
                      f" wait >/dev/null && exec {shlex.join(app)}")
            return ["/bin/sh", "-c", script]
        pause = {"classic": "1", "tight": "0.1"}[waiter]
        # `echo >> FILE` (a dash builtin: no fork) counts the loop's iterations.
        script = (f"until echo >> {shlex.quote(self.count_file)}; pg_isready -h 127.0.0.1 -p {self.port} -q;"
                  f" do sleep {pause}; done; exec {shlex.join(app)}")
        return ["/bin/sh", "-c", script]

    def script_text(self, waiter: str) -> str:
        if waiter == "wait-for-it":
            return "wait-for-it -q -t 0 127.0.0.1:PORT -- APP"
        if waiter == "dbmate":
            return "sh -c 'dbmate --url postgres://postgres:***@127.0.0.1:PORT/postgres?sslmode=disable wait && exec APP'"
        pause = {"classic": "1", "tight": "0.1"}[waiter]
        return f"sh -c 'until pg_isready -h 127.0.0.1 -p PORT -q; do sleep {pause}; done; exec APP'"

    def check_time(self, need_s: float) -> None:
        if time.monotonic() + need_s > self.deadline:
            raise BenchError("out of time (BENCH_DEADLINE): the machine is too slow or too busy")

    # -- the app's own overhead --------------------------------------------------------------

    def stamp_overhead(self, n: int = 40) -> list[float]:
        """posix_spawn of the app -> the time it writes, in ms."""
        out = []
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            for _ in range(n):
                try:
                    os.unlink(self.stamp_file)
                except FileNotFoundError:
                    pass
                t0 = time.time_ns()
                pid = os.posix_spawn(self.stamp, [self.stamp, self.stamp_file], ENV,
                                     file_actions=[(os.POSIX_SPAWN_DUP2, devnull, 0),
                                                   (os.POSIX_SPAWN_DUP2, devnull, 1)])
                _, status = os.waitpid(pid, 0)
                if os.waitstatus_to_exitcode(status) != 0:
                    raise BenchError("the stamp app failed")
                with open(self.stamp_file) as f:
                    out.append((read_epoch_ns(f.read()) - t0) / 1e6)
        finally:
            os.close(devnull)
        return out

    # -- one run -----------------------------------------------------------------------------

    def crash(self) -> None:
        """Leaves the server down after a crash: started, written to, stopped immediately (no
        checkpoint), so its next start replays the WAL."""
        self.cluster.start(os.path.join(self.cluster.dir, f"before-crash-{self.n:03d}.log"))
        self.cluster.psql(CRASH_WRITES)
        self.cluster.stop("immediate")

    def run_once(self, waiter: str, rnd: int, kind: str) -> Run:
        self.n += 1
        self.check_time(25)
        if self.cluster.running():
            raise BenchError("the server is still running before a run")
        if kind == "crash":
            self.crash()
        for p in (self.stamp_file, self.count_file):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
        logfile = os.path.join(self.cluster.dir, f"server-{self.n:03d}.log")
        delay = self.rng.uniform(0.5, 1.5)
        errfile = os.path.join(self.rundir, f"{waiter}-{self.n:03d}.stderr")

        def tail() -> str:
            with open(errfile, errors="replace") as f:
                return " | ".join(f.read().splitlines()[-5:])

        t0 = time.time_ns()
        with open(errfile, "wb") as err:
            # Its own process group, whose id bench/readiness finds in waiter.pgid: if the harness
            # is SIGKILLed, the entry point still kills the waiter and whatever it runs.
            self.proc = p = subprocess.Popen(self.argv(waiter), stdin=subprocess.DEVNULL,
                                             stdout=subprocess.DEVNULL, stderr=err, env=ENV,
                                             cwd=self.cwd, process_group=0)
        with open(self.pgid_file, "w") as f:
            f.write(f"{p.pid}\n")
        time.sleep(max(0.0, t0 / 1e9 + delay - time.time()))
        if p.poll() is not None:
            raise BenchError(f"{waiter} exited {p.returncode} before the server started: {tail()}")
        t_pg = time.time_ns()
        self.cluster.start(logfile)
        try:
            code = p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise BenchError(f"{waiter} did not start the app within 15 s of the server's start: {tail()}") from None
        finally:
            self.proc = None
            os.unlink(self.pgid_file)
        self.cluster.stop("fast")
        strays, _exited = reap_strays()
        if strays:
            self.notes.append(f"run {self.n} ({waiter}): {strays} stray process(es) killed after the run")

        with open(logfile) as f:
            server_log = f.read()
        m = READY_LOG.search(server_log)
        if not m:
            raise BenchError(f"no 'ready to accept connections' line in {logfile}")
        t_ready = int(m.group(1)) * 10**9 + int(m.group(2)) * 10**6
        lm = LISTEN_LOG.search(server_log)
        t_listen = int(lm.group(1)) * 10**9 + int(lm.group(2)) * 10**6 if lm else None
        conns = [int(c.group(1)) * 10**9 + int(c.group(2)) * 10**6
                 for c in CONN_LOG.finditer(server_log, m.end())]
        every_conn = [int(c.group(1)) * 10**9 + int(c.group(2)) * 10**6
                      for c in CONN_LOG.finditer(server_log)]
        if code != 0:
            raise BenchError(f"{waiter} exited {code}: {tail()}")
        try:
            with open(self.stamp_file) as f:
                t_app = read_epoch_ns(f.read())
        except FileNotFoundError:
            raise BenchError(f"{waiter} exited 0 but the app wrote no stamp") from None

        window_s = (t_ready - t0) / 1e9
        run = Run(waiter, kind, rnd, delay, (t_app - t_ready) / 1e6, 0, window_s,
                  (t_ready - t_pg) / 1e6, 0.0)
        run.server_logins = len(every_conn)
        run.logins_before_ready = sum(1 for t in every_conn if t < t_ready)
        run.most_logins_1s = max((sum(1 for u in every_conn if t <= u < t + 10**9) for t in every_conn),
                                 default=0)
        if t_listen is not None:
            run.listen_ms = (t_ready - t_listen) / 1e6
        before_app = [t for t in conns if t <= t_app]
        if before_app:
            t_conn = before_app[-1]
            run.failed_after_ready = len(before_app) - 1
            run.poll_ms = (t_conn - t_ready) / 1e6
            run.finish_ms = (t_app - t_conn) / 1e6
        elif not run.too_early:
            self.notes.append(f"run {self.n} ({waiter}): no connection logged between the ready line and the app")
        if waiter == "roadie":
            with open(errfile, errors="replace") as f:
                lines = f.read().splitlines()
            run.starting_up = sum(1 for l in lines if "57P03" in l)
            if any(re.search(r"migrations? applied|schema up to date|migration lock", l) for l in lines):
                self.migrated += 1
            ready = [mm for mm in map(ROADIE_READY.search, lines) if mm]
            if not ready:
                raise BenchError(f"roadie printed no 'ready in ... after N attempts' line: {tail()}")
            said = (float(ready[0].group(1)), int(ready[0].group(2)))
            run.roadie_says = said
            run.port_checks = int(ready[0].group(3) or 0)
            # Its failed attempts: logins (the first one, before the port was known to be
            # closed, and those answered 57P03) and bare connects.
            run.failed = said[1] - 1 + run.port_checks
        elif waiter in ("wait-for-it", "dbmate"):
            run.failed = -1  # not counted: the peers run unmodified
        else:
            with open(self.count_file) as f:
                run.failed = len(f.read().splitlines()) - 1
        run.rate = run.failed / window_s if window_s > 0 and run.failed >= 0 else float("nan")
        if run.too_early and waiter != "wait-for-it":
            self.notes.append(f"run {self.n} ({waiter}): the app started {-run.latency_ms:.1f} ms"
                              " *before* the server's ready line")
        return run

    def run_all(self) -> None:
        log(f"initdb (port {self.port})")
        self.cluster.initdb()
        if not port_refuses(self.port):
            raise BenchError(f"something already listens on 127.0.0.1:{self.port}")
        self.overhead = self.stamp_overhead()
        total = self.warmup + self.rounds
        for rnd in range(1, total + 1):
            order = [(w, k) for w in WAITERS for k in self.kinds]
            self.rng.shuffle(order)
            done = []
            for w, k in order:
                r = self.run_once(w, rnd, k)
                if rnd > self.warmup:
                    self.runs.append(r)
                done.append(f"{w}/{k} {r.latency_ms:.0f} ms")
            tag = "warm-up" if rnd <= self.warmup else f"round {rnd - self.warmup}/{self.rounds}"
            log(f"{tag}: " + ", ".join(done))

    def cleanup(self) -> None:
        p = self.proc
        if p is not None:
            try:
                os.killpg(p.pid, signal.SIGKILL)  # the waiter and what it runs (sleep, pg_isready)
            except ProcessLookupError:
                pass
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.unlink(self.pgid_file)
            except FileNotFoundError:
                pass
        if self.cluster.running():
            try:
                self.cluster.stop("immediate")
            except BenchError as e:
                log(f"cleanup: {e}")
        reap_strays()


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

def deb_version(package: str) -> str:
    try:
        r = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Version}", package],
                           capture_output=True, text=True, timeout=5, env=ENV)
        return r.stdout.strip() or "not a Debian package"
    except Exception as e:  # noqa: BLE001 - informational only
        return f"unknown ({e})"


def report(b: Bench, commit: str, load_before: str, elapsed: float) -> str:
    ov = b.overhead
    size = os.path.getsize(b.roadie)
    startup = [r.startup_ms for r in b.runs]

    def mmm(xs: list[float | None]) -> str:
        xs = [x for x in xs if x is not None]
        if not xs:
            return "n/a"
        return f"{statistics.median(xs):.1f} / {percentile(xs, 95):.1f} / {max(xs):.1f}"

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    out = [
        "# Readiness detection: roadie vs pg_isready loops, wait-for-it and dbmate, PostgreSQL cold starts",
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"- kernel: {platform.release()} ({platform.machine()})",
        f"- CPU: {cpu_model()}, {os.cpu_count()} cores",
        f"- PostgreSQL: {version_of([PGBIN + '/postgres', '--version'], ENV)}, 127.0.0.1:{b.port},"
        " `fsync=off`, SCRAM-SHA-256 password login over TCP, `log_connections = on`",
        f"- roadie: {version_of([b.roadie, '--version'], ENV)}, {commit}, static binary {size:,} bytes;"
        " run as `roadie --log-level debug --database-url postgres://postgres:***@127.0.0.1:PORT/postgres -- APP`",
        f"- scripts: `/bin/sh` = {os.path.realpath('/bin/sh')}, `pg_isready` = {PGBIN}/pg_isready"
        f" ({version_of([PGBIN + '/pg_isready', '--version'], ENV)})",
        *([f"- wait-for-it: {b.wait_for_it} ({deb_version('wait-for-it')}), a bash script: a TCP connect"
           " (`echo > /dev/tcp/HOST/PORT`) then `sleep 1`, until one succeeds; run unmodified"]
          if "wait-for-it" in WAITERS else []),
        *([f"- dbmate: {b.dbmate} ({version_of([b.dbmate, '--version'], ENV)}), `dbmate wait`: a login"
           " (lib/pq), then `--wait-interval` (1 s), until one succeeds"] if "dbmate" in WAITERS else []),
        f"- app: bench/stamp.c, linked {b.stamp_link}ally; it reads CLOCK_REALTIME first thing and writes it to a file."
        f" Its own overhead (posix_spawn from the harness → its reading): median {statistics.median(ov):.2f} ms,"
        f" max {max(ov):.2f} ms over {len(ov)} runs; it is inside every waiter's latency alike",
        f"- load average (1/5/15 min) before: {load_before}, after: {loadavg()}"
        " (other work on the machine adds noise)",
        f"- {b.rounds} rounds × {len(WAITERS)} waiters × {len(b.kinds)} start kinds (+{b.warmup} warm-up"
        f" round discarded), random order per round, seed {b.seed}; total {elapsed:.0f} s",
        "",
        "Latency = the app's own start time − the server's \"database system is ready to accept"
        " connections\" log line, in ms (the log time is truncated to the millisecond, so values are"
        " up to 1 ms high). Logins = the TCP connections the server itself logged"
        " (`log_connections`), from its start to the app's start: what the waiter cost the server.",
    ]
    goals = []
    for kind in b.kinds:
        runs = [r for r in b.runs if r.kind == kind]
        by = {w: [r for r in runs if r.waiter == w] for w in WAITERS}
        lat = {w: [r.latency_ms for r in by[w]] for w in WAITERS}
        med = {w: statistics.median(lat[w]) for w in WAITERS}
        p95 = {w: percentile(lat[w], 95) for w in WAITERS}
        early = {w: sum(1 for r in by[w] if r.too_early) for w in WAITERS}
        listen = [r.listen_ms for r in runs if r.listen_ms is not None]
        out += [
            "",
            f"## {KIND_LABEL[kind]}",
            "",
            f"The server listened on its port {statistics.median(listen):.0f} ms (median; max {max(listen):.0f} ms)"
            f" before its ready line; a login in that window is refused with 57P03."
            if listen else "",
            "",
            "| waiter | runs | median ms | p95 ms | max ms | roadie / this (median) | roadie / this (p95) |"
            " logins the server saw per start (median / max) | … of them refused before ready (median) |"
            " most logins in one second (max over runs) | app started before the ready line (too early) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for w in WAITERS:
            rs = by[w]
            logins = [r.server_logins for r in rs]
            early_txt = f"{early[w]} of {len(rs)}" + (f" (min {min(lat[w]):.1f} ms)" if early[w] else "")
            out.append(
                f"| {LABEL[w]} | {len(rs)} | {med[w]:.1f} | {p95[w]:.1f} | {max(lat[w]):.1f} |"
                f" {positive_ratio(med['roadie'], med[w], 'n/a')} | {positive_ratio(p95['roadie'], p95[w], 'n/a')} |"
                f" {statistics.median(logins):.0f} / {max(logins)} |"
                f" {statistics.median(r.logins_before_ready for r in rs):.0f} |"
                f" {max(r.most_logins_1s for r in rs)} | {early_txt} |")
        rr = by["roadie"]
        checks = [r.port_checks / r.window_s for r in rr if r.port_checks is not None and r.window_s > 0]
        out += [
            "",
            f"- roadie: ready → its successful login reaches the server {mmm([r.poll_ms for r in rr])} ms,"
            f" that login → app started {mmm([r.finish_ms for r in rr])} ms (median / p95 / max);"
            f" {sum(1 for r in rr if r.starting_up)} of {len(rr)} runs had logins answered 57P03"
            f" (median {statistics.median(r.starting_up for r in rr):.0f} a run). While the port"
            f" refused it made {statistics.median(checks) if checks else float('nan'):.0f} bare connects a second"
            " (median; answered by the kernel, never seen by the server).",
        ]
        for w in WAITERS:
            if w in ("roadie", "wait-for-it", "dbmate"):
                continue
            rate = [r.rate for r in by[w] if not math.isnan(r.rate)]
            if rate:
                out.append(f"- {LABEL[w]}: {statistics.median(rate):.1f} `pg_isready` runs a second while down (median).")
        most = max(r.most_logins_1s for r in rr)
        goals += [
            f"| {kind}: median latency ≤ {GOAL_MEDIAN_MS:.0f} ms | {med['roadie']:.1f} ms | {verdict(med['roadie'] <= GOAL_MEDIAN_MS)} |",
            f"| {kind}: p95 latency ≤ {GOAL_P95_MS:.0f} ms | {p95['roadie']:.1f} ms | {verdict(p95['roadie'] <= GOAL_P95_MS)} |",
            f"| {kind}: logins the server saw in any one second ≤ {GOAL_RATE:.0f}, but 30 in the 0.3 s window after a 57P03"
            f" (max over runs) | {most} | {verdict(most <= GOAL_RATE + 30)} |",
            f"| {kind}: app never started too early | {early['roadie']} of {len(rr)} | {verdict(early['roadie'] == 0)} |",
        ]
    out += ["", "## Goals (roadie)", "", "| goal | roadie | met |", "| --- | ---: | --- |", *goals]
    out += [
        "",
        "## Method",
        "",
        f"- One run: the waiter starts while the server is down; after a random delay of 0.5–1.5 s"
        f" the harness runs `pg_ctl start -w -l LOG -o '-h 127.0.0.1 -p PORT -k SOCKDIR -c fsync=off'`"
        f" (as the postgres user) on a cluster made once by `initdb --no-sync --auth-host=scram-sha-256`"
        f" (with `log_line_prefix = '%n '` and `log_connections = on` in postgresql.conf);"
        f" the waiter starts the app; the harness waits for the waiter to exit, then runs"
        f" `pg_ctl stop -m fast`. Server start (pg_ctl issued → ready line): median"
        f" {statistics.median(startup):.0f} ms, max {max(startup):.0f} ms.",
        f"- A start after a crash: before the waiter starts, the harness starts the server, runs"
        f" `{CRASH_WRITES}` and stops it with `pg_ctl stop -m immediate` (no checkpoint), so the"
        " measured start replays that WAL with its port open.",
        f"- Waiters (working directory: an empty temp directory, so that roadie finds no"
        f" `alembic.ini` or `migrations/` to run): roadie as above; the classic script `{b.script_text('classic').replace('PORT', str(b.port))}`;"
        f" the tight script, the same with `sleep 0.1`. In the scripts, the `until` condition is"
        f" `echo >> COUNTFILE; pg_isready ...`: a dash builtin (no fork) counts the iterations."
        + (f" wait-for-it: `{b.script_text('wait-for-it').replace('PORT', str(b.port))}` (Debian's"
           " script, unmodified)." if "wait-for-it" in WAITERS else "")
        + (f" dbmate: `{b.script_text('dbmate').replace('PORT', str(b.port))}`." if "dbmate" in WAITERS else ""),
        "- Logins: the `connection received: host=127.0.0.1` lines of the server's log for the run"
        " (`pg_isready`, which does not log in, still opens a connection the server logs; so does"
        " wait-for-it's TCP check and roadie's bare connect once the port is open)."
        " \"Most in one second\": the most of them within [t, t + 1 s) for any logged t.",
        "- p95 is the nearest-rank percentile (with 20 runs: the second-largest value).",
        "- Clocks: the server's `%n` (gettimeofday), the app's CLOCK_REALTIME and the harness's"
        " time.time_ns() are the same clock.",
    ]
    if b.migrated:
        b.notes.append(f"roadie ran a migrate stage (a second login) before the app in {b.migrated}"
                       " run(s), although its working directory was empty: those latencies include it")
    if b.notes:
        out += ["", "## Notes", "", *[f"- {n}" for n in b.notes]]
    out.append("")
    return "\n".join(out)


def write_csv(b: Bench, path: str) -> None:
    with open(path, "w") as f:
        f.write("waiter,kind,round,delay_s,latency_ms,failed_attempts,window_s,attempts_per_s,"
                "server_startup_ms,ready_to_successful_attempt_ms,attempt_to_app_ms,"
                "failed_after_ready,roadie_attempts,roadie_57P03,started_before_ready,listen_to_ready_ms,"
                "server_logins,logins_before_ready,most_logins_1s,port_checks\n")
        for r in b.runs:
            f.write(f"{r.waiter},{r.kind},{r.round},{r.delay_s:.3f},{r.latency_ms:.3f},"
                    f"{'' if r.failed < 0 else r.failed},{r.window_s:.3f},"
                    f"{'' if math.isnan(r.rate) else f'{r.rate:.2f}'},{r.startup_ms:.1f},"
                    f"{'' if r.poll_ms is None else f'{r.poll_ms:.0f}'},"
                    f"{'' if r.finish_ms is None else f'{r.finish_ms:.3f}'},"
                    f"{r.failed_after_ready},"
                    f"{'' if r.roadie_says is None else r.roadie_says[1]},"
                    f"{'' if r.waiter != 'roadie' else r.starting_up},"
                    f"{int(r.too_early)},{'' if r.listen_ms is None else f'{r.listen_ms:.0f}'},"
                    f"{r.server_logins},{r.logins_before_ready},{r.most_logins_1s},"
                    f"{'' if r.port_checks is None else r.port_checks}\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--roadie", required=True)
    ap.add_argument("--stamp", required=True, help="the compiled bench/stamp.c")
    ap.add_argument("--work", required=True, help="an empty directory for the cluster and run files")
    ap.add_argument("--out", required=True, help="markdown file to write")
    ap.add_argument("--csv", help="per-run CSV file to write")
    ap.add_argument("--wait-for-it", help="Debian's wait-for-it script: adds it as a waiter")
    ap.add_argument("--dbmate", help="dbmate's binary: adds `dbmate wait` as a waiter")
    ap.add_argument("--kinds", choices=("both", *KINDS), default="both",
                    help="which starts to measure: clean, after a crash, or both")
    ap.add_argument("--stamp-link", default="static", help="how stamp.c was linked, for the report")
    ap.add_argument("--roadie-commit", default="commit unknown")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--deadline", type=float, default=280, help="seconds for the whole run")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()

    if os.geteuid() != 0:
        raise BenchError("needs root (runuser -u postgres)")
    if args.rounds < 2:
        raise BenchError("--rounds must be at least 2")
    global WAITERS
    if args.wait_for_it:
        if not os.access(args.wait_for_it, os.X_OK):
            raise BenchError(f"--wait-for-it {args.wait_for_it}: not an executable file")
    if args.dbmate and not os.access(args.dbmate, os.X_OK):
        raise BenchError(f"--dbmate {args.dbmate}: not an executable file")
    WAITERS = tuple(w for w in ALL_WAITERS
                    if (w != "wait-for-it" or args.wait_for_it) and (w != "dbmate" or args.dbmate))

    harness.stop_on_signals()
    harness.become_child_subreaper()

    b = Bench(args)
    started = time.monotonic()
    load_before = loadavg()
    try:
        b.run_all()
    finally:
        b.cleanup()
    text = report(b, args.roadie_commit, load_before, time.monotonic() - started)
    if args.csv:
        write_csv(b, args.csv)
    harness.write_report(text, args.out)
    return 0


if __name__ == "__main__":
    harness.exit_with(main)
