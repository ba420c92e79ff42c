#!/usr/bin/env python3
"""alembic at head, without Python: the boot of the FastAPI example (examples/fastapi-alembic)
on a database already at head, side by side in one run, interleaved:

  true                      the floor: spawning a process
  roadie                    roadie -- true (reads the revisions itself; alembic not started)
  roadie --no-alembic-shortcut
                            roadie -- true, starting `alembic upgrade head` as before
  the seeds' script         sh -c 'until pg_isready ...; do sleep 1; done;
                            alembic upgrade head; exec true'

and 10 roadie replicas at once at head: wall time until all have started `true`, vs one alone.
As root (the cluster runs as postgres): python3 bench/alembic_at_head.py [--runs 30].
Needs .venv (scripts/venv.sh) and a built roadie (ROADIE_BIN, else target/release/roadie).
Writes bench/results/alembic_at_head.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import PGBIN, med, ms  # noqa: E402
from migrate import Cluster  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples/fastapi-alembic")
VENV_BIN = os.path.join(ROOT, ".venv/bin")


def timed(argv: list[str], env: dict[str, str]) -> float:
    """Wall time of one run, in ns; it must exit 0."""
    start = time.perf_counter_ns()
    r = subprocess.run(argv, cwd=EXAMPLE, env=env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    took = time.perf_counter_ns() - start
    if r.returncode != 0:
        raise harness.BenchError(f"{argv[:3]} exited {r.returncode}: {r.stderr.decode()[-500:]}")
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    roadie = os.environ.get("ROADIE_BIN", os.path.join(ROOT, "target/release/roadie"))
    if not os.path.exists(roadie):
        raise harness.BenchError(f"no roadie at {roadie} (set ROADIE_BIN)")
    harness.become_child_subreaper()
    with tempfile.TemporaryDirectory(prefix="bench-alembic-") as work:
        os.chmod(work, 0o755)  # the postgres user enters it to reach its own directory
        cluster = Cluster(work, harness.free_port())
        cluster.initdb()
        cluster.start()
        try:
            url = cluster.create_db("app")
            env = dict(os.environ, DATABASE_URL=url, PYTHONDONTWRITEBYTECODE="1",
                       PATH=f"{VENV_BIN}:/usr/bin:/bin", ROADIE_LOG="warn")
            # Migrate once, so every measured boot is at head.
            timed([roadie, "--", "true"], env)
            script = (f"until {PGBIN}/pg_isready -q -h 127.0.0.1 -p {cluster.port}; do sleep 1; "
                      "done; alembic upgrade head; exec true")
            cases = {
                "true": ["true"],
                "roadie": [roadie, "--", "true"],
                "roadie --no-alembic-shortcut": [roadie, "--no-alembic-shortcut", "--", "true"],
                "the seeds' script": ["sh", "-c", script],
            }
            samples: dict[str, list[float]] = {name: [] for name in cases}
            for _ in range(args.runs):
                for name, argv in cases.items():
                    samples[name].append(timed(argv, env))
            alone, ten = [], []
            for _ in range(max(3, args.runs // 5)):
                alone.append(timed([roadie, "--", "true"], env))
                start = time.perf_counter_ns()
                procs = [subprocess.Popen([roadie, "--", "true"], cwd=EXAMPLE, env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                         for _ in range(10)]
                codes = [p.wait() for p in procs]
                ten.append(time.perf_counter_ns() - start)
                if any(codes):
                    raise harness.BenchError(f"a replica failed: {codes}")
        finally:
            cluster.stop("fast")
    floor = med(samples["true"])
    lines = [
        "# alembic at head: the FastAPI example's boot",
        "",
        f"{args.runs} interleaved runs each, medians; machine: {harness.cpu_model()}, "
        f"load {harness.loadavg()}; roadie {roadie}.",
        "",
        "| boot at head | ms | over `true` | vs roadie |",
        "| --- | ---: | ---: | ---: |",
    ]
    mine = med(samples["roadie"])
    for name, xs in samples.items():
        m = med(xs)
        lines.append(f"| {name} | {ms(m):.1f} | {ms(m - floor):+.1f} | {m / mine:.1f}x |")
    lines += [
        "",
        f"10 roadie replicas at once at head: {ms(med(ten)):.1f} ms until all started, "
        f"vs {ms(med(alone)):.1f} ms alone ({len(ten)} rounds, medians).",
        "",
    ]
    harness.write_report("\n".join(lines), os.path.join(ROOT, "bench/results/alembic_at_head.md"))
    return 0


if __name__ == "__main__":
    harness.exit_with(main)
