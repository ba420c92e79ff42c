//! What both examples must do under roadie (examples/fastapi-alembic: alembic and uvicorn;
//! examples/rust-service: sqlx migrations and axum), one test body each, run against both:
//! boot against a database that comes up late, stop gracefully as PID 1, boot again with
//! nothing to migrate, skip the migrations, run on SQLite, stop at a failing hook, give a debug
//! shell. Each example's `Example` and its own claims are in example_fastapi.rs and
//! example_rust.rs.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use rstest::rstest;

use crate::example_fastapi::FastApi;
use crate::example_rust::RustService;
use crate::support::http::{connect, exchange, get};
use crate::support::postgres::{Postgres, eventually, free_port};
use crate::support::server::Server as _;
use crate::support::terminal::OnTerminal;
use crate::support::{Finished, Mode, Roadie, Running, scratch, script};

/// An example app run by roadie as its README says.
pub trait Example {
    /// roadie with `extra` flags running the app, `url` in DATABASE_URL (read by roadie, the
    /// migrator and the app alike), the app serving HTTP on `port`.
    fn boot(&self, mode: Mode, extra: &[&str], url: &str, port: u16) -> Roadie;

    /// Asserts that GET /health answers 200: the app runs and its database answers.
    fn healthy(&self, r: &Running, port: u16);

    /// GETs /customers and asserts it lists the seeded customers with their orders.
    fn serves_the_seeded_customers(&self, r: &Running, port: u16);

    /// The field of the app's JSON 503 that holds the database's error.
    fn error_field(&self) -> &'static str;

    /// SIGTERMs roadie and asserts the app's graceful shutdown: roadie forwards the signal,
    /// the app finishes its work, and roadie exits with its code, 0, within 5 s.
    fn stops_gracefully(&self, r: Running);

    /// Asserts from roadie's output and the port that the app was never started.
    fn never_started(&self, finished: &Finished, port: u16);

    /// `docker run -it image SHELL` on a terminal, with the example's usual arguments and
    /// working directory, `url` in DATABASE_URL, `hooks` as --hooks and `env` added.
    fn debug_shell(
        &self,
        mode: Mode,
        shell: &str,
        hooks: &Path,
        url: &str,
        env: &[(&str, &str)],
    ) -> OnTerminal;
}

/// Whether `text` holds `needles` in this order: each found after the end of the one before,
/// and no needle first seen before the previous one was.
fn in_order(text: &str, needles: &[&str]) -> bool {
    let first: Vec<Option<usize>> = needles.iter().map(|n| text.find(n)).collect();
    let mut from = 0;
    let one_after_another = needles.iter().all(|n| match text[from..].find(n) {
        Some(at) => {
            from += at + n.len();
            true
        }
        None => false,
    });
    one_after_another && first.iter().all(Option::is_some) && first.is_sorted()
}

/// A GET /customers answer as JSON; fails the test unless it is a 200 with JSON.
pub fn customers_json(r: &Running, status: u16, body: &str) -> serde_json::Value {
    if status != 200 {
        r.fail(&format!("GET /customers: {status} {body}"));
    }
    serde_json::from_str(body)
        .unwrap_or_else(|e| r.fail(&format!("GET /customers: not JSON ({e}): {body}")))
}

/// SIGTERMs roadie and asserts that it exits with 0 (the app's code) within 5 s of the signal;
/// returns how it ended, for the app's own lines of a graceful shutdown.
pub fn stopped_by_sigterm(r: Running) -> Finished {
    r.signal(libc::SIGTERM);
    let sent = Instant::now();
    let finished = r.finish();
    finished.code(0);
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "took {:?} after SIGTERM\n{finished}",
        sent.elapsed()
    );
    finished
}

/// How many connections the role `roadie` (roadie's and the app's) has open.
fn connections(pg: &Postgres) -> String {
    pg.psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'roadie'")
}

#[rstest]
#[case::fastapi(
    &FastApi,
    // The order of a boot: wait, then alembic under the lock (all 5 revisions), then uvicorn.
    &[
        "database ready in",
        "running alembic upgrade head (pid",
        "Running upgrade 0003 -> 0004, data migration",
        "Running upgrade 0004 -> 0005",
        "migration command done in",
        "starting uvicorn (pid",
        "Application startup complete",
    ],
    &[("SELECT version_num FROM alembic_version", "0005")],
)]
#[case::rust(
    &RustService,
    // The order of a boot: wait, then the 4 migrations under the lock, then the service.
    &[
        "database ready in",
        "4 migrations applied in",
        "4 migrations ",
        "); starting ",
        "rust-service (pid ",
        "[rust-service] listening on http://0.0.0.0:",
    ],
    &[(
        "SELECT string_agg(version::text, ',' ORDER BY version) FROM _sqlx_migrations WHERE success",
        "20260101000001,20260101000002,20260101000003,20260101000004",
    )],
)]
fn roadie_boots_the_example_against_a_postgres_that_starts_a_second_later(
    #[case] example: &dyn Example,
    #[case] order: &[&str],
    #[case] migrated: &[(&str, &str)],
) {
    let mut pg = Postgres::new();
    let port = free_port();
    let r = example
        .boot(Mode::Subreaper, &[], &pg.app_url(), port)
        .start();
    thread::sleep(Duration::from_secs(1));
    pg.start();
    example.serves_the_seeded_customers(&r, port);
    if r.attempts_before_ready() < 2 {
        r.fail("roadie found the database ready before it was started");
    }
    if !in_order(&r.stderr_so_far(), order) {
        r.fail(&format!("expected, in this order: {order:?}"));
    }
    for (sql, expected) in migrated {
        assert_eq!(pg.psql(sql), *expected, "{sql}");
    }
    example.stops_gracefully(r);
}

#[rstest]
#[case::fastapi(&FastApi)]
#[case::rust(&RustService)]
fn sigterm_to_roadie_as_pid_1_shuts_the_app_down_gracefully_and_exits_0(
    #[case] example: &dyn Example,
) {
    let pg = Postgres::started();
    let port = free_port();
    let r = example.boot(Mode::Pid1, &[], &pg.app_url(), port).start();
    example.healthy(&r, port);
    example.serves_the_seeded_customers(&r, port);
    // A browser's idle keep-alive connection does not hold the shutdown up.
    let mut idle = connect(port).unwrap_or_else(|e| r.fail(&format!("connect: {e}")));
    match exchange(&mut idle, port, "/health", true) {
        Ok((200, _)) => {}
        other => r.fail(&format!(
            "GET /health on a keep-alive connection: {other:?}"
        )),
    }
    example.stops_gracefully(r);
    drop(idle);
    // Nothing of the app is left holding the database.
    assert!(
        eventually(Duration::from_secs(5), || connections(&pg) == "0"),
        "connections left: {}",
        connections(&pg)
    );
}

#[rstest]
#[case::fastapi(
    &FastApi,
    // At head, roadie reads the revisions itself: alembic (and Python's start-up) is skipped.
    "schema up to date (alembic at head 0005; alembic not started)",
    "Running upgrade",
    &[
        ("SELECT count(*) FROM customers", "3"),
        ("SELECT version_num FROM alembic_version", "0005"),
    ],
)]
#[case::rust(
    &RustService,
    "[roadie] INFO  schema up to date",
    "applied in",
    &[
        ("SELECT count(*) FROM customers", "2"),
        ("SELECT count(*) FROM orders", "3"),
        ("SELECT count(*) FROM _sqlx_migrations", "4"),
    ],
)]
fn a_second_boot_on_the_same_database_finds_the_schema_up_to_date_and_serves_again(
    #[case] example: &dyn Example,
    #[case] up_to_date: &str,
    #[case] migrating: &str,
    #[case] unchanged: &[(&str, &str)],
) {
    let pg = Postgres::started();
    let port = free_port();
    let first = example
        .boot(Mode::Subreaper, &[], &pg.app_url(), port)
        .start();
    example.serves_the_seeded_customers(&first, port);
    example.stops_gracefully(first);

    let port = free_port();
    let second = example
        .boot(Mode::Subreaper, &[], &pg.app_url(), port)
        .start();
    example.serves_the_seeded_customers(&second, port);
    let stderr = second.stderr_so_far();
    if !stderr.contains(up_to_date) || stderr.contains(migrating) {
        second.fail("the second boot should find the schema up to date and migrate nothing");
    }
    // The data migration ran once: the seeded rows are as the first boot left them.
    for (sql, expected) in unchanged {
        assert_eq!(pg.psql(sql), *expected, "{sql}");
    }
    example.stops_gracefully(second);
}

#[rstest]
#[case::fastapi(&FastApi, &["alembic_version", "customers"])]
#[case::rust(&RustService, &["_sqlx_migrations", "customers", "orders"])]
fn skip_migrations_starts_the_app_on_the_untouched_schema_which_reports_the_missing_table(
    #[case] example: &dyn Example,
    #[case] tables: &[&str],
    #[values(Mode::Subreaper, Mode::Pid1)] mode: Mode,
) {
    let pg = Postgres::started();
    let port = free_port();
    let r = example
        .boot(mode, &["--skip-migrations"], &pg.app_url(), port)
        .start();
    // The app runs and its database answers...
    example.healthy(&r, port);
    // ...but nothing was migrated: the app answers 503 naming the missing table.
    let (status, body) = get(&r, port, "/customers");
    let error: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    if status != 503
        || !error[example.error_field()]
            .as_str()
            .is_some_and(|e| e.contains("relation \"customers\" does not exist"))
    {
        r.fail(&format!(
            "GET /customers without migrations: {status} {body}"
        ));
    }
    for table in tables {
        if pg.table_exists(table) {
            r.fail(&format!("{table} exists: roadie migrated"));
        }
    }
    let stderr = r.stderr_so_far();
    if !stderr.contains("[roadie] INFO  --skip-migrations: not migrating")
        || stderr.contains("migration lock")
        || stderr.contains("applied in")
        || stderr.contains("schema up to date")
    {
        r.fail("expected roadie to say it skips the migrations, and take no lock");
    }
    example.stops_gracefully(r);
}

#[rstest]
#[case::fastapi(
    &FastApi,
    "sqlite:///{}",
    &[
        "running alembic upgrade head (pid",
        "Context impl SQLiteImpl",
        "Running upgrade 0003 -> 0004, data migration",
        "migration command done in",
    ],
)]
// sqlx's form, which roadie reads alike: `sqlite:` and an absolute path.
#[case::rust(
    &RustService,
    "sqlite:{}",
    &[
        "4 migrations applied in",
        "[rust-service] listening on http://0.0.0.0:",
        "(SQLite pool of at most 5 connections)",
    ],
)]
fn the_sqlite_embedded_default_boots_migrates_and_serves_with_no_server(
    #[case] example: &dyn Example,
    #[case] form: &str,
    #[case] says: &[&str],
) {
    let dir = scratch();
    let db = dir.path().join("example.db");
    let url = form.replace("{}", &db.to_string_lossy());
    let port = free_port();
    let r = example.boot(Mode::Pid1, &[], &url, port).start();
    example.serves_the_seeded_customers(&r, port);
    let stderr = r.stderr_so_far();
    if !says.iter().all(|line| stderr.contains(line)) {
        r.fail(&format!(
            "expected roadie to migrate the SQLite file, then the app to open it: {says:?}"
        ));
    }
    // roadie's lock on SQLite is an flock on a file next to the database.
    if !db.is_file() || !dir.path().join("example.db.roadie-lock").is_file() {
        r.fail(&format!(
            "no database or lock file next to {}",
            db.display()
        ));
    }
    example.stops_gracefully(r);
}

#[rstest]
#[case::fastapi(
    &FastApi,
    // Through the app's own engine, as a cache warm-up would: the hook sees the migrated rows.
    "exec python -c 'from sqlalchemy import text; from app.db import engine; \
     print(\"hook saw\", engine.connect().execute(text(\"SELECT count(*) FROM customers\")).scalar(), \"customers\")'",
    "hook saw 3 customers",
    &[
        "running alembic upgrade head (pid",
        "Running upgrade 0004 -> 0005",
        "migration command done in",
    ],
    &[
        ("SELECT version_num FROM alembic_version", "0005"),
        ("SELECT count(*) FROM customers", "3"),
    ],
)]
#[case::rust(
    &RustService,
    // With the container's environment: the hook sees the migrated rows.
    "echo \"hook saw $(psql \"$DATABASE_URL\" -XAtc 'SELECT count(*) FROM orders') orders\"",
    "hook saw 3 orders",
    &["database ready in", "4 migrations applied in"],
    &[("SELECT count(*) FROM _sqlx_migrations WHERE success", "4")],
)]
fn a_failing_hook_after_the_migrations_exits_65_naming_it_and_never_starts_the_app(
    #[case] example: &dyn Example,
    #[case] counting_hook: &str,
    #[case] hook_saw: &str,
    #[case] migrated: &[&str],
    #[case] committed: &[(&str, &str)],
    #[values(Mode::Subreaper, Mode::Pid1)] mode: Mode,
) {
    let pg = Postgres::started();
    let dir = scratch();
    let hooks = dir.path().join("hooks");
    std::fs::create_dir(&hooks).expect("mkdir hooks");
    script(&hooks, "10-count-rows", counting_hook, 0o755);
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
    let finished = example
        .boot(
            mode,
            &["--hooks", &hooks.to_string_lossy()],
            &pg.app_url(),
            port,
        )
        .run();
    let failed = format!(
        "hook {}/20-warm-cache exited with code 4; the app is not started",
        hooks.display()
    );
    finished
        .code(65)
        .stdout_has(hook_saw)
        .stderr_has("warm-cache: the cache is unreachable")
        .stderr_has(&failed);
    example.never_started(&finished, port);
    // Migrate, then the hooks in name order, stopping at the first failure.
    let mut order = migrated.to_vec();
    order.extend(["warm-cache: the cache is unreachable", &failed]);
    assert!(
        in_order(&finished.stderr, &order),
        "expected, in this order: {order:?}\n{finished}"
    );
    assert!(
        !after.exists(),
        "a hook ran after the failing one\n{finished}"
    );
    // The migrations were committed before the hooks ran: a failing hook does not undo them.
    for (sql, expected) in committed {
        assert_eq!(pg.psql(sql), *expected, "{sql}");
    }
}

#[rstest]
#[case::fastapi(
    &FastApi,
    "bash",
    // alembic, with the example's environment, fails fast on the database that is down.
    b"alembic current; echo \"alem\"\"bic=$?\"\n",
    "alembic=1",
    Duration::from_secs(10)
)]
#[case::rust(
    &RustService,
    "sh",
    b"psql \"$DATABASE_URL\" -XAtc 'SELECT 1'; echo \"ps\"\"ql=$?\"\n",
    "psql=2",
    Duration::from_secs(5)
)]
fn a_shell_as_the_command_is_a_debug_shell_that_skips_the_boot_while_the_database_is_down(
    #[case] example: &dyn Example,
    #[case] shell: &str,
    #[case] typed: &[u8],
    #[case] exited: &str,
    #[case] at_once: Duration,
    #[values(Mode::Subreaper, Mode::Pid1)] mode: Mode,
) {
    // Nothing listens there: a boot would wait for it (60 s), a migrator would fail on it.
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
    // No ~/.bashrc (or $ENV) of the machine's.
    let home = dir.path().to_string_lossy().into_owned();
    let mut t = example.debug_shell(mode, shell, &hooks, &down, &[("HOME", &home)]);
    t.shows(&format!(
        "[roadie] INFO  {shell} is an interactive shell: skipping wait, migrations and hooks"
    ));
    t.shell_has_the_foreground();
    // A command typed into the shell runs at once, with the container's environment, and
    // finds the database down.
    let typed_at = Instant::now();
    t.type_in(typed);
    t.shows("Connection refused");
    t.shows(exited);
    if typed_at.elapsed() > at_once {
        t.fail(&format!(
            "{:?} took {:?}",
            String::from_utf8_lossy(typed),
            typed_at.elapsed()
        ));
    }
    t.exit_debug_shell(shell);
    if hook_ran.exists() {
        t.fail("the hook ran");
    }
}
