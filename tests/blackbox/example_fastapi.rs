//! The FastAPI + alembic example (examples/fastapi-alembic), end to end: roadie waits for the
//! database, runs the example's alembic revisions (one of them a data migration) under the
//! lock, then runs uvicorn with 2 workers, which serves the migrated rows over HTTP. The Python
//! packages come from the venv that scripts/venv.sh builds.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use rstest::rstest;

use crate::support::http::{get, http_get};
use crate::support::postgres::{Postgres, free_port};
use crate::support::server::Server as _;
use crate::support::terminal::OnTerminal;
use crate::support::{Finished, Mode, Roadie, Running, roadie, scratch, script};

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

/// Asserts from roadie's output and the port that uvicorn was never started.
fn uvicorn_never_started(finished: &Finished, port: u16) {
    finished
        .stderr_lacks("starting uvicorn")
        .stderr_lacks("Started server process")
        .stderr_lacks("Uvicorn running");
    assert!(
        !finished.stdout.contains("HTTP") && http_get(port, "/health").is_err(),
        "uvicorn ran\n{finished}"
    );
}

/// GETs /customers and asserts it lists the seeded customers with their orders.
fn serves_the_seeded_customers(r: &Running, port: u16) {
    let (status, body) = get(r, port, "/customers");
    if status != 200 {
        r.fail(&format!("GET /customers: {status} {body}"));
    }
    let customers: serde_json::Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| r.fail(&format!("GET /customers: not JSON ({e}): {body}")));
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

/// SIGTERMs roadie and asserts uvicorn's graceful shutdown: both workers finish, the parent
/// stops, and roadie exits with uvicorn's code, 0.
fn stops_gracefully(r: Running) {
    r.signal(libc::SIGTERM);
    let sent = Instant::now();
    let finished = r.finish();
    finished
        .code(0)
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
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "took {:?} after SIGTERM\n{finished}",
        sent.elapsed()
    );
}

/// `roadie ARGS -- uvicorn ...` as a list of strings.
fn with_uvicorn(args: &[&str], port: u16) -> Vec<String> {
    let mut argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    argv.push("--".into());
    argv.extend(uvicorn(port));
    argv
}

#[test]
fn roadie_boots_the_example_against_a_postgres_that_starts_a_second_later() {
    let mut pg = Postgres::new();
    let port = free_port();
    let r = example(
        Mode::Subreaper,
        &example_dir(),
        &pg.app_url(),
        &with_uvicorn(&[], port),
    )
    .start();
    thread::sleep(Duration::from_secs(1));
    pg.start();
    serves_the_seeded_customers(&r, port);
    if r.attempts_before_ready() < 2 {
        r.fail("roadie found the database ready before it was started");
    }
    let stderr = r.stderr_so_far();
    // The order of a boot: wait, then alembic under the lock (all 5 revisions), then uvicorn.
    let order = [
        "database ready in",
        "running alembic upgrade head (pid",
        "Running upgrade 0003 -> 0004, data migration",
        "Running upgrade 0004 -> 0005",
        "migration command done in",
        "starting uvicorn (pid",
        "Application startup complete",
    ];
    let positions: Vec<Option<usize>> = order.iter().map(|n| stderr.find(n)).collect();
    if positions.iter().any(Option::is_none) || !positions.is_sorted() {
        r.fail(&format!("expected, in this order: {order:?}"));
    }
    assert_eq!(pg.psql("SELECT version_num FROM alembic_version"), "0005");
    stops_gracefully(r);
}

#[test]
fn sigterm_to_roadie_as_pid_1_shuts_uvicorn_down_gracefully_and_exits_0() {
    let pg = Postgres::started();
    let port = free_port();
    let r = example(
        Mode::Pid1,
        &example_dir(),
        &pg.app_url(),
        &with_uvicorn(&[], port),
    )
    .start();
    let (status, body) = get(&r, port, "/health");
    if status != 200 {
        r.fail(&format!("GET /health: {status} {body}"));
    }
    serves_the_seeded_customers(&r, port);
    stops_gracefully(r);
    // Nothing of the app is left holding the database.
    assert!(crate::support::postgres::eventually(
        Duration::from_secs(5),
        || pg.psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'roadie'") == "0"
    ));
}

#[test]
fn a_second_boot_on_the_same_database_finds_nothing_to_migrate_and_serves_again() {
    let pg = Postgres::started();
    let port = free_port();
    let first = example(
        Mode::Subreaper,
        &example_dir(),
        &pg.app_url(),
        &with_uvicorn(&[], port),
    )
    .start();
    serves_the_seeded_customers(&first, port);
    stops_gracefully(first);

    let port = free_port();
    let second = example(
        Mode::Subreaper,
        &example_dir(),
        &pg.app_url(),
        &with_uvicorn(&[], port),
    )
    .start();
    serves_the_seeded_customers(&second, port);
    let stderr = second.stderr_so_far();
    // At head, roadie reads the revisions itself: alembic (and Python's start-up) is skipped.
    if stderr.contains("Running upgrade")
        || !stderr.contains("schema up to date (alembic at head 0005; alembic not started)")
    {
        second.fail("the second boot should find the database at head without starting alembic");
    }
    // The data migration ran once: still three customers.
    assert_eq!(pg.psql("SELECT count(*) FROM customers"), "3");
    assert_eq!(pg.psql("SELECT version_num FROM alembic_version"), "0005");
    stops_gracefully(second);
}

#[test]
fn skip_migrations_starts_the_app_without_migrating() {
    let pg = Postgres::started();
    let port = free_port();
    let r = example(
        Mode::Subreaper,
        &example_dir(),
        &pg.app_url(),
        &with_uvicorn(&["--skip-migrations"], port),
    )
    .start();
    let (status, body) = get(&r, port, "/health");
    if status != 200 {
        r.fail(&format!("GET /health: {status} {body}"));
    }
    // The app runs, but the schema is not there: the example answers 503 naming the table.
    let (status, body) = get(&r, port, "/customers");
    if status != 503 || !body.contains("relation \\\"customers\\\" does not exist") {
        r.fail(&format!(
            "GET /customers without migrations: {status} {body}"
        ));
    }
    assert!(!pg.table_exists("alembic_version"), "alembic ran");
    assert!(!pg.table_exists("customers"), "alembic ran");
    let stderr = r.stderr_so_far();
    if !stderr.contains("--skip-migrations: not migrating") || stderr.contains("migration lock") {
        r.fail("expected roadie to say it skips the migrations, and take no lock");
    }
    stops_gracefully(r);
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
    uvicorn_never_started(&finished, port);
    // One transaction for the whole upgrade (PostgreSQL's transactional DDL): nothing stays.
    assert!(!pg.table_exists("alembic_version"), "not rolled back");
    assert!(!pg.table_exists("customers"), "not rolled back");
}

#[test]
fn the_sqlite_embedded_default_boots_migrates_and_serves_with_no_server() {
    let dir = scratch();
    let db = dir.path().join("example.db");
    let url = format!("sqlite:///{}", db.display());
    let port = free_port();
    let r = example(Mode::Pid1, &example_dir(), &url, &with_uvicorn(&[], port)).start();
    serves_the_seeded_customers(&r, port);
    let stderr = r.stderr_so_far();
    if !stderr.contains("running alembic upgrade head (pid")
        || !stderr.contains("Context impl SQLiteImpl")
        || !stderr.contains("Running upgrade 0003 -> 0004, data migration")
        || !stderr.contains("migration command done in")
    {
        r.fail("expected alembic to migrate the SQLite file under roadie");
    }
    // roadie's lock on SQLite is an flock on a file next to the database.
    if !db.is_file() || !dir.path().join("example.db.roadie-lock").is_file() {
        r.fail(&format!(
            "no database or lock file next to {}",
            db.display()
        ));
    }
    stops_gracefully(r);
}

#[rstest]
fn a_failing_hook_after_the_migrations_exits_65_naming_it_and_never_starts_uvicorn(
    #[values(Mode::Subreaper, Mode::Pid1)] mode: Mode,
) {
    let pg = Postgres::started();
    let dir = scratch();
    let hooks = dir.path().join("hooks");
    std::fs::create_dir(&hooks).expect("mkdir hooks");
    // Through the app's own engine, as a cache warm-up would: the hook sees the migrated rows.
    script(
        &hooks,
        "10-count-customers",
        "exec python -c 'from sqlalchemy import text; from app.db import engine; \
         print(\"hook saw\", engine.connect().execute(text(\"SELECT count(*) FROM customers\")).scalar(), \"customers\")'",
        0o755,
    );
    script(
        &hooks,
        "20-warm-cache",
        "echo 'warm-cache: the cache is unreachable' >&2; exit 4",
        0o755,
    );
    let after = dir.path().join("30-ran");
    script(
        &hooks,
        "30-after",
        &format!("touch '{}'", after.display()),
        0o755,
    );
    let port = free_port();
    let hooks_arg = hooks.to_string_lossy().into_owned();
    let finished = example(
        mode,
        &example_dir(),
        &pg.app_url(),
        &with_uvicorn(&["--hooks", &hooks_arg], port),
    )
    .run();
    let failed = format!(
        "hook {}/20-warm-cache exited with code 4; the app is not started",
        hooks.display()
    );
    finished
        .code(65)
        .stdout_has("hook saw 3 customers")
        .stderr_has("warm-cache: the cache is unreachable")
        .stderr_has(&failed);
    uvicorn_never_started(&finished, port);
    // Migrate, then the hooks in name order, stopping at the first failure.
    let order = [
        "running alembic upgrade head (pid",
        "Running upgrade 0004 -> 0005",
        "migration command done in",
        "warm-cache: the cache is unreachable",
        &failed,
    ];
    let positions: Vec<Option<usize>> = order.iter().map(|n| finished.stderr.find(n)).collect();
    assert!(
        positions.iter().all(Option::is_some) && positions.is_sorted(),
        "expected, in this order: {order:?}\n{finished}"
    );
    assert!(
        !after.exists(),
        "a hook ran after the failing one\n{finished}"
    );
    // The migrations were committed before the hooks ran: a failing hook does not undo them.
    assert_eq!(pg.psql("SELECT version_num FROM alembic_version"), "0005");
    assert_eq!(pg.psql("SELECT count(*) FROM customers"), "3");
}

#[rstest]
fn bash_as_the_command_is_a_debug_shell_that_skips_the_boot_while_the_database_is_down(
    #[values(Mode::Subreaper, Mode::Pid1)] mode: Mode,
) {
    // Nothing listens there: a boot would wait for it (60 s), alembic would fail on it.
    let down = format!("postgres://roadie:pw@127.0.0.1:{}/app", free_port());
    let dir = scratch();
    let hooks = dir.path().join("hooks");
    std::fs::create_dir(&hooks).expect("mkdir hooks");
    let hook_ran = dir.path().join("hook-ran");
    script(
        &hooks,
        "10-marker",
        &format!("touch '{}'", hook_ran.display()),
        0o755,
    );
    let home = dir.path().to_string_lossy().into_owned();
    let env = example_env(&down);
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // No ~/.bashrc of the machine's.
    env.push(("HOME", &home));
    // `docker run -it image bash`, with the example's usual set-up (alembic.ini in the working
    // directory, so a boot would run alembic) and hooks.
    let mut t = OnTerminal::start_with(
        mode,
        &["--hooks", &hooks.to_string_lossy(), "bash"],
        Some(&example_dir()),
        &env,
    );
    t.shows("[roadie] INFO  bash is an interactive shell: skipping wait, migrations and hooks");
    t.shell_has_the_foreground();
    // A command typed into the shell runs at once: alembic, with the example's environment,
    // fails fast on the database that is down.
    let typed = Instant::now();
    t.type_in(b"alembic current; echo \"alem\"\"bic=$?\"\n");
    t.shows("Connection refused");
    t.shows("alembic=1");
    if typed.elapsed() > Duration::from_secs(10) {
        t.fail(&format!("alembic current took {:?}", typed.elapsed()));
    }
    t.exit_debug_shell("bash");
    if hook_ran.exists() {
        t.fail("the hook ran");
    }
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
