//! The Rust example (examples/rust-service), end to end: roadie waits for the database, applies
//! the repo's sqlx migrations (migrations/, one of them a data migration) under the lock, then
//! runs the axum service, which serves the migrated rows over HTTP and stops gracefully on the
//! SIGTERM roadie forwards. The service binary is built by `cargo build --examples`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::postgres::{Postgres, eventually, free_port};
use crate::support::{DEADLINE, Mode, Roadie, Running, roadie, scratch};

/// The customers the data migration (20260101000003) inserts, in id order, with the count and
/// total of their orders.
const SEEDED: [(&str, i64, i64); 2] = [("Ada Lovelace", 2, 4700), ("Grace Hopper", 1, 1999)];

/// The service's log line when a stop signal arrives.
const GRACEFUL: &str = "[rust-service] SIGTERM received: shutting down gracefully";

fn service_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/debug/examples/rust-service");
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
    roadie(
        mode,
        [
            "--migrations".into(),
            migrations_dir().into_os_string(),
            "--".into(),
            service_bin().into_os_string(),
        ],
    )
    .env("DATABASE_URL", database_url)
    .env("PORT", &port.to_string())
}

/// A connection to 127.0.0.1:`port`, every read and write with a timeout.
fn connect(port: u16) -> std::io::Result<TcpStream> {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let stream = TcpStream::connect_timeout(&address, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    Ok(stream)
}

/// One HTTP/1.1 GET on `stream`: the status code and the body (read to its Content-Length, so
/// a keep-alive connection stays usable).
fn exchange(
    stream: &mut TcpStream,
    port: u16,
    path: &str,
    keep_alive: bool,
) -> std::io::Result<(u16, String)> {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\n\
         Connection: {connection}\r\n\r\n"
    )?;
    let mut reader = BufReader::new(&*stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line: {status_line:?}")))?;
    let mut length = 0;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 {
            return Err(std::io::Error::other("the connection closed in the head"));
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value
                .trim()
                .parse()
                .map_err(|_| std::io::Error::other(format!("bad {header:?}")))?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// GET `path` on a fresh connection.
fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    exchange(&mut connect(port)?, port, path, false)
}

/// GETs `path` until the service answers (connection refused while roadie waits and migrates),
/// failing with roadie's output at the deadline.
fn get(r: &Running, port: u16, path: &str) -> (u16, String) {
    let until = Instant::now() + DEADLINE;
    loop {
        match http_get(port, path) {
            Ok(response) => return response,
            Err(e) if Instant::now() > until => r.fail(&format!(
                "GET {path} on port {port}: no answer in time: {e}"
            )),
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
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

/// N in roadie's `database ready in 1.02s after N attempts`.
fn probes_before_ready(r: &Running) -> u32 {
    r.stderr_containing("database ready in");
    let stderr = r.stderr_so_far();
    let line = stderr
        .lines()
        .find(|l| l.contains("[roadie] ") && l.contains("database ready in"))
        .unwrap_or_default();
    line.rsplit("after ")
        .next()
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| r.fail(&format!("no attempt count in {line:?}")))
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
    if probes_before_ready(&r) < 2 {
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
