"""What the harnesses (supervise.py, readiness.py, migrate.py) and report.py share: running as a
child subreaper and cleaning up after it, the statistics behind their tables, and the machine
they ran on. It times nothing: how each harness spawns, waits for and tracks what it measures
differs from one to the next, and stays in the harness.

Standard library only: report.py imports it too, under bench/.tools/venv's python.
"""

from __future__ import annotations

import ctypes
import math
import os
import pwd
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Collection

PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>


class BenchError(Exception):
    """A measurement could not be made: the harness says why and exits 1."""


# A BaseException, so that no `except Exception` on the way up swallows it.
class Stopped(BaseException):
    """SIGINT/SIGTERM/SIGHUP to the harness: unwind, clean up, exit 130."""


# The PostgreSQL 15 server binaries (Debian's layout), for the harnesses that run a cluster.
PGBIN = "/usr/lib/postgresql/15/bin"

def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# The harness process
# --------------------------------------------------------------------------------------------

def stop_on_signals() -> None:
    """SIGTERM, SIGINT and SIGHUP raise Stopped, so every `finally` kills what it started."""
    def on_signal(signum, _frame):
        raise Stopped(signal.Signals(signum).name)

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)


def become_child_subreaper() -> None:
    # Orphans of what the harness starts (the postmaster pg_ctl daemonizes, what an init or a
    # killed roadie leaves behind) come back to it instead of PID 1, so reap_strays finds them.
    # prctl(2), PR_SET_CHILD_SUBREAPER.
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise BenchError(f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")


def exit_with(main: Callable[[], int]) -> None:
    """Runs a harness's main and exits with its code: 1 on BenchError, 130 when stopped."""
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"bench: error: {e}", file=sys.stderr)
        sys.exit(1)
    except Stopped as e:
        print(f"bench: stopped by {e}", file=sys.stderr)
        sys.exit(130)


def children_of(pid: int | str) -> list[int]:
    """The children of pid ("self": this process), every thread's; [] once it is gone."""
    kids: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return kids
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids.extend(int(p) for p in f.read().split())
        except (FileNotFoundError, ProcessLookupError):
            pass
    return kids


def kill_and_reap(pid: int) -> None:
    """SIGKILL to a child of this process, then its exit status; one already gone is fine."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def reap_zombies() -> int:
    """Reaps every child that has already exited; returns how many. Never while a
    subprocess.Popen child runs: it would take that child's status."""
    n = 0
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return n
        if pid == 0:
            return n
        n += 1


def reap_strays(keep: Collection[int] = ()) -> tuple[int, int]:
    """Kills and reaps every child of this process but those in `keep`. Called once the
    harness has reaped what it tracks, so what is left came back to it as the subreaper.
    Returns (how many it killed, how many had exited already); gives up after 10 s."""
    killed = exited = 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        # Exited children first: /proc's children lists do not always show zombies.
        exited += reap_zombies()
        kids = [k for k in children_of("self") if k not in keep]
        if not kids:
            break
        for kid in kids:
            try:
                os.kill(kid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        for kid in kids:
            try:
                os.waitpid(kid, 0)
            except ChildProcessError:
                pass
    return killed, exited


# --------------------------------------------------------------------------------------------
# Statistics and samples. report.py recomputes the harnesses' numbers from their samples: one
# percentile, one ratio rule and one CSV format keep its table equal to their reports.
# --------------------------------------------------------------------------------------------

def ms(ns: float) -> float:
    return ns / 1e6


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def iqr(xs: list[float]) -> tuple[float, float]:
    if len(xs) < 2:
        return xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[2]


def diff_ci(a: list[float], b: list[float], rng: random.Random, rounds: int) -> tuple[float, float]:
    """95% bootstrap interval of median(a) - median(b), from `rounds` resamplings of each."""
    diffs = sorted(med(rng.choices(a, k=len(a))) - med(rng.choices(b, k=len(b))) for _ in range(rounds))
    return diffs[int(0.025 * rounds)], diffs[int(0.975 * rounds) - 1]


def percentile(xs: list[float], q: float) -> float:
    """Nearest-rank percentile: the smallest value with at least q% of the samples at or below."""
    s = sorted(xs)
    return s[max(0, math.ceil(q / 100 * len(s)) - 1)]


def positive_ratio(a: float | None, b: float | None, otherwise: str) -> str:
    """a / b, or `otherwise` unless both are positive: a latency ≤ 0 means the app started too
    early, and a ratio to it (or to a value not measured) means nothing."""
    if a is None or b is None or not (a > 0 and b > 0):
        return otherwise
    return f"{a / b:.2f}"


def write_samples(path: str, samples: list[tuple[str, str, int, str, float]]) -> None:
    """The raw samples, one a line, in the format report.py reads: section,tool,run,metric,value."""
    with open(path, "w") as f:
        f.write("section,tool,run,metric,value\n")
        for section, tool, run, metric, value in samples:
            f.write(f"{section},{tool},{run},{metric},{value:.6g}\n")


# --------------------------------------------------------------------------------------------
# The machine, for the reports' headers
# --------------------------------------------------------------------------------------------

def version_of(argv: list[str], env: dict[str, str], timeout_s: float = 5) -> str:
    """The first line argv prints, or why there is none (informational: never fails)."""
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, env=env)
        return (r.stdout + r.stderr).strip().splitlines()[0]
    except Exception as e:  # noqa: BLE001 - informational only
        return f"unknown ({e})"


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def initdb(as_postgres, pg_dir: str, data: str, sock: str, password: str, conf: str) -> None:
    """A fresh cluster in `data` (inside `pg_dir`, which the postgres user owns, with the socket
    directory `sock`): SCRAM for TCP logins, peer for the socket, superuser `postgres` with
    `password` (through a file only postgres can read, removed after), then `conf` appended to
    postgresql.conf. `as_postgres(argv, timeout_s, what)` runs a command as postgres."""
    pw = pwd.getpwnam("postgres")
    os.makedirs(sock)
    pwfile = os.path.join(pg_dir, "pwfile")
    with open(pwfile, "w") as f:
        f.write(password + "\n")
    for p in (pg_dir, sock, pwfile):
        os.chown(p, pw.pw_uid, pw.pw_gid)
    os.chmod(pg_dir, 0o700)
    os.chmod(pwfile, 0o600)
    as_postgres([
        f"{PGBIN}/initdb", "-D", data, "--no-sync", "--no-instructions",
        "--auth-host=scram-sha-256", "--auth-local=peer", "-U", "postgres",
        f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C",
    ], 120, "initdb")
    os.unlink(pwfile)
    with open(os.path.join(data, "postgresql.conf"), "a") as f:
        f.write(conf)


def write_report(text: str, out: str) -> None:
    """The markdown report to `out` (its directory made if missing) and to stdout."""
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        f.write(text)
    print(text)
