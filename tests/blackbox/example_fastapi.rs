//! The FastAPI + alembic example (examples/fastapi-alembic), end to end: roadie waits for the
//! database, runs the example's alembic revisions (one of them a data migration) under the
//! lock, then runs uvicorn with 2 workers, which serves the migrated rows over HTTP. The Python
//! packages come from the venv that scripts/venv.sh builds. The claims the Rust example shares
//! run in example_apps.rs; here, alembic's own.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::Duration;

use crate::example_apps::{Example, customers_json, stopped_by_sigterm};
use crate::support::http::{get, http_get};
use crate::support::postgres::{Postgres, free_port};
use crate::support::server::Server as _;
use crate::support::terminal::OnTerminal;
use crate::support::{Finished, Mode, Roadie, Running, roadie, scratch};

/// The emails the data migration (0004) inserts, in id order.
const SEEDED: [&str; 3] = ["ada@example.com", "grace@example.com", "edsger@example.com"];

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fastapi-alembic")
}

fn venv_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin");
    assert!(
        bin.join("uvicorn").exists() && bin.join("alembic").exists(),
        "run scripts/venv.sh first (scripts/test.sh does)"
    );
    bin
}

/// `uvicorn app.main:app --workers 2` on 127.0.0.1:`port`, as the example's README runs it.
fn uvicorn(port: u16) -> Vec<String> {
    [
        "uvicorn",
        "app.main:app",
        "--workers",
        "2",
        "--host",
        "127.0.0.1",
        "--port",
        &port.to_string(),
    ]
    .map(String::from)
    .to_vec()
}

/// roadie `args` in the example directory `dir`, with the venv on PATH and `database_url` in
/// DATABASE_URL (read by roadie, alembic's env.py and the app alike).
fn example(mode: Mode, dir: &Path, database_url: &str, args: &[String]) -> Roadie {
    let mut r = roadie(mode, args).current_dir(dir);
    for (key, value) in example_env(database_url) {
        r = r.env(key, &value);
    }
    r
}

/// The environment `example` gives roadie: the venv on PATH, `database_url` in DATABASE_URL.
fn example_env(database_url: &str) -> [(&'static str, String); 3] {
    [
        ("PATH", format!("{}:/usr/bin:/bin", venv_bin().display())),
        ("DATABASE_URL", database_url.to_string()),
        // No __pycache__ left in the source tree.
        ("PYTHONDONTWRITEBYTECODE", "1".to_string()),
    ]
}

/// `roadie ARGS -- uvicorn ...` as a list of strings.
fn with_uvicorn(args: &[&str], port: u16) -> Vec<String> {
    let mut argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    argv.push("--".into());
    argv.extend(uvicorn(port));
    argv
}

/// The FastAPI example as `Example` (example_apps.rs runs the claims both examples share).
pub struct FastApi;

impl Example for FastApi {
    fn boot(&self, mode: Mode, extra: &[&str], url: &str, port: u16) -> Roadie {
        example(mode, &example_dir(), url, &with_uvicorn(extra, port))
    }

    fn healthy(&self, r: &Running, port: u16) {
        let (status, body) = get(r, port, "/health");
        let health: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        if status != 200 || health["status"] != "ok" {
            r.fail(&format!("GET /health: {status} {body}"));
        }
    }

    /// GETs /customers and asserts it lists the seeded customers with their orders.
    fn serves_the_seeded_customers(&self, r: &Running, port: u16) {
        let (status, body) = get(r, port, "/customers");
        let customers = customers_json(r, status, &body);
        let emails: Vec<&str> = customers
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["email"].as_str())
            .collect();
        if emails != SEEDED {
            r.fail(&format!("GET /customers: {body}"));
        }
        let ada = &customers[0];
        if ada["plan"] != "pro" || ada["orders"] != 2 || ada["total_cents"] != 2499 {
            r.fail(&format!("GET /customers: Ada's row is wrong: {body}"));
        }
    }

    fn error_field(&self) -> &'static str {
        "detail"
    }

    /// SIGTERMs roadie and asserts uvicorn's graceful shutdown: both workers finish, the parent
    /// stops, and roadie exits with uvicorn's code, 0.
    fn stops_gracefully(&self, r: Running) {
        let finished = stopped_by_sigterm(r);
        finished
            .stderr_has("SIGTERM received: stopping uvicorn")
            .stderr_has("INFO:     Shutting down")
            .stderr_has("INFO:     Stopping parent process")
            .stderr_has("uvicorn exited with code 0")
            // Nothing needed SIGKILL. (uvicorn's multiprocessing resource tracker may outlive
            // uvicorn by milliseconds, so roadie may say it sent SIGTERM to what was left
            // behind; the tracker ignores it and exits by itself once uvicorn's pipe closes.)
            .stderr_lacks("stop grace of")
            .stderr_lacks("sending SIGKILL")
            .stderr_lacks("Traceback");
        assert_eq!(
            finished
                .stderr
                .matches("INFO:     Finished server process")
                .count(),
            2,
            "both workers finish\n{finished}"
        );
    }

    /// Asserts from roadie's output and the port that uvicorn was never started.
    fn never_started(&self, finished: &Finished, port: u16) {
        finished
            .stderr_lacks("starting uvicorn")
            .stderr_lacks("Started server process")
            .stderr_lacks("Uvicorn running");
        assert!(
            !finished.stdout.contains("HTTP") && http_get(port, "/health").is_err(),
            "uvicorn ran\n{finished}"
        );
    }

    /// In the example's directory (alembic.ini there: a boot would run alembic), the venv on
    /// PATH.
    fn debug_shell(
        &self,
        mode: Mode,
        shell: &str,
        hooks: &Path,
        url: &str,
        env: &[(&str, &str)],
    ) -> OnTerminal {
        let example_env = example_env(url);
        let mut all: Vec<(&str, &str)> =
            example_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        all.extend(env);
        OnTerminal::start_with(
            mode,
            &["--hooks", &hooks.to_string_lossy(), shell],
            Some(&example_dir()),
            &all,
        )
    }
}

#[test]
fn alembic_current_as_the_command_waits_for_the_database_but_does_not_migrate_first() {
    let mut pg = Postgres::new();
    let r = example(
        Mode::Pid1,
        &example_dir(),
        &pg.app_url(),
        &["alembic".into(), "current".into()],
    )
    .start();
    thread::sleep(Duration::from_millis(500));
    pg.start();
    if r.attempts_before_ready() < 2 {
        r.fail("roadie found the database ready before it was started");
    }
    r.finish()
        .code(0)
        .stderr_has("database ready in")
        .stderr_has("alembic is the migrator itself: waiting, but not migrating first")
        .stderr_has("starting alembic (pid")
        .stderr_has("Context impl PostgresqlImpl")
        .stderr_has("alembic exited with code 0")
        .stderr_lacks("migration lock")
        .stderr_lacks("Running upgrade");
    assert!(!pg.table_exists("alembic_version"), "alembic migrated");
    assert!(!pg.table_exists("customers"), "alembic migrated");
}

#[test]
fn a_broken_revision_exits_65_rolls_everything_back_and_never_starts_uvicorn() {
    let pg = Postgres::started();
    // A copy of the example with a sixth revision that fails on the server.
    let dir = scratch();
    let copy = dir.path().join("fastapi-alembic");
    let cp = Command::new("cp")
        .arg("-a")
        .arg(example_dir())
        .arg(&copy)
        .output()
        .expect("cp");
    assert!(cp.status.success(), "cp: {cp:?}");
    std::fs::write(
        copy.join("migrations/versions/0006_broken.py"),
        "\"\"\"a broken revision\"\"\"\n\
         from alembic import op\n\
         revision = \"0006\"\n\
         down_revision = \"0005\"\n\
         branch_labels = None\n\
         depends_on = None\n\
         def upgrade() -> None:\n    op.execute(\"ALTER TABLE customers ADD COLUMN nickname TEXT NOT NUL\")\n\
         def downgrade() -> None:\n    pass\n",
    )
    .expect("writing the broken revision");
    let port = free_port();
    let finished = example(Mode::Pid1, &copy, &pg.app_url(), &with_uvicorn(&[], port)).run();
    finished
        .code(65)
        .stderr_has("Running upgrade 0005 -> 0006, a broken revision")
        .stderr_has("syntax error at or near \"NUL\"")
        .stderr_has("migration command \"alembic upgrade head\" exited with code 1");
    FastApi.never_started(&finished, port);
    // One transaction for the whole upgrade (PostgreSQL's transactional DDL): nothing stays.
    assert!(!pg.table_exists("alembic_version"), "not rolled back");
    assert!(!pg.table_exists("customers"), "not rolled back");
}

/// Ten replicas of the example at once with the seed hook under the lock; asserts every one
/// started and exactly one admin exists.
fn ten_replicas_seed_one_admin(pg: &Postgres) {
    let dir = example_dir();
    let hooks = dir.join("prestart").to_string_lossy().into_owned();
    let args: Vec<String> = ["--locked-hooks", &hooks, "sh", "-c", "echo app-started"]
        .map(String::from)
        .to_vec();
    let replicas: Vec<Running> = (0..10)
        .map(|_| example(Mode::Subreaper, &dir, &pg.app_url(), &args).start())
        .collect();
    for r in replicas {
        r.finish_within(Duration::from_secs(90))
            .code(0)
            .stdout_has("app-started")
            .stderr_has("1 hook done");
    }
    assert_eq!(
        pg.psql("SELECT count(*) FROM customers WHERE email = 'admin@example.com'"),
        "1"
    );
}

#[test]
fn ten_replicas_with_the_seed_hook_under_the_lock_create_one_admin_on_an_empty_database_and_at_head()
 {
    let pg = Postgres::started();
    ten_replicas_seed_one_admin(&pg);
    assert_eq!(pg.psql("SELECT version_num FROM alembic_version"), "0005");
    // At head now; the admin gone again: the seed must still run exactly once.
    pg.psql("DELETE FROM customers WHERE email = 'admin@example.com'");
    ten_replicas_seed_one_admin(&pg);
}
