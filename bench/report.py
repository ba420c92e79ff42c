#!/usr/bin/env python3
"""One report from the three benchmarks of bench/run: bench/results/REPORT.md (one comparison
table of medians and ratios, then the three detailed reports) and bench/results/report.png
(the distributions behind the timing rows).

    python3 bench/report.py --results bench/results --roadie BIN --commit DESC [--quick] \\
        [--tool NAME=PATH ...] [--step NAME=SECONDS:EXIT ...]

It reads only what the harnesses wrote: supervise.csv, readiness.csv, migrate.csv (every raw
sample; the medians here are computed from them exactly as the harnesses compute theirs) and
supervise.md, readiness.md, migrate.md (included as they are). A benchmark that did not run, or
failed, shows as such in every row that needs it. The figure needs matplotlib (bench/peers plot
makes a venv with it); without it REPORT.md is still written.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass

# harness.py sits next to this file; python puts the script's directory on sys.path, but not
# under -P or PYTHONSAFEPATH.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import cpu_model, loadavg, percentile, positive_ratio  # noqa: E402

ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
BENCHES = ("supervise", "readiness", "migrate")


# --------------------------------------------------------------------------------------------
# Reading the samples
# --------------------------------------------------------------------------------------------

class Samples:
    """A long-format CSV (section,tool,run,metric,value) of supervise.py or migrate.py."""

    def __init__(self, path: str | None):
        """path None, or a file that does not exist: the benchmark did not run."""
        self.data: dict[tuple[str, str, str], list[float]] = defaultdict(list)
        self.present = path is not None and os.path.exists(path)
        if self.present:
            with open(path, newline="") as f:
                for row in csv.DictReader(f):
                    self.data[(row["section"], row["tool"], row["metric"])].append(float(row["value"]))

    def get(self, section: str, tool: str, metric: str) -> list[float]:
        return self.data.get((section, tool, metric), [])

    def median(self, section: str, tool: str, metric: str) -> float | None:
        xs = self.get(section, tool, metric)
        return statistics.median(xs) if xs else None

    def total(self, section: str, tool: str, metric: str) -> tuple[int, int] | None:
        """(sum of the values, number of samples), e.g. failed replicas over trials."""
        xs = self.get(section, tool, metric)
        return (int(sum(xs)), len(xs)) if xs else None

    def sections(self, prefix: str) -> list[str]:
        return sorted({s for s, _, _ in self.data if s.startswith(prefix)})


def read_readiness(path: str) -> dict[str, list[dict]]:
    by: dict[str, list[dict]] = defaultdict(list)
    if os.path.exists(path):
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                by[row["waiter"]].append(row)
    return by


# --------------------------------------------------------------------------------------------
# The comparison table
# --------------------------------------------------------------------------------------------

@dataclass
class Line:
    """One line of the table: roadie's value against one peer's. `ratio` is roadie's value
    over the peer's, as the two cells show them; blank where a ratio says nothing."""
    measurement: str
    roadie: str
    peer: str
    value: str
    ratio: str = ""


def fmt(x: float | None, digits: int = 2, unit: str = "") -> str:
    return "not measured" if x is None else f"{x:.{digits}f}{unit}"


class Table:
    def __init__(self) -> None:
        self.lines: list[Line] = []
        self.groups: list[tuple[str, int]] = []  # (title, index of its first line)

    def group(self, title: str) -> None:
        self.groups.append((title, len(self.lines)))

    def add(self, measurement: str, roadie: str, peer: str, value: str, r: str = "") -> None:
        self.lines.append(Line(measurement, roadie, peer, value, r))

    def markdown(self) -> list[str]:
        """The measurement and roadie's value once, on the first of its lines; a bold line
        before each group."""
        out = ["| measurement | roadie | compared with | its value | roadie / it |",
               "| --- | ---: | --- | ---: | ---: |"]
        starts = {i: t for t, i in self.groups}
        prev = None
        for i, ln in enumerate(self.lines):
            if i in starts:
                out.append(f"| **{starts[i]}** | | | | |")
            first = ln.measurement != prev
            out.append(f"| {ln.measurement if first else ''} | {ln.roadie if first else ''} |"
                       f" {ln.peer} | {ln.value} | {ln.ratio} |")
            prev = ln.measurement
        return out


def supervise_rows(t: Table, s: Samples, v: dict[str, str]) -> None:
    t.group("Supervision (bench/supervise)")
    if not s.present:
        t.add("supervision rows", "not measured", "bench/supervise did not run or failed", "")
        return
    peers = [("tini", f"tini {v['tini']}"), ("dumb-init", f"dumb-init {v['dumb-init']}")]
    for section, what in (("startup-not-pid1", "start-up overhead: `INIT true` over bare `true`, not PID 1 (ms)"),
                          ("startup-pid1", "start-up overhead as PID 1, in `unshare --pid` (ms)")):
        base = s.median(section, "baseline", "wall_ms")
        n = len(s.get(section, "roadie", "wall_ms"))
        over = {p: (s.median(section, p, "wall_ms") - base) if base is not None and s.get(section, p, "wall_ms") else None
                for p in ("roadie", "tini", "dumb-init")}
        for p, label in peers:
            t.add(what.replace("(ms)", f"(ms; median of {n} runs)"), fmt(over["roadie"], 3), label, fmt(over[p], 3),
                  positive_ratio(over["roadie"], over[p], ""))
    rss = {p: (s.median("memory", p, "VmRSS_kB"), s.median("memory", p, "RssAnon_kB")) for p in ("roadie", "tini", "dumb-init")}
    for p, label in peers:
        r, o = rss["roadie"], rss[p]
        t.add("resident memory supervising `sleep`: VmRSS / RssAnon (kB)",
              f"{fmt(r[0], 0)} / {fmt(r[1], 0)}", label, f"{fmt(o[0], 0)} / {fmt(o[1], 0)}",
              f"{positive_ratio(r[0], o[0], '')} / {positive_ratio(r[1], o[1], '')}")
    wk = [m for (sec, tool, m) in s.data if sec == "idle-wakeups" and tool == "roadie"]
    if wk:
        secs = wk[0].removeprefix("switches_in_").removesuffix("s")
        for p, label in peers:
            t.add(f"idle wake-ups (context switches) in {secs} s", fmt(s.median("idle-wakeups", "roadie", wk[0]), 0),
                  label, fmt(s.median("idle-wakeups", p, wk[0]), 0))
    n = len(s.get("sigterm", "roadie", "exit_ms"))
    for p, label in peers:
        a, b = s.median("sigterm", "roadie", "exit_ms"), s.median("sigterm", p, "exit_ms")
        t.add(f"SIGTERM → exit (ms, median of {n})", fmt(a, 3), label, fmt(b, 3), positive_ratio(a, b, ""))
    n = len(s.get("orphans-10k", "roadie", "total_ms"))
    for metric, what in (("total_ms", f"reap 10,000 orphans as PID 1, whole run (ms, median of {n})"),
                         ("reaping_ms", "… of which reaping (intermediate's exit → /proc clean), ms")):
        for p, label in peers:
            a, b = s.median("orphans-10k", "roadie", metric), s.median("orphans-10k", p, metric)
            t.add(what, fmt(a, 1), label, fmt(b, 1), positive_ratio(a, b, ""))


def readiness_rows(t: Table, by: dict[str, list[dict]], v: dict[str, str]) -> None:
    t.group("Readiness after a PostgreSQL cold start (bench/readiness)")
    if "roadie" not in by:
        t.add("readiness rows", "not measured", "bench/readiness did not run or failed", "")
        return
    kinds = [k for k in ("clean", "crash") if any(r.get("kind", "clean") == k for r in by["roadie"])]
    names = {"clean": "clean start", "crash": "start after a crash (WAL replay, port open)"}
    for kind in kinds:
        rows = {w: [r for r in rs if r.get("kind", "clean") == kind] for w, rs in by.items()}
        lat = {w: [float(r["latency_ms"]) for r in rs] for w, rs in rows.items() if rs}
        early = {w: sum(1 for r in rs if r.get("started_before_ready") == "1" or float(r["latency_ms"]) < 0)
                 for w, rs in rows.items()}
        logins = {w: [int(r["server_logins"]) for r in rs if r.get("server_logins")] for w, rs in rows.items()}
        n = len(lat["roadie"])
        peers = [(w, label) for w, label in (
            ("classic", "`until pg_isready; do sleep 1; done`"),
            ("tight", "`until pg_isready; do sleep 0.1; done`"),
            ("wait-for-it", f"`wait-for-it -t 0 HOST:PORT` ({v['wait-for-it']}, TCP only)"),
            ("dbmate", f"`dbmate wait` ({v.get('dbmate', 'dbmate')})"),
        ) if w in lat]
        for stat, what in ((statistics.median, f"{names[kind]}: server ready → app started, median (ms, {n} starts)"),
                           (lambda xs: percentile(xs, 95), f"{names[kind]}: … p95 (ms)")):
            a = stat(lat["roadie"])
            for w, label in peers:
                b = stat(lat[w])
                t.add(what, fmt(a, 1), label, fmt(b, 1), positive_ratio(a, b, ""))
        for w, label in peers:
            xs = lat[w]
            t.add(f"{names[kind]}: app started before the server accepted logins (too early)",
                  f"{early['roadie']} of {n}", label,
                  f"{early[w]} of {len(xs)}" + (f" (earliest {min(xs):.0f} ms)" if early[w] else ""))
        if logins.get("roadie"):
            for w, label in peers:
                if logins.get(w):
                    t.add(f"{names[kind]}: logins the server saw per start (median / max; log_connections)",
                          f"{statistics.median(logins['roadie']):.0f} / {max(logins['roadie'])}", label,
                          f"{statistics.median(logins[w]):.0f} / {max(logins[w])}")


def migrate_rows(t: Table, s: Samples, v: dict[str, str]) -> None:
    t.group("Migrations (bench/migrate)")
    if not s.present:
        t.add("migration rows", "not measured", "bench/migrate did not run or failed", "")
        return
    base = s.median("boot", "true", "wall_ms")
    n = len(s.get("boot", "roadie", "wall_ms"))

    def over(k: str) -> float | None:
        m = s.median("boot", k, "wall_ms")
        return None if m is None or base is None else m - base

    what = f"boot with nothing to migrate: over bare `true` (ms, median of {n})"
    peers = [("script", f"`pg_isready && sqlx migrate run && exec true` (sqlx-cli {v['sqlx']})"),
             ("dbmate", f"`dbmate --wait up && exec true` (dbmate {v['dbmate']})")]
    for k, label in peers:
        if s.get("boot", k, "wall_ms"):
            t.add(what, fmt(over("roadie")), label, fmt(over(k)), positive_ratio(over("roadie"), over(k), ""))
    for k, label in peers:
        if s.get("boot", k, "logins"):
            t.add("… logins per boot", fmt(s.median("boot", "roadie", "logins"), 0), label,
                  fmt(s.median("boot", k, "logins"), 0))
    a, b = s.median("alembic", "roadie", "wall_ms"), s.median("alembic", "alembic", "wall_ms")
    if a is not None and b is not None:
        t.add("`alembic upgrade head` with nothing to apply, under roadie's lock (`--no-alembic-shortcut`):"
              " time roadie adds (ms)",
              f"{a - b:+.1f}", f"bare alembic ({v['alembic']})", f"{b:.0f} ms in all", positive_ratio(a, b, "") + " (wall)")
    h = s.median("alembic", "roadie at head", "wall_ms")
    if h is not None and b is not None:
        t.add("… by default: roadie reads `alembic_version` and the scripts' heads, at head alembic is"
              " not started: whole boot (ms)",
              f"{h:.1f}", f"bare alembic ({v['alembic']})", f"{b:.0f}", positive_ratio(h, b, ""))
    for kind in ("repo", "slow"):
        one = s.median(f"replicas-native-{kind}-N1", "roadie", "wall_ms")
        for nrep in (10, 50):
            sec = f"replicas-native-{kind}-N{nrep}"
            w = s.median(sec, "roadie", "wall_ms")
            if w is None:
                continue
            f = s.total(sec, "roadie", "failed")
            folder = "the repo's `migrations/`" if kind == "repo" else "5 migrations of 50 ms each"
            t.add(f"{nrep} replicas at once on a fresh database, {folder}: wall time (ms), failed replicas",
                  f"{w:.0f}, {f[0]} of {nrep * f[1]} failed", "1 replica alone", fmt(one, 0), positive_ratio(w, one, ""))
    for sec, peer, label, note in (
            ("replicas-alembic-N10", "alembic", f"bare `alembic upgrade head` ({v['alembic']})",
             "roadie running alembic under its lock"),
            ("replicas-dbmate-N10", "dbmate", f"bare `dbmate --wait up` (dbmate {v['dbmate']})",
             "roadie running `dbmate up` under its lock")):
        a, b = s.total(sec, "roadie", "failed"), s.total(sec, peer, "failed")
        if a is None or b is None:
            continue
        n_tr = a[1]
        t.add(f"10 replicas at once on a fresh database ({note}): replicas that exited non-zero, {n_tr} trial(s)",
              f"{a[0]} of {10 * a[1]}", label, f"{b[0]} of {10 * b[1]}")


def wrong_password_rows(t: Table, s: Samples, v: dict[str, str]) -> None:
    if not s.sections("wrong-password"):
        return
    t.group("A wrong password in the URL (bench/migrate §6)")

    def said(tool: str) -> str:
        code = s.median("wrong-password", tool, "exit_code")
        secs = s.median("wrong-password", tool, "seconds")
        started = s.median("wrong-password", tool, "app_started")
        if code is None:
            return "not measured"
        return (f"exit {code:.0f} after {secs:.2f} s, "
                + ("**started the app**" if started else "app not started"))

    for tool, label in (("classic", "`until pg_isready; do sleep 1; done`"),
                        ("wait-for-it", "`wait-for-it`"),
                        ("script", "`pg_isready && sqlx migrate run`"),
                        ("dbmate", "`dbmate --wait --wait-timeout 5s up`")):
        if s.get("wrong-password", tool, "exit_code"):
            t.add("what happens (5 s wait timeout where there is one)", said("roadie"), label, said(tool))


# --------------------------------------------------------------------------------------------
# The figure
# --------------------------------------------------------------------------------------------

def figure(path: str, readiness: dict[str, list[dict]], sup: Samples, mig: Samples, title: str) -> str | None:
    """Writes the PNG; returns None, or why it could not."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError as e:
        return f"no matplotlib ({e}); run bench/peers plot and use its python"
    import random
    rng = random.Random(1)

    def strip(ax, groups: list[tuple[str, list[float]]], colors: list[str]) -> None:
        data = [xs for _, xs in groups]
        pos = list(range(1, len(groups) + 1))
        nonempty = [(p, xs) for p, xs in zip(pos, data) if xs]
        if nonempty:
            ax.boxplot([xs for _, xs in nonempty], positions=[p for p, _ in nonempty], widths=0.5,
                       showfliers=False, medianprops={"color": "black", "linewidth": 1.5},
                       whiskerprops={"color": "0.5"}, capprops={"color": "0.5"}, boxprops={"color": "0.5"})
        for p, xs, c in zip(pos, data, colors):
            dense = len(xs) > 60
            ax.scatter([p + rng.uniform(-0.18, 0.18) for _ in xs], xs, s=6 if dense else 14,
                       alpha=0.45 if dense else 0.7, color=c, edgecolors="none", zorder=3)
            if xs:
                m = statistics.median(xs)
                ax.annotate(f"{m:.3g}", (p + 0.3, m), fontsize=8, va="center", color="0.2")
        ax.set_xticks(pos)
        ax.set_xticklabels([g for g, _ in groups], fontsize=8)
        ax.set_xlim(0.4, len(groups) + 0.8)
        ax.grid(axis="y", color="0.9", zorder=0)

    def not_measured(ax) -> None:
        ax.text(0.5, 0.5, "not measured (the benchmark did not run, or failed)", transform=ax.transAxes,
                ha="center", va="center", fontsize=9, color="0.4")
        ax.set_xticks([])
        ax.set_yticks([])

    roadie_c, peer_c = "#d62728", "#1f77b4"
    fig, axes = plt.subplots(1, 3, figsize=(17, 6.2), gridspec_kw={"width_ratios": [4, 5.5, 6]})
    fig.suptitle(title, fontsize=11)

    # (a) readiness latency; symlog, since wait-for-it can be negative (started too early).
    ax = axes[0]
    order = [("roadie", "roadie"), ("tight", "pg_isready\nsleep 0.1"), ("classic", "pg_isready\nsleep 1"),
             ("wait-for-it", "wait-for-it\n(TCP)"), ("dbmate", "dbmate\nwait")]
    groups = []
    for w, label in order:
        xs = [float(r["latency_ms"]) for r in readiness.get(w, [])]
        if xs:
            early = sum(1 for x in xs if x < 0)
            groups.append((f"{label}\n{early} too early", xs))
    if groups:
        strip(ax, groups, [roadie_c if g.startswith("roadie") else peer_c for g, _ in groups])
        ax.set_yscale("symlog", linthresh=10)
        lo = min(min(xs) for _, xs in groups)
        hi = max(max(xs) for _, xs in groups)
        ax.set_ylim(-10 ** math.ceil(math.log10(-lo)) if lo < 0 else 0, hi * 1.5)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.text(0.45, 0, " server ready", fontsize=7, va="bottom")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
        ax.set_ylabel("server ready → app started, ms (symlog; < 0 = too early)")
    else:
        not_measured(ax)
    ax.set_title(f"(a) readiness latency, {len(groups[0][1]) if groups else 0} cold starts each (clean and after a crash)", fontsize=10)

    # (b) migrate section 1: boot with nothing to migrate, over bare `true`.
    ax = axes[1]
    order = [("roadie --skip-migrations", "roadie\n--skip-\nmigrations"), ("roadie", "roadie"),
             ("pg_isready", "pg_isready"), ("script", "pg_isready &&\nsqlx migrate"),
             ("dbmate migrate", "dbmate\nmigrate"), ("dbmate", "dbmate\n--wait up")]
    groups = [(label, mig.get("boot", k, "over_true_ms")) for k, label in order if mig.get("boot", k, "over_true_ms")]
    if groups:
        strip(ax, groups, [roadie_c if g.startswith("roadie") else peer_c for g, _ in groups])
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
        ax.tick_params(axis="y", which="minor", labelsize=7)
        ax.set_ylabel("wall time over bare `true`, ms (log)")
    else:
        not_measured(ax)
    ax.set_title("(b) boot with nothing to migrate (bench/migrate §1)", fontsize=10)

    # (c) supervision start-up overhead, per init, not PID 1 and PID 1.
    ax = axes[2]
    groups = []
    colors = []
    for section, where in (("startup-not-pid1", "not PID 1"), ("startup-pid1", "PID 1")):
        for p in ("roadie", "tini", "dumb-init"):
            xs = sup.get(section, p, "overhead_ms")
            if xs:
                groups.append((f"{p}\n{where}", xs))
                colors.append(roadie_c if p == "roadie" else peer_c)
    if groups:
        strip(ax, groups, colors)
        lo = min(min(xs) for _, xs in groups)
        hi = max(percentile(xs, 99) for _, xs in groups)
        ax.set_ylim(min(0, lo) - 0.2, hi * 1.3 + 0.2)
        ax.set_ylabel("`INIT true` minus bare `true`, ms (points above the axis are cut)")
    else:
        not_measured(ax)
    ax.set_title("(c) supervision start-up overhead (bench/supervise)", fontsize=10)

    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


# --------------------------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------------------------

def first_line(argv: list[str]) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10, env=ENV)
        lines = (r.stdout + r.stderr).strip().splitlines()
        return lines[0] if lines else "unknown"
    except Exception:  # noqa: BLE001 - informational only
        return "unknown"


def versions(tools: dict[str, str]) -> dict[str, str]:
    def num(text: str) -> str:
        m = re.search(r"v?(\d+\.\d+(?:\.\d+)?)", text)
        return m.group(1) if m else text

    deb = first_line(["dpkg-query", "-W", "-f", "${Version}", "wait-for-it"])
    return {
        "tini": num(first_line(["tini", "--version"])),
        "dumb-init": num(first_line(["dumb-init", "--version"])),
        "wait-for-it": f"Debian {deb}" if deb != "unknown" else "unknown",
        "sqlx": num(first_line([tools["sqlx"], "--version"])) if "sqlx" in tools else "?",
        "dbmate": num(first_line([tools["dbmate"], "--version"])) if "dbmate" in tools else "?",
        "alembic": "alembic " + num(first_line([tools["alembic"], "--version"])) if "alembic" in tools else "alembic",
        "postgres": first_line(["/usr/lib/postgresql/15/bin/postgres", "--version"]),
    }


def shift_headings(text: str) -> list[str]:
    """A detailed report, its headings one level down, so they nest under this one's."""
    return [("#" + line) if line.startswith("#") else line for line in text.rstrip().splitlines()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", required=True)
    ap.add_argument("--roadie", required=True, help="the binary the benchmarks ran")
    ap.add_argument("--commit", required=True, help="what the binary was built from")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--load-before", default="")
    ap.add_argument("--tool", action="append", default=[], help="NAME=PATH (sqlx, dbmate, alembic)")
    ap.add_argument("--step", action="append", default=[], help="NAME=SECONDS:EXIT, one per step of bench/run")
    args = ap.parse_args()

    res = args.results
    tools = dict(t.split("=", 1) for t in args.tool)
    steps = {}
    for st in args.step:
        name, _, rest = st.partition("=")
        secs, _, code = rest.partition(":")
        steps[name] = (float(secs), int(code))
    v = versions(tools)
    failed = {name for name, (_, code) in steps.items() if code != 0}
    # A benchmark that failed counts as not run, whatever files it left (bench/run removes the
    # previous run's before it starts, so nothing here is stale).
    sup = Samples(os.path.join(res, "supervise.csv") if "supervise" not in failed else None)
    mig = Samples(os.path.join(res, "migrate.csv") if "migrate" not in failed else None)
    rdy = read_readiness(os.path.join(res, "readiness.csv")) if "readiness" not in failed else {}

    load_now = loadavg()
    size = os.path.getsize(args.roadie)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    t = Table()
    supervise_rows(t, sup, v)
    readiness_rows(t, rdy, v)
    migrate_rows(t, mig, v)
    wrong_password_rows(t, mig, v)

    title = f"roadie {args.commit.split(' (')[0]}, {stamp}, {os.cpu_count()} cores" + (" — QUICK run, rough numbers" if args.quick else "")
    png = os.path.join(res, "report.png")
    why_not = figure(png, rdy, sup, mig, title)

    out = [
        "# roadie side by side with the tools it replaces",
        "",
        f"- commit: {args.commit}",
        f"- date: {stamp}",
        f"- machine: {platform.node()}, {cpu_model()}, {os.cpu_count()} cores (nproc),"
        f" Linux {platform.release()}; load average (1/5/15 min) before: {args.load_before or 'unknown'},"
        f" after: {load_now} (other work on the machine makes the timing rows noisy)",
        f"- roadie: {first_line([args.roadie, '--version'])}, static binary {size:,} bytes ({size / 2**20:.1f} MiB)",
        f"- peers: tini {v['tini']}, dumb-init {v['dumb-init']}, wait-for-it ({v['wait-for-it']}),"
        f" sqlx-cli {v['sqlx']}, dbmate {v['dbmate']}, {v['alembic']}; {v['postgres']}",
        "- run: " + (", ".join(f"{k} {s:.0f} s" + ("" if c == 0 else f" (**failed, exit {c}**: see {k}.log)")
                              for k, (s, c) in steps.items()) or "steps not recorded")
        + (" — **QUICK mode: few iterations, the numbers are rough**" if args.quick else ""),
        "",
        "Medians unless the row says otherwise; \"roadie / it\" is roadie's cell over the peer's"
        " (below 1: roadie smaller or faster), left blank where a ratio says nothing. Each"
        " benchmark interleaves roadie and its peers in a random order, so noise hits them alike;"
        " the sections below hold the spreads, methods and goals.",
        "",
        *t.markdown(),
        "",
        "Figure: [report.png](report.png)" + (f" (not drawn: {why_not})" if why_not else
                                              " — (a) readiness latency per waiter, (b) boot with nothing to"
                                              " migrate per tool, (c) supervision start-up overhead per init;"
                                              " every run a point, boxes are quartiles."),
        "",
        "Raw samples: [supervise.csv](supervise.csv), [readiness.csv](readiness.csv),"
        " [migrate.csv](migrate.csv); logs of this run: supervise.log, readiness.log, migrate.log.",
        "",
    ]
    for name in BENCHES:
        md = os.path.join(res, f"{name}.md")
        out.append("---\n")
        if os.path.exists(md) and name not in failed:
            with open(md) as f:
                out += shift_headings(f.read())
        else:
            out.append(f"## bench/{name}: no report (it did not run, or failed: see {name}.log)")
        out.append("")
    with open(os.path.join(res, "REPORT.md"), "w") as f:
        f.write("\n".join(out))
    print("\n".join(out[: 12 + len(t.lines) + len(t.groups)]))
    if why_not:
        print(f"report: {why_not}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
