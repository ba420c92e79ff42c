//! The Rust example (examples/rust-service), end to end: roadie waits for the database, applies
//! the repo's sqlx migrations (migrations/, one of them a data migration) under the lock, then
//! runs the axum service, which serves the migrated rows over HTTP and stops gracefully on the
//! SIGTERM roadie forwards. The service binary is built by `cargo build --examples`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use rstest::rstest;

use crate::support::http::{connect, exchange, get, http_get};
use crate::support::postgres::{Postgres, eventually, free_port};
use crate::support::server::Server as _;
use crate::support::terminal::OnTerminal;
use crate::support::{DEADLINE, Finished, Mode, Roadie, Running, roadie, scratch, script};

/// The customers the data migration (20260101000003) inserts, in id order, with the count and
/// total of their orders.
const SEEDED: [(&str, i64, i64); 2] = [("Ada Lovelace", 2, 4700), ("Grace Hopper", 1, 1999)];

/// The service's log line when a stop signal arrives.
const GRACEFUL: &str = "[rust-service] SIGTERM received: shutting down gracefully";

fn service_bin() -> PathBuf {
    // Beside this test binary (target/debug/deps/), so a CARGO_TARGET_DIR elsewhere is honoured.
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/");
    let bin = profile.join("examples/rust-service");
    assert!(
        bin.is_file(),
        "{} is missing: run cargo build --examples (scripts/test.sh does)",
        bin.display()
    );
    bin
}

fn migrations_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations")
}

/// `roadie --migrations <repo>/migrations -- rust-service`, as the example's README runs it:
/// `database_url` in DATABASE_URL (read by roadie and the service alike), the service on `port`.
fn service(mode: Mode, database_url: &str, port: u16) -> Roadie {
    service_with(mode, &migrations_dir(), &[], database_url, port)
}

/// `roadie --migrations <migrations> EXTRA... -- rust-service`, as `service` runs it.
fn service_with(
    mode: Mode,
    migrations: &Path,
    extra: &[&str],
    database_url: &str,
    port: u16,
) -> Roadie {
    let mut args: Vec<OsString> = vec!["--migrations".into(), migrations.into()];
    args.extend(extra.iter().map(OsString::from));
    args.extend(["--".into(), service_bin().into_os_string()]);
    roadie(mode, args)
        .env("DATABASE_URL", database_url)
        .env("PORT", &port.to_string())
}

/// Asserts from roadie's output and the port that the service was never started.
fn service_never_started(finished: &Finished, port: u16) {
    finished
        .stderr_lacks("); starting ")
        .stderr_lacks("rust-service (pid ")
        .stderr_lacks("[rust-service]");
    assert!(
        http_get(port, "/health").is_err(),
        "the service answers on port {port}\n{finished}"
    );
}

/// The versions recorded in `_sqlx_migrations`, comma-separated, with their success flag.
fn recorded(pg: &Postgres) -> String {
    pg.psql(
        "SELECT string_agg(version || ':' || success, ',' ORDER BY version) FROM _sqlx_migrations",
    )
}

/// Asserts that a GET /customers answer lists the seeded customers with their orders.
fn assert_seeded_customers(r: &Running, status: u16, body: &str) {
    if status != 200 {
        r.fail(&format!("GET /customers: {status} {body}"));
    }
    let customers: serde_json::Value = serde_json::from_str(body)
        .unwrap_or_else(|e| r.fail(&format!("GET /customers: not JSON ({e}): {body}")));
    let rows: Vec<(&str, i64, i64)> = customers
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default(),
                c["orders"].as_i64().unwrap_or(-1),
                c["total_cents"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    if rows != SEEDED {
        r.fail(&format!("GET /customers: expected {SEEDED:?}, got {body}"));
    }
}

/// GETs /health and /customers, once the service answers.
fn serves_the_seeded_customers(r: &Running, port: u16) {
    let (status, body) = get(r, port, "/health");
    if status != 200 || body != r#"{"status":"ok"}"# {
        r.fail(&format!("GET /health: {status} {body}"));
    }
    let (status, body) = get(r, port, "/customers");
    assert_seeded_customers(r, status, &body);
}

/// SIGTERMs roadie and asserts the service's graceful shutdown: roadie forwards the signal, the
/// service drains and closes its pool, and roadie exits with its code, 0, within 5 s.
fn stops_gracefully(r: Running) {
    r.signal(libc::SIGTERM);
    let sent = Instant::now();
    let finished = r.finish();
    finished
        .code(0)
        .stderr_has("SIGTERM received: stopping")
        .stderr_has(GRACEFUL)
        .stderr_has("[rust-service] all requests finished; closing the database pool")
        .stderr_has("[rust-service] stopped")
        .stderr_has("rust-service exited with code 0")
        .stderr_lacks("stop grace of")
        .stderr_lacks("sending SIGKILL")
        .stderr_lacks("[rust-service] error");
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "took {:?} after SIGTERM\n{finished}",
        sent.elapsed()
    );
}

/// How many connections the role `roadie` (roadie's and the service's) has open.
fn connections(pg: &Postgres) -> String {
    pg.psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'roadie'")
}

#[test]
fn roadie_boots_the_service_against_a_postgres_that_starts_a_second_later() {
    let mut pg = Postgres::new();
    let port = free_port();
    let r = service(Mode::Subreaper, &pg.app_url(), port).start();
    thread::sleep(Duration::from_secs(1));
    pg.start();
    serves_the_seeded_customers(&r, port);
    if r.attempts_before_ready() < 2 {
        r.fail("roadie found the database ready before it was started");
    }
    // The order of a boot: wait, then the 4 migrations under the lock, then the service.
    let stderr = r.stderr_so_far();
    let order = [
        "database ready in",
        "4 migrations applied in",
        "4 migrations ",
        "); starting ",
        "rust-service (pid ",
        "[rust-service] listening on http://0.0.0.0:",
    ];
    let mut from = 0;
    for needle in order {
        match stderr[from..].find(needle) {
            Some(at) => from += at + needle.len(),
            None => r.fail(&format!("expected, in this order: {order:?}")),
        }
    }
    assert_eq!(
        pg.psql("SELECT string_agg(version::text, ',' ORDER BY version) FROM _sqlx_migrations WHERE success"),
        "20260101000001,20260101000002,20260101000003,20260101000004"
    );
    stops_gracefully(r);
}

#[test]
fn sigterm_to_roadie_as_pid_1_shuts_the_service_down_gracefully_and_exits_0() {
    let pg = Postgres::started();
    let port = free_port();
    let r = service(Mode::Pid1, &pg.app_url(), port).start();
    serves_the_seeded_customers(&r, port);
    // A browser's idle keep-alive connection does not hold the shutdown up.
    let mut idle = connect(port).unwrap_or_else(|e| r.fail(&format!("connect: {e}")));
    match exchange(&mut idle, port, "/health", true) {
        Ok((200, _)) => {}
        other => r.fail(&format!(
            "GET /health on a keep-alive connection: {other:?}"
        )),
    }
    stops_gracefully(r);
    drop(idle);
    // The pool is closed: nothing of the service is left holding the database.
    assert!(
        eventually(Duration::from_secs(5), || connections(&pg) == "0"),
        "connections left: {}",
        connections(&pg)
    );
}

#[test]
fn sigterm_lets_a_request_in_flight_finish_and_stops_accepting_new_ones() {
    let pg = Postgres::started();
    let port = free_port();
    let r = service(Mode::Pid1, &pg.app_url(), port).start();
    serves_the_seeded_customers(&r, port);
    thread::scope(|s| {
        // A lock on `orders` holds GET /customers' query, and so the request, in flight.
        let locker = s.spawn(|| {
            pg.psql("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(3)");
        });
        let locked = eventually(DEADLINE, || {
            pg.psql(
                "SELECT count(*) FROM pg_locks WHERE relation = 'orders'::regclass \
                 AND mode = 'AccessExclusiveLock' AND granted",
            ) == "1"
        });
        if !locked {
            r.fail("the test's lock on orders was never granted");
        }
        let in_flight = s.spawn(|| http_get(port, "/customers"));
        let waiting = eventually(DEADLINE, || {
            pg.psql(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE usename = 'roadie' AND wait_event_type = 'Lock'",
            ) == "1"
        });
        if !waiting || in_flight.is_finished() || locker.is_finished() {
            r.fail("GET /customers never waited on the lock (or the lock ended too soon)");
        }
        r.signal(libc::SIGTERM);
        let sent = Instant::now();
        r.stderr_containing(GRACEFUL);
        // New connections are refused while the request in flight still runs.
        let refused = eventually(
            DEADLINE,
            || matches!(connect(port), Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
        );
        if !refused || in_flight.is_finished() {
            r.fail("the service still accepted connections, or the request ended early");
        }
        if r.stderr_so_far().contains("[rust-service] stopped") {
            r.fail("the service stopped before its request in flight finished");
        }
        // The lock goes; the query and then the request finish; then the service exits.
        locker.join().expect("the locker");
        let (status, body) = in_flight
            .join()
            .expect("the request")
            .unwrap_or_else(|e| r.fail(&format!("GET /customers in flight: {e}")));
        assert_seeded_customers(&r, status, &body);
        let finished = r.finish();
        finished
            .code(0)
            .stderr_has(GRACEFUL)
            .stderr_has("[rust-service] stopped")
            .stderr_lacks("sending SIGKILL");
        assert!(
            sent.elapsed() < Duration::from_secs(5),
            "took {:?} after SIGTERM\n{finished}",
            sent.elapsed()
        );
    });
}

#[test]
fn a_second_boot_on_the_same_database_finds_the_schema_up_to_date_and_serves_again() {
    let pg = Postgres::started();
    let port = free_port();
    let first = service(Mode::Subreaper, &pg.app_url(), port).start();
    serves_the_seeded_customers(&first, port);
    stops_gracefully(first);

    let port = free_port();
    let second = service(Mode::Subreaper, &pg.app_url(), port).start();
    serves_the_seeded_customers(&second, port);
    let stderr = second.stderr_so_far();
    if !stderr.contains("[roadie] INFO  schema up to date") || stderr.contains("applied in") {
        second.fail("the second boot should find the schema up to date and apply nothing");
    }
    // The data migration ran once: still two customers, three orders.
    assert_eq!(pg.psql("SELECT count(*) FROM customers"), "2");
    assert_eq!(pg.psql("SELECT count(*) FROM orders"), "3");
    assert_eq!(pg.psql("SELECT count(*) FROM _sqlx_migrations"), "4");
    stops_gracefully(second);
}

#[test]
fn the_sqlite_embedded_default_boots_migrates_and_serves_with_no_server() {
    let dir = scratch();
    let db = dir.path().join("example.db");
    // sqlx's form, which roadie reads alike: `sqlite:` and an absolute path.
    let url = format!("sqlite:{}", db.display());
    let port = free_port();
    let r = service(Mode::Pid1, &url, port).start();
    serves_the_seeded_customers(&r, port);
    let stderr = r.stderr_so_far();
    if !stderr.contains("4 migrations applied in")
        || !stderr.contains("[rust-service] listening on http://0.0.0.0:")
        || !stderr.contains("(SQLite pool of at most 5 connections)")
    {
        r.fail("expected roadie to migrate the SQLite file, then the service to open it");
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
fn skip_migrations_starts_the_service_on_the_untouched_schema_which_reports_the_missing_table(
    #[values(Mode::Subreaper, Mode::Pid1)] mode: Mode,
) {
    let pg = Postgres::started();
    let port = free_port();
    let r = service_with(
        mode,
        &migrations_dir(),
        &["--skip-migrations"],
        &pg.app_url(),
        port,
    )
    .start();
    // The service runs and its database answers...
    let (status, body) = get(&r, port, "/health");
    if status != 200 || body != r#"{"status":"ok"}"# {
        r.fail(&format!("GET /health: {status} {body}"));
    }
    // ...but nothing was migrated: the service answers 503 naming the missing table.
    let (status, body) = get(&r, port, "/customers");
    let error: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    if status != 503
        || !error["error"]
            .as_str()
            .is_some_and(|e| e.contains("relation \"customers\" does not exist"))
    {
        r.fail(&format!(
            "GET /customers without migrations: {status} {body}"
        ));
    }
    for table in ["_sqlx_migrations", "customers", "orders"] {
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
    stops_gracefully(r);
}

#[rstest]
fn a_failing_migration_exits_65_keeps_the_runs_earlier_migrations_and_never_starts_the_service(
    #[values(Mode::Subreaper, Mode::Pid1)] mode: Mode,
) {
    let pg = Postgres::started();
    // The repo's migrations, and a fifth that fails on its third statement.
    let dir = scratch();
    let migrations = dir.path().join("migrations");
    std::fs::create_dir(&migrations).expect("mkdir migrations");
    for entry in std::fs::read_dir(migrations_dir()).expect("reading migrations/") {
        let entry = entry.expect("a migration");
        std::fs::copy(entry.path(), migrations.join(entry.file_name())).expect("copying");
    }
    let broken = migrations.join("20260101000005_add_coupons.sql");
    let coupons = |third: &str| {
        format!(
            "CREATE TABLE coupons (code VARCHAR(20) PRIMARY KEY, \
             customer_id INTEGER NOT NULL REFERENCES customers (id));\n\
             INSERT INTO coupons VALUES ('ADA10', 1);\n\
             {third} INTO coupons VALUES ('GRACE10', 2);\n"
        )
    };
    std::fs::write(&broken, coupons("INSRT")).expect("writing the broken migration");
    let port = free_port();
    let finished = service_with(mode, &migrations, &[], &pg.app_url(), port).run();
    finished
        .code(65)
        .stderr_has(&format!(
            "migration 20260101000005 ({}, line 3) failed: syntax error at or near \"INSRT\"",
            broken.display()
        ))
        .stderr_has("rolled back, nothing recorded; the 4 migrations applied earlier in this run (20260101000001 to 20260101000004) stay applied")
        .stderr_lacks("migrations applied in");
    service_never_started(&finished, port);
    // Each migration is its own transaction (sqlx's): the four before it stay applied; the
    // failing one is rolled back completely and not recorded, so nothing is "dirty".
    assert_eq!(
        recorded(&pg),
        "20260101000001:true,20260101000002:true,20260101000003:true,20260101000004:true"
    );
    assert_eq!(pg.psql("SELECT count(*) FROM orders"), "3");
    assert!(!pg.table_exists("coupons"), "not rolled back\n{finished}");

    // Fix the file and boot again: only the fifth is applied, and the service starts.
    std::fs::write(&broken, coupons("INSERT")).expect("fixing the migration");
    let port = free_port();
    let r = service_with(mode, &migrations, &[], &pg.app_url(), port).start();
    serves_the_seeded_customers(&r, port);
    if !r
        .stderr_so_far()
        .contains("[roadie] INFO  1 migration applied in")
    {
        r.fail("expected the fixed migration, and only it, to be applied");
    }
    assert_eq!(pg.psql("SELECT count(*) FROM coupons"), "2");
    stops_gracefully(r);
}

#[rstest]
fn a_failing_hook_after_the_migrations_exits_65_naming_it_and_never_starts_the_service(
    #[values(Mode::Subreaper, Mode::Pid1)] mode: Mode,
) {
    let pg = Postgres::started();
    let dir = scratch();
    let hooks = dir.path().join("hooks");
    std::fs::create_dir(&hooks).expect("mkdir hooks");
    // With the container's environment: the hook sees the migrated rows.
    script(
        &hooks,
        "10-count-orders",
        "echo \"hook saw $(psql \"$DATABASE_URL\" -XAtc 'SELECT count(*) FROM orders') orders\"",
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
    let finished = service_with(
        mode,
        &migrations_dir(),
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
        .stdout_has("hook saw 3 orders")
        .stderr_has(&failed);
    service_never_started(&finished, port);
    // Migrate, then the hooks in name order, stopping at the first failure.
    let order = [
        "database ready in",
        "4 migrations applied in",
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
    assert_eq!(
        pg.psql("SELECT count(*) FROM _sqlx_migrations WHERE success"),
        "4"
    );
}

#[rstest]
fn sh_as_the_command_is_a_debug_shell_that_skips_the_boot_while_the_database_is_down(
    #[values(Mode::Subreaper, Mode::Pid1)] mode: Mode,
) {
    // Nothing listens there: a boot would wait for it (60 s).
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
    // `docker run -it image sh`, with the example's usual arguments and hooks.
    let mut t = OnTerminal::start_with(
        mode,
        &[
            "--migrations".into(),
            migrations_dir().into_os_string(),
            "--hooks".into(),
            hooks.into_os_string(),
            "--".into(),
            "sh".into(),
        ],
        None,
        &[("DATABASE_URL", &down), ("PORT", &free_port().to_string())],
    );
    t.shows("[roadie] INFO  sh is an interactive shell: skipping wait, migrations and hooks");
    t.shell_has_the_foreground();
    // A command typed into the shell runs at once, with the container's environment, and
    // finds the database down.
    let typed = Instant::now();
    t.type_in(b"psql \"$DATABASE_URL\" -XAtc 'SELECT 1'; echo \"ps\"\"ql=$?\"\n");
    t.shows("Connection refused");
    t.shows("psql=2");
    if typed.elapsed() > Duration::from_secs(5) {
        t.fail(&format!("psql took {:?}", typed.elapsed()));
    }
    t.exit_debug_shell("sh");
    if hook_ran.exists() {
        t.fail("the hook ran");
    }
}
