//! alembic where a uv or poetry project keeps it, not on PATH (issue 23): what only reads the
//! schema (`migrate status`, `--wait-for-schema`) never needs it; the auto-detected `alembic
//! upgrade head` is looked for in `./.venv/bin` after PATH, and nowhere is 127 naming why roadie
//! chose it and what to do.

use std::path::Path;

use crate::support::postgres::Postgres;
use crate::support::server::Server as _;
use crate::support::{Mode, Roadie, alembic_project, roadie, scratch, venv_bin};

/// A PATH without the test venv (nor any alembic).
const BARE_PATH: &str = "/usr/bin:/bin";

/// `roadie ARGS` in `project` with `path` as PATH and the database in DATABASE_URL.
fn in_project(pg: &Postgres, project: &Path, path: &str, args: &[&str]) -> Roadie {
    roadie(Mode::Subreaper, args.iter().copied())
        .current_dir(project)
        .env("PATH", path)
        .env("DATABASE_URL", &pg.app_url())
}

const APP: [&str; 3] = ["sh", "-c", "echo app-started"];

#[test]
fn status_json_and_the_schema_wait_need_no_alembic_on_path() {
    let pg = Postgres::started();
    let dir = scratch();
    let project = alembic_project(dir.path());
    let with_venv = format!("{}:{BARE_PATH}", venv_bin().display());
    in_project(&pg, &project, &with_venv, &APP).run().code(0);

    in_project(&pg, &project, BARE_PATH, &["migrate", "status"])
        .run()
        .code(0)
        .stdout_has("0005")
        .stdout_has("applied");
    let json = in_project(&pg, &project, BARE_PATH, &["migrate", "status", "--json"]).run();
    json.code(0);
    let rows: serde_json::Value = serde_json::from_str(json.stdout.trim()).unwrap();
    assert_eq!(rows.as_array().map(Vec::len), Some(5), "{json}");
    let mut waiting = vec!["--wait-for-schema"];
    waiting.extend(APP);
    in_project(&pg, &project, BARE_PATH, &waiting)
        .run()
        .code(0)
        .stdout_has("app-started")
        .stderr_has("schema up to date");
    in_project(&pg, &project, BARE_PATH, &["wait", "--wait-for-schema"])
        .run()
        .code(0);
}

#[test]
fn an_auto_detected_alembic_found_nowhere_is_127_naming_why_and_what_to_do() {
    let pg = Postgres::started();
    let dir = scratch();
    let project = alembic_project(dir.path());
    in_project(&pg, &project, BARE_PATH, &APP)
        .run()
        .code(127)
        .stderr_has("command not found: \"alembic\" (searched PATH=/usr/bin:/bin and .venv/bin)")
        .stderr_has("because it found alembic.ini in the working directory")
        .stderr_has("--migrate-command \"uv run alembic upgrade head\"");
    assert!(!pg.table_exists("alembic_version"));
}

#[test]
fn an_auto_detected_alembic_in_the_projects_venv_is_run_and_said() {
    let pg = Postgres::started();
    let dir = scratch();
    let project = alembic_project(dir.path());
    let venv = venv_bin().join("..");
    std::os::unix::fs::symlink(venv, project.join(".venv")).unwrap();
    in_project(&pg, &project, BARE_PATH, &APP)
        .run()
        .code(0)
        .stdout_has("app-started")
        .stderr_has("alembic is not on PATH: running ")
        .stderr_has("/.venv/bin/alembic (the project's virtual environment")
        .stderr_has("alembic at head 0005, read back");
    assert!(pg.table_exists("customers"));
}
