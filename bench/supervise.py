#!/usr/bin/env python3
"""Timing harness for bench/supervise: roadie side by side with tini and dumb-init.

Called by bench/supervise (which installs the peers, builds roadie and compiles orphans.c);
it can also be run by hand:

    python3 bench/supervise.py --roadie PATH --orphans PATH --out FILE [--csv FILE] [--quick]

With --csv it also writes every sample the medians come from, one per line:
`section,tool,run,metric,value` (e.g. `startup-not-pid1,tini,17,overhead_ms,1.052`).

Every process is started with os.posix_spawn (stdin, stdout and stderr on /dev/null), waited
for through a pidfd with a deadline, and timed with time.perf_counter_ns. The harness makes
itself a child subreaper, so whatever an init leaves behind comes back to it and is killed
and reaped at the end (or on SIGINT/SIGTERM): it never leaves a process running.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import select
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field

# harness.py sits next to this file; python3 puts the script's directory on sys.path, but not
# under -P or PYTHONSAFEPATH.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (BenchError, children_of, cpu_model, diff_ci, iqr, log, loadavg, med,  # noqa: E402
                    ms, version_of)

PEERS = ("roadie", "tini", "dumb-init")
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
BOOTSTRAP_ROUNDS = 1000  # resamplings behind each roadie − tini interval


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------

_devnull = os.open(os.devnull, os.O_RDWR)
_live: set[int] = set()  # pids spawned and not yet reaped


def spawn(argv: list[str], stdout: str | None = None, stderr: str | None = None) -> tuple[int, int]:
    """Starts argv (argv[0] an absolute path); returns (pid, pidfd)."""
    actions = [(os.POSIX_SPAWN_DUP2, _devnull, 0)]
    for fd, path in ((1, stdout), (2, stderr)):
        if path is None:
            actions.append((os.POSIX_SPAWN_DUP2, _devnull, fd))
        else:
            actions.append((os.POSIX_SPAWN_OPEN, fd, path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
    pid = os.posix_spawn(
        argv[0], argv, ENV,
        file_actions=actions,
        setsigdef=(signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM),
        setsigmask=(),
    )
    _live.add(pid)
    try:
        pidfd = os.pidfd_open(pid)
    except BaseException:
        kill_and_reap(pid)
        raise
    return pid, pidfd


def wait_exit(pid: int, pidfd: int, timeout_s: float) -> tuple[int, int]:
    """Waits (at most timeout_s) for pid to exit; returns (perf_counter_ns at exit, exit code).
    The time is taken as soon as the pidfd reports the exit, before the waitpid."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    try:
        if not poller.poll(timeout_s * 1000):
            kill_and_reap(pid)
            raise BenchError(f"pid {pid} did not exit within {timeout_s:g} s")
        t = time.perf_counter_ns()
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(pidfd)
    _live.discard(pid)
    return t, os.waitstatus_to_exitcode(status)


def kill_and_reap(pid: int) -> None:
    harness.kill_and_reap(pid)
    _live.discard(pid)


def comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def wait_for_child(pid: int, name: str, timeout_s: float = 5.0) -> int:
    """Polls until `pid` has a child whose comm is `name` (so it has exec'd); returns its pid."""
    deadline = time.monotonic() + timeout_s
    while True:
        for kid in children_of(pid):
            if comm(kid) == name:
                return kid
        if time.monotonic() > deadline:
            raise BenchError(f"pid {pid} ({comm(pid)}) had no '{name}' child after {timeout_s:g} s")
        time.sleep(0.0002)


def status_fields(pid: int, *names: str) -> dict[str, int]:
    """Numeric fields of /proc/<pid>/status (kB values as plain numbers)."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in names:
                out[key] = int(value.split()[0])
    missing = set(names) - set(out)
    if missing:
        raise BenchError(f"/proc/{pid}/status has no {', '.join(sorted(missing))}")
    return out


def context_switches(pid: int) -> int:
    """voluntary + nonvoluntary context switches, summed over every thread of pid."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                        total += int(line.split()[1])
        except FileNotFoundError:
            continue
    return total


def reap_strays() -> int:
    """Kills and reaps every remaining child of the harness (tracked or orphans that came back
    to it as the subreaper); returns how many there were, killed or already exited."""
    tracked = len(_live)
    for pid in list(_live):
        kill_and_reap(pid)
    return tracked + sum(harness.reap_strays())


# --------------------------------------------------------------------------------------------
# Statistics and reporting
# --------------------------------------------------------------------------------------------

# Not harness.positive_ratio: these rows compare counts that can be 0 (idle wakeups: 0 / 0 is 1).
def ratio(a: float, b: float) -> str:
    if b == 0:
        return "n/a" if a != 0 else "1.00"
    return f"{a / b:.2f}"


@dataclass
class Row:
    name: str
    unit: str
    values: dict[str, float]
    goal: str
    met: bool
    fmt: str = "{:.3f}"
    spread: dict[str, str] = field(default_factory=dict)
    # For "no worse than tini" rows: 95% interval of roadie - tini, in the row's unit. A miss
    # whose interval includes 0 is reported as within noise.
    ci: tuple[float, float] | None = None
    margin: float = 0.0  # the goal allows roadie - tini up to this much

    def verdict(self) -> str:
        if self.goal == "(info)":
            return ""
        if self.met:
            return "yes"
        if self.ci is not None and self.ci[0] <= self.margin:
            return "no, within noise"
        return "**no**"


# --------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------

class Bench:
    def __init__(self, roadie: str, orphans: str, quick: bool, seed: int):
        self.roadie = roadie
        self.orphans = orphans
        self.quick = quick
        self.rng = random.Random(seed)
        self.seed = seed
        self.true = os.path.realpath(shutil.which("true") or "/bin/true")
        self.sleep = os.path.realpath(shutil.which("sleep") or "/bin/sleep")
        self.unshare = shutil.which("unshare") or "/usr/bin/unshare"
        self.tini = shutil.which("tini") or "/usr/bin/tini"
        self.dumb_init = shutil.which("dumb-init") or "/usr/bin/dumb-init"
        self.notes: list[str] = []
        self.method: list[str] = []
        self.tmp = tempfile.mkdtemp(prefix="roadie-bench-")
        # Every raw sample, for --csv: (section, tool, run, metric, value).
        self.samples: list[tuple[str, str, int, str, float]] = []

    def record(self, section: str, tool: str, metric: str, values: list[float]) -> None:
        self.samples.extend((section, tool, i, metric, v) for i, v in enumerate(values, 1))

    def n(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    def init(self, peer: str, pid1: bool) -> list[str]:
        """The init's argv prefix, to be followed by the app's argv."""
        if peer == "roadie":
            return [self.roadie, "--log-level", "error", "--"]
        if peer == "tini":
            return [self.tini, "--"] if pid1 else [self.tini, "-s", "--"]
        if peer == "dumb-init":
            return [self.dumb_init]
        raise ValueError(peer)

    def ns_wrap(self, argv: list[str]) -> list[str]:
        return [self.unshare, "--pid", "--fork", "--mount-proc", *argv]

    def run_once(self, argv: list[str], timeout_s: float, expect: int = 0, **kw) -> int:
        """Runs argv to its end; returns its wall time in ns."""
        t0 = time.perf_counter_ns()
        pid, pidfd = spawn(argv, **kw)
        t1, code = wait_exit(pid, pidfd, timeout_s)
        if code != expect:
            raise BenchError(f"{' '.join(argv)} exited {code}, expected {expect}")
        return t1 - t0

    # -- 1. start-up ---------------------------------------------------------------------------

    def startup(self, pid1: bool) -> Row:
        iters = self.n(100, 20) if pid1 else self.n(300, 40)
        warm = 5
        wrap = self.ns_wrap if pid1 else (lambda a: a)
        cmds = {"baseline": wrap([self.true])}
        for p in PEERS:
            cmds[p] = wrap(self.init(p, pid1) + [self.true])
        samples: dict[str, list[int]] = {k: [] for k in cmds}
        for i in range(warm + iters):
            order = list(cmds)
            self.rng.shuffle(order)
            for k in order:
                t = self.run_once(cmds[k], timeout_s=10)
                if i >= warm:
                    samples[k].append(t)
        base = med(samples["baseline"])
        over = {p: ms(med(samples[p]) - base) for p in PEERS}
        section = "startup-pid1" if pid1 else "startup-not-pid1"
        for k, xs in samples.items():
            self.record(section, k, "wall_ms", [ms(x) for x in xs])
            if k != "baseline":
                # Each run minus the baseline's median: the overhead the row's median is made of.
                self.record(section, k, "overhead_ms", [ms(x - base) for x in xs])
        where = "PID 1 (unshare --pid --fork --mount-proc)" if pid1 else "not PID 1"
        spread = {p: "IQR {:.3f}–{:.3f}".format(*(ms(x) for x in iqr(samples[p]))) for p in PEERS}
        self.method.append(
            f"**Start-up overhead, {where}**: wall time from posix_spawn to exit of `INIT {self.true}`"
            f" minus that of {'`unshare ... ' + self.true + '`' if pid1 else '`' + self.true + '`'}"
            f" (median {ms(base):.3f} ms), medians of {iters} runs each after {warm} warm-up runs;"
            f" the four commands run in a random order in every iteration."
            f" Raw medians: " + ", ".join(f"{p} {ms(med(samples[p])):.3f} ms" for p in PEERS) + "."
        )
        ci = tuple(ms(x) for x in diff_ci(samples["roadie"], samples["tini"], self.rng, BOOTSTRAP_ROUNDS))
        return Row(
            f"start-up overhead, {'PID 1' if pid1 else 'not PID 1'}", "ms", over,
            "≤ tini + 0.5 ms", over["roadie"] <= over["tini"] + 0.5, spread=spread, ci=ci,
            margin=0.5,
        )

    # -- 2. memory -----------------------------------------------------------------------------

    def memory(self) -> list[Row]:
        runs = self.n(5, 2)
        rss: dict[str, list[int]] = {p: [] for p in PEERS}
        anon: dict[str, list[int]] = {p: [] for p in PEERS}
        for _ in range(runs):
            started = {}
            try:
                order = list(PEERS)
                self.rng.shuffle(order)
                for p in order:
                    t0 = time.monotonic()
                    started[p] = (*spawn(self.init(p, False) + [self.sleep, "60"]), t0)
                for p, (pid, _, t0) in started.items():
                    wait_for_child(pid, "sleep")
                for p, (pid, _, t0) in started.items():
                    time.sleep(max(0.0, t0 + 0.5 - time.monotonic()))
                    f = status_fields(pid, "VmRSS", "RssAnon")
                    rss[p].append(f["VmRSS"])
                    anon[p].append(f["RssAnon"])
            finally:
                self.stop_all(started)
        self.method.append(
            f"**Memory**: each init supervises `sleep 60` (not PID 1); VmRSS and RssAnon are read"
            f" from /proc/<init>/status 0.5 s after its start (once its `sleep` child has exec'd)."
            f" The three run at the same time, {runs} rounds; medians. Per run (kB): "
            + "; ".join(f"{p} VmRSS {rss[p]} RssAnon {anon[p]}" for p in PEERS) + "."
        )
        for p in PEERS:
            self.record("memory", p, "VmRSS_kB", rss[p])
            self.record("memory", p, "RssAnon_kB", anon[p])
        rows = []
        for label, data in (("VmRSS", rss), ("RssAnon", anon)):
            vals = {p: float(med(data[p])) for p in PEERS}
            rows.append(Row(f"memory {label} while supervising", "kB", vals, "≤ 1.2× tini",
                            vals["roadie"] <= 1.2 * vals["tini"], fmt="{:.0f}"))
        return rows

    def stop_all(self, started: dict) -> None:
        """SIGTERMs every init in `started` and waits for each (SIGKILL after 5 s)."""
        for p, (pid, pidfd, *_rest) in started.items():
            if pid in _live:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for p, (pid, pidfd, *_rest) in started.items():
            if pid in _live:
                try:
                    wait_exit(pid, pidfd, 5)
                except BenchError as e:
                    self.notes.append(f"{p}: {e} after SIGTERM; killed")

    # -- 3. idle wakeups -----------------------------------------------------------------------

    def wakeups(self) -> Row:
        window = self.n(10, 3)
        started = {}
        try:
            for p in PEERS:
                started[p] = spawn(self.init(p, False) + [self.sleep, str(window + 30)])
            for p, (pid, _) in started.items():
                wait_for_child(pid, "sleep")
            time.sleep(0.5)  # let start-up work finish
            before = {p: context_switches(pid) for p, (pid, _) in started.items()}
            time.sleep(window)
            after = {p: context_switches(pid) for p, (pid, _) in started.items()}
        finally:
            self.stop_all(started)
        delta = {p: float(after[p] - before[p]) for p in PEERS}
        for p in PEERS:
            self.record("idle-wakeups", p, f"switches_in_{window}s", [delta[p]])
        self.method.append(
            f"**Idle wakeups**: voluntary + nonvoluntary context switches (all threads) of the init,"
            f" from /proc/<init>/task/*/status, over a {window} s window while it supervises `sleep`"
            f" (not PID 1); the three inits run during the same window, one sample each,"
            f" counted from 0.5 s after their `sleep` child started."
        )
        return Row(f"idle wakeups in {window} s", "switches", delta, "roadie = 0",
                   delta["roadie"] == 0, fmt="{:.0f}")

    # -- 4. SIGTERM latency --------------------------------------------------------------------

    def sigterm(self) -> Row:
        iters = self.n(50, 10)
        settle = 0.005
        samples: dict[str, list[int]] = {p: [] for p in PEERS}
        codes: dict[str, set[int]] = {p: set() for p in PEERS}
        for _ in range(iters):
            order = list(PEERS)
            self.rng.shuffle(order)
            for p in order:
                pid, pidfd = spawn(self.init(p, False) + [self.sleep, "60"])
                try:
                    wait_for_child(pid, "sleep")
                    time.sleep(settle)
                    t0 = time.perf_counter_ns()
                    os.kill(pid, signal.SIGTERM)
                    t1, code = wait_exit(pid, pidfd, 10)
                except BaseException:
                    if pid in _live:
                        kill_and_reap(pid)
                        os.close(pidfd)
                    raise
                samples[p].append(t1 - t0)
                codes[p].add(code)
            strays = reap_strays()
            if strays:
                self.notes.append(f"SIGTERM latency: {strays} process(es) left behind by an init and reaped by the harness")
        vals = {p: ms(med(samples[p])) for p in PEERS}
        for p in PEERS:
            self.record("sigterm", p, "exit_ms", [ms(x) for x in samples[p]])
        spread = {p: "IQR {:.3f}–{:.3f}".format(*(ms(x) for x in iqr(samples[p]))) for p in PEERS}
        self.method.append(
            f"**SIGTERM to exit**: init supervising `sleep 60` (not PID 1); once its child has"
            f" exec'd `sleep` (+{settle * 1000:.0f} ms to settle), SIGTERM goes to the init and the"
            f" time runs until the init has exited (pidfd readable). Medians of {iters} runs each,"
            f" in a random order per iteration. Exit codes seen: "
            + ", ".join(f"{p} {sorted(codes[p])}" for p in PEERS) + "."
        )
        ci = tuple(ms(x) for x in diff_ci(samples["roadie"], samples["tini"], self.rng, BOOTSTRAP_ROUNDS))
        return Row("SIGTERM → exit latency", "ms", vals, "≤ tini",
                   vals["roadie"] <= vals["tini"], spread=spread, ci=ci)

    # -- 5. orphans ----------------------------------------------------------------------------

    def orphan_reaping(self) -> list[Row]:
        runs = self.n(5, 2)
        count = 10000
        # Phases of each run, in ns, from the harness's clock and the app's (both CLOCK_MONOTONIC):
        # total; spawn -> app start; app start -> intermediate reaped (forking); intermediate
        # reaped -> /proc clean (reaping); /proc clean -> unshare exited (the init's exit and
        # the namespace's teardown).
        phases = ("total", "until app start", "forking", "reaping", "after app")
        data: dict[str, dict[str, list[int]]] = {p: {k: [] for k in phases} for p in PEERS}
        out = os.path.join(self.tmp, "orphans.out")
        err = os.path.join(self.tmp, "orphans.err")
        for _ in range(runs):
            order = list(PEERS)
            self.rng.shuffle(order)
            for p in order:
                argv = self.ns_wrap(self.init(p, True) + [self.orphans, str(count), "30"])
                t0 = time.perf_counter_ns()
                pid, pidfd = spawn(argv, stdout=out, stderr=err)
                t1, code = wait_exit(pid, pidfd, 60)
                if code != 0:
                    with open(err) as f:
                        msg = f.read().strip()[-500:]
                    raise BenchError(f"orphans under {p} exited {code} (zombies left, or the app failed): {msg}")
                with open(out) as f:
                    a_start, a_mid, a_clean = (int(x) for x in f.read().split()[-3:])
                d = data[p]
                d["total"].append(t1 - t0)
                d["until app start"].append(a_start - t0)
                d["forking"].append(a_mid - a_start)
                d["reaping"].append(a_clean - a_mid)
                d["after app"].append(t1 - a_clean)
        self.method.append(
            f"**Reap {count:,} orphans**: `unshare --pid --fork --mount-proc INIT orphans` (the init is"
            f" PID 1). The app (bench/orphans.c) forks an intermediate that forks {count:,} children"
            f" which `_exit(0)` at once, then exits without waiting, so its zombies are re-parented to"
            f" the init; the app then polls /proc until only PID 1 and itself are left, and exits 0"
            f" (checked for every run: no zombie left under any init). Total wall time of the"
            f" `unshare` run, median of {runs} runs each, interleaved. tini and dumb-init exit as soon"
            f" as the app exits while roadie first waits for any remaining descendant, but since the"
            f" app itself waits until /proc is clean, there is nothing left to wait for and the"
            f" comparison is fair. The rows below the total split it with timestamps from the app:"
            f" the reaping row is the intermediate's exit to a clean /proc; the forking row is the"
            f" app's own work and should not depend on the init."
        )
        for p in PEERS:
            for k in phases:
                self.record("orphans-10k", p, re.sub(r"\W+", "_", k) + "_ms", [ms(x) for x in data[p][k]])
        rows = []
        for k in phases:
            xs = {p: data[p][k] for p in PEERS}
            vals = {p: ms(med(xs[p])) for p in PEERS}
            spread = {p: "IQR {:.1f}–{:.1f}".format(*(ms(x) for x in iqr(xs[p]))) for p in PEERS}
            ci = tuple(ms(x) for x in diff_ci(xs["roadie"], xs["tini"], self.rng, BOOTSTRAP_ROUNDS))
            if k == "total":
                rows.append(Row(f"reap {count // 1000}k orphans as PID 1, total wall time", "ms", vals,
                                "≤ tini", vals["roadie"] <= vals["tini"], fmt="{:.1f}", spread=spread, ci=ci))
            elif k == "reaping":
                rows.append(Row("… of which reaping: intermediate's exit → /proc clean", "ms", vals,
                                "≤ tini", vals["roadie"] <= vals["tini"], fmt="{:.1f}", spread=spread, ci=ci))
            else:
                what = {
                    "until app start": "… of which spawn → app started (unshare + init start-up)",
                    "forking": "… of which the app forking (independent of the init)",
                    "after app": "… of which app done → unshare exited (init exit, namespace teardown)",
                }[k]
                rows.append(Row(what, "ms", vals, "(info)", True, fmt="{:.1f}", spread=spread, ci=ci))
        return rows


# --------------------------------------------------------------------------------------------
# Environment and output
# --------------------------------------------------------------------------------------------

def environment(b: Bench, roadie_commit: str) -> list[str]:
    size = os.path.getsize(b.roadie)
    deb = version_of(["dpkg-query", "-W", "-f", "${Package} ${Version}; ", "tini", "dumb-init"], ENV).rstrip("; ")
    return [
        f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"- kernel: {platform.release()} ({platform.machine()})",
        f"- CPU: {cpu_model()}, {os.cpu_count()} cores",
        f"- roadie: {version_of([b.roadie, '--version'], ENV)}, {roadie_commit}, static binary {size:,} bytes ({size / 1024:.0f} KiB), run with `--log-level error`",
        f"- tini: {version_of([b.tini, '--version'], ENV)}; dumb-init: {version_of([b.dumb_init, '--version'], ENV)} (Debian packages: {deb})",
        f"- harness: Python {platform.python_version()}, random order seed {b.seed}{', QUICK mode (fewer iterations)' if b.quick else ''}",
    ]


def table(rows: list[Row]) -> list[str]:
    lines = [
        "| measurement | unit | roadie | tini | dumb-init | roadie / tini | roadie / dumb-init | goal | met |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in rows:
        v = r.values
        lines.append(
            f"| {r.name} | {r.unit} | {r.fmt.format(v['roadie'])} | {r.fmt.format(v['tini'])} |"
            f" {r.fmt.format(v['dumb-init'])} | {ratio(v['roadie'], v['tini'])} |"
            f" {ratio(v['roadie'], v['dumb-init'])} | {r.goal} | {r.verdict()} |"
        )
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--roadie", required=True)
    ap.add_argument("--orphans", required=True, help="the compiled bench/orphans.c")
    ap.add_argument("--out", required=True, help="markdown file to write")
    ap.add_argument("--csv", help="CSV file for the raw samples (section,tool,run,metric,value)")
    ap.add_argument("--roadie-commit", default="commit unknown")
    ap.add_argument("--quick", action="store_true", help="few iterations, for trying the script")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()

    if os.geteuid() != 0:
        raise BenchError("needs root (unshare --pid, /proc of other processes)")

    harness.stop_on_signals()
    harness.become_child_subreaper()

    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    b = Bench(os.path.abspath(args.roadie), os.path.abspath(args.orphans), args.quick, seed)
    rows: list[Row] = []
    started = time.monotonic()
    load_before = loadavg()
    try:
        steps = [
            ("start-up, not PID 1", lambda: [b.startup(pid1=False)]),
            ("start-up, PID 1", lambda: [b.startup(pid1=True)]),
            ("memory", b.memory),
            ("idle wakeups", lambda: [b.wakeups()]),
            ("SIGTERM latency", lambda: [b.sigterm()]),
            ("reap orphans", b.orphan_reaping),
        ]
        for name, step in steps:
            t = time.monotonic()
            log(f"{name} ...")
            rows.extend(step())
            strays = reap_strays()
            if strays:
                b.notes.append(f"{name}: {strays} stray process(es) came back to the harness and were killed")
            log(f"{name} done in {time.monotonic() - t:.1f} s")
    finally:
        for pid in list(_live):
            kill_and_reap(pid)
        reap_strays()
        shutil.rmtree(b.tmp, ignore_errors=True)

    out = [
        "# roadie vs tini vs dumb-init: supervision benchmark",
        "",
        *environment(b, args.roadie_commit),
        f"- load average (1/5/15 min) before: {load_before}, after: {loadavg()}"
        " (other work on the machine adds noise to the timing rows)",
        "",
        *table(rows),
        "",
        "Ratios are roadie's median over the peer's (below 1 = roadie smaller/faster)."
        " \"no, within noise\": roadie misses the goal on medians, but the 95% bootstrap interval"
        " of roadie − tini reaches the goal's bound. Timing rows have interquartile ranges below.",
        "",
        "## Method",
        "",
        *[f"- {m}" for m in b.method],
        "- Not PID 1, tini runs as `tini -s --` (subreaper) and dumb-init as plain `dumb-init`;"
        " roadie becomes a subreaper by itself. As PID 1: `tini --`, `dumb-init`.",
        "",
        "## Spread (interquartile range of the raw samples, same unit as the row)",
        "",
        *[f"- {r.name}: " + "; ".join(f"{p} {r.spread[p]}" for p in PEERS)
          + (f"; roadie − tini 95% interval {r.ci[0]:+.3f} … {r.ci[1]:+.3f}" if r.ci else "")
          for r in rows if r.spread],
    ]
    if b.notes:
        out += ["", "## Notes", "", *[f"- {n}" for n in b.notes]]
    out += ["", f"Total benchmark time: {time.monotonic() - started:.0f} s.", ""]
    text = "\n".join(out)
    if args.csv:
        harness.write_samples(args.csv, b.samples)
    harness.write_report(text, args.out)
    return 0


if __name__ == "__main__":
    harness.exit_with(main)
