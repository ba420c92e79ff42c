//! The Rust example (examples/rust-service), end to end: roadie waits for the database, applies
//! the repo's sqlx migrations (migrations/, one of them a data migration) under the lock, then
//! runs the axum service, which serves the migrated rows over HTTP and stops gracefully on the
//! SIGTERM roadie forwards. The service binary is built by `cargo build --examples`. The claims
//! the FastAPI example shares run in example_apps.rs; here, the service's own.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use rstest::rstest;

use crate::example_apps::{Example, customers_json, stopped_by_sigterm};
use crate::support::http::{connect, get, http_get};
use crate::support::postgres::{Postgres, eventually, free_port};
use crate::support::server::Server as _;
use crate::support::terminal::OnTerminal;
use crate::support::{DEADLINE, Finished, Mode, Roadie, Running, roadie, scratch};

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

/// The versions recorded in `_sqlx_migrations`, comma-separated, with their success flag.
fn recorded(pg: &Postgres) -> String {
    pg.psql(
        "SELECT string_agg(version || ':' || success, ',' ORDER BY version) FROM _sqlx_migrations",
    )
}

/// Asserts that a GET /customers answer lists the seeded customers with their orders.
fn assert_seeded_customers(r: &Running, status: u16, body: &str) {
    let customers = customers_json(r, status, body);
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

/// The Rust example as `Example` (example_apps.rs runs the claims both examples share).
pub struct RustService;

impl Example for RustService {
    fn boot(&self, mode: Mode, extra: &[&str], url: &str, port: u16) -> Roadie {
        service_with(mode, &migrations_dir(), extra, url, port)
    }

    fn healthy(&self, r: &Running, port: u16) {
        let (status, body) = get(r, port, "/health");
        if status != 200 || body != r#"{"status":"ok"}"# {
            r.fail(&format!("GET /health: {status} {body}"));
        }
    }

    /// GETs /health and /customers, once the service answers.
    fn serves_the_seeded_customers(&self, r: &Running, port: u16) {
        self.healthy(r, port);
        let (status, body) = get(r, port, "/customers");
        assert_seeded_customers(r, status, &body);
    }

    fn error_field(&self) -> &'static str {
        "error"
    }

    /// SIGTERMs roadie and asserts the service's graceful shutdown: roadie forwards the signal, the
    /// service drains and closes its pool, and roadie exits with its code, 0, within 5 s.
    fn stops_gracefully(&self, r: Running) {
        let finished = stopped_by_sigterm(r);
        finished
            .stderr_has("SIGTERM received: stopping")
            .stderr_has(GRACEFUL)
            .stderr_has("[rust-service] all requests finished; closing the database pool")
            .stderr_has("[rust-service] stopped")
            .stderr_has("rust-service exited with code 0")
            .stderr_lacks("stop grace of")
            .stderr_lacks("sending SIGKILL")
            .stderr_lacks("[rust-service] error");
    }

    /// Asserts from roadie's output and the port that the service was never started.
    fn never_started(&self, finished: &Finished, port: u16) {
        finished
            .stderr_lacks("); starting ")
            .stderr_lacks("rust-service (pid ")
            .stderr_lacks("[rust-service]");
        assert!(
            http_get(port, "/health").is_err(),
            "the service answers on port {port}\n{finished}"
        );
    }

    /// With the example's usual arguments (`--migrations`; a boot would migrate).
    fn debug_shell(
        &self,
        mode: Mode,
        shell: &str,
        hooks: &Path,
        url: &str,
        env: &[(&str, &str)],
    ) -> OnTerminal {
        let port = free_port().to_string();
        let mut all = vec![("DATABASE_URL", url), ("PORT", port.as_str())];
        all.extend(env);
        OnTerminal::start_with(
            mode,
            &[
                "--migrations".into(),
                migrations_dir().into_os_string(),
                "--hooks".into(),
                hooks.into(),
                "--".into(),
                shell.into(),
            ],
            None,
            &all,
        )
    }
}

#[test]
fn sigterm_lets_a_request_in_flight_finish_and_stops_accepting_new_ones() {
    let pg = Postgres::started();
    let port = free_port();
    let r = RustService
        .boot(Mode::Pid1, &[], &pg.app_url(), port)
        .start();
    RustService.serves_the_seeded_customers(&r, port);
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
    RustService.never_started(&finished, port);
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
    RustService.serves_the_seeded_customers(&r, port);
    if !r
        .stderr_so_far()
        .contains("[roadie] INFO  1 migration applied in")
    {
        r.fail("expected the fixed migration, and only it, to be applied");
    }
    assert_eq!(pg.psql("SELECT count(*) FROM coupons"), "2");
    RustService.stops_gracefully(r);
}
