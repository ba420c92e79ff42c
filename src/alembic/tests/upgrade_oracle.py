"""The oracle of roadie's at-head verdict: the real `alembic upgrade`, and what it changed.

Reads a JSON list of cases on stdin; each case is {"cwd", "args", "env", "tables", "flask"}: the
working directory, alembic's command line (global options, then `upgrade head` or `upgrade
heads`; with "flask": true, Flask-Migrate's `flask` command line, run in a child process),
environment variables for env.py, and the version tables to write first, as
{"<sqlite file>": {"<table>": [rows]}} (each file is created anew). For each case it writes the
tables, reads every table of every file, runs alembic's own command line (`CommandLine`, as the
`alembic` console script does, raising instead of exiting), and reads them again. Prints one
answer per case, in order, as a JSON list: {"before": {file: {table: rows}}, "outcome":
"noop" | "changed" | "error: ..."}.
"""

import io
import json
import os
import sqlite3
import subprocess
import sys
import warnings

from alembic.config import CommandLine, Config


def snapshot(files):
    tables = {}
    for path in files:
        if not os.path.exists(path):
            tables[path] = {}
            continue
        con = sqlite3.connect(path)
        names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        tables[path] = {n: sorted(str(r[0]) for r in con.execute(f'SELECT * FROM "{n}"')) for n in names}
        con.close()
    return tables


def write(files):
    for path, tables in files.items():
        if os.path.exists(path):
            os.remove(path)
        con = sqlite3.connect(path)
        for table, rows in tables.items():
            con.execute(f'CREATE TABLE "{table}" (version_num VARCHAR(32) NOT NULL PRIMARY KEY)')
            con.executemany(f'INSERT INTO "{table}" VALUES (?)', [(r,) for r in rows])
        con.commit()
        con.close()


def flask(args, cwd):
    """`flask ARGS` (Flask-Migrate's command line) in a child process: None or the error."""
    program = os.path.join(os.path.dirname(sys.executable), "flask")
    done = subprocess.run([program] + args, cwd=cwd, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        return f"error: flask exited with {done.returncode}: {done.stderr.strip()[-500:]}"
    return None


def upgrade(args, cwd):
    os.chdir(cwd)
    cl = CommandLine(prog="alembic")
    options = cl.parser.parse_args(args)
    options.raiseerr = True
    toml, ini = cl._inis_from_config(options)
    cfg = Config(file_=ini, toml_file=toml, ini_section=options.name, cmd_opts=options, stdout=io.StringIO())
    try:
        cl.run_cmd(cfg, options)
        return None
    except BaseException as e:  # env.py may sys.exit
        return f"error: {type(e).__name__}: {e}"


def main():
    warnings.simplefilter("ignore")
    answers = []
    for case in json.load(sys.stdin):
        saved = dict(os.environ)
        os.environ.update(case["env"])
        write(case["tables"])
        before = snapshot(case["tables"])
        run = flask if case.get("flask") else upgrade
        error = run(case["args"], case["cwd"])
        after = snapshot(case["tables"])
        os.environ.clear()
        os.environ.update(saved)
        outcome = error or ("noop" if after == before else "changed")
        answers.append({"before": before, "outcome": outcome})
    json.dump(answers, sys.stdout)


main()
