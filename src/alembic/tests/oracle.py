"""The oracle of roadie's alembic reader: the real alembic, asked what it sees.

Reads a JSON list of cases on stdin; each case is {"cwd", "args", "db", "row_sets"}: the working
directory, the global alembic options (-c/-n), the SQLite file that sqlalchemy.url points at, and
the version-table contents to try. For each case it runs alembic's own command line
(`alembic.config.CommandLine`, as the `alembic` console script does, with stdout captured)
for `heads` and, for each row set, `current --check-heads` (with --raiseerr's behaviour, so that
"not at head" and a failure are told apart); and reads the revision map through
`ScriptDirectory.from_config` for what the command line does not print (every revision, bases,
branch points, merge points). Prints one JSON answer per case, in order, as a JSON list.
"""

import io
import json
import os
import sqlite3
import sys
import warnings

from alembic.config import CommandLine, Config
from alembic.script import ScriptDirectory
from alembic.util import DatabaseNotAtHead


def run(args, cwd):
    """One alembic command line; ("ok" | "not_at_head" | "error: ...", stdout)."""
    os.chdir(cwd)
    cl = CommandLine(prog="alembic")
    options = cl.parser.parse_args(args)
    options.raiseerr = True  # raise instead of printing FAILED and exiting, to tell errors apart
    toml, ini = cl._inis_from_config(options)
    # A UTF-8 stream like a terminal's (alembic writes non-ASCII as '?' to a stream without an encoding).
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    cfg = Config(file_=ini, toml_file=toml, ini_section=options.name, cmd_opts=options, stdout=out)

    def text():
        out.flush()
        return out.buffer.getvalue().decode("utf-8")

    try:
        cl.run_cmd(cfg, options)
        return "ok", text()
    except DatabaseNotAtHead:
        return "not_at_head", text()
    except Exception as e:
        return f"error: {type(e).__name__}: {e}", text()


def revision_map(args, cwd):
    os.chdir(cwd)
    cl = CommandLine(prog="alembic")
    options = cl.parser.parse_args(args + ["heads"])
    toml, ini = cl._inis_from_config(options)
    cfg = Config(file_=ini, toml_file=toml, ini_section=options.name, cmd_opts=options)
    script = ScriptDirectory.from_config(cfg)
    revs = list(script.walk_revisions())
    return {
        "revisions": sorted(r.revision for r in revs),
        "bases": sorted(script.get_bases()),
        "branch_points": sorted(r.revision for r in revs if r.is_branch_point),
        "merge_points": sorted(r.revision for r in revs if r.is_merge_point),
    }


def write_rows(db, rows):
    con = sqlite3.connect(db)
    con.execute("DROP TABLE IF EXISTS alembic_version")
    con.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
    con.executemany("INSERT INTO alembic_version VALUES (?)", [(r,) for r in rows])
    con.commit()
    con.close()


def main():
    warnings.simplefilter("ignore")
    answers = []
    for case in json.load(sys.stdin):
        status, out = run(case["args"] + ["heads"], case["cwd"])
        answer = {"heads_status": status, "heads": sorted(line.split()[0] for line in out.splitlines() if line.strip())}
        if status == "ok":
            answer.update(revision_map(case["args"], case["cwd"]))
        answer["check_heads"] = []
        for rows in case["row_sets"]:
            write_rows(case["db"], rows)
            answer["check_heads"].append(run(case["args"] + ["current", "--check-heads"], case["cwd"])[0])
        answers.append(answer)
    json.dump(answers, sys.stdout)


main()
