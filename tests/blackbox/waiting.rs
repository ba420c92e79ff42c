//! The wait stage against a real PostgreSQL: ready means a login and `SELECT 1`; transient
//! failures are retried, permanent ones fail at once with 69; a stop signal ends the wait.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rstest::rstest;

use crate::support::dns::Dns;
use crate::support::postgres::{Postgres, ROADIE_PASSWORD, SPECIAL_PASSWORD, escape, free_port};
use crate::support::{Mode, PRINTS_START, no_secret_in_any_failure, roadie, scratch};

/// A claim with a wide margin (it proves there is no sleep-a-second loop); the precise figures
/// are `bench/readiness`'s.
#[rstest]
fn waits_for_a_postgres_started_2s_later_and_starts_the_app_within_1s_of_it_accepting_logins(
    #[values(Mode::Subreaper, Mode::Pid1)] mode: Mode,
) {
    let mut pg = Postgres::new();
    let r = roadie(
        mode,
        ["--database-url", &pg.app_url(), "sh", "-c", PRINTS_START],
    )
    .start();
    thread::sleep(Duration::from_secs(2));
    pg.start();
    let finished = r.finish();
    finished.code(0).stderr_has("database ready in");
    let started = finished.app_started_at_ms();
    let ready = pg
        .ready_at_ms()
        .expect("the server logged when it was ready")
        * 1000.0;
    let lag = started - ready;
    assert!(
        (0.0..=1000.0).contains(&lag),
        "the app started {lag:.0} ms after the server accepted logins\n{finished}"
    );
}

#[test]
fn a_crash_recovery_start_refusing_logins_for_3s_sees_at_most_20_logins_a_second_after_a_short_fast_window()
 {
    let mut pg = Postgres::new();
    pg.options.push("-c log_connections=on".into());
    pg.start();
    pg.psql("CREATE TABLE written_before_the_crash AS SELECT g FROM generate_series(1, 10000) g");
    pg.crash();
    let r = roadie(
        Mode::Subreaper,
        [
            "--log-level",
            "debug",
            "--database-url",
            &pg.app_url(),
            "sh",
            "-c",
            PRINTS_START,
        ],
    )
    .start();
    r.stderr_containing("not ready:");
    let from = pg.log().len();
    pg.start_recovering();
    thread::sleep(Duration::from_secs(3));
    pg.promote();
    let finished = r.finish();
    finished.code(0).stderr_has("database ready in");
    let logins = pg.connections_since(from);
    let refused = pg.log()[from..]
        .matches("Hot standby mode is disabled")
        .count();
    let evidence = format!(
        "{} logins at (ms after the first) {:?}\n{finished}\n{}",
        logins.len(),
        logins
            .iter()
            .map(|t| (t - logins[0]).round())
            .collect::<Vec<_>>(),
        &pg.log()[from..]
    );
    assert!(
        refused >= 2,
        "logins met 57P03 during the recovery\n{evidence}"
    );
    // The fast window: at most 30 logins (every 10 ms for 300 ms). After it, at most 20 in
    // any second (logins 50 ms apart); 25 leaves room for a backend that logs late.
    let first = logins[0];
    let most_in_a_second = |from: f64| {
        logins
            .iter()
            .filter(|t| **t >= from)
            .map(|t| {
                logins
                    .iter()
                    .filter(|u| **u >= *t && **u < *t + 1000.0)
                    .count()
            })
            .max()
            .unwrap_or(0)
    };
    let after_window = most_in_a_second(first + 400.0);
    assert!(
        after_window <= 25,
        "{after_window} logins in one second after the fast window\n{evidence}"
    );
    let any = most_in_a_second(first);
    assert!(any <= 30 + 25, "{any} logins in one second\n{evidence}");
    let ready = pg
        .ready_at_ms()
        .expect("the server logged when it was ready")
        * 1000.0;
    let lag = finished.app_started_at_ms() - ready;
    assert!(
        (0.0..=1000.0).contains(&lag),
        "the app started {lag:.0} ms after the server accepted logins\n{evidence}"
    );
}

#[test]
fn a_host_name_that_does_not_resolve_yet_is_looked_up_at_most_20_times_a_second() {
    let pg = Postgres::started();
    let name = "db.roadie-readiness.test";
    let dns = Dns::start(name);
    let dir = scratch();
    let url = format!(
        "postgres://roadie:{}@{name}:{}/app",
        escape(ROADIE_PASSWORD),
        pg.port
    );
    let r = roadie(
        Mode::Subreaper,
        ["wait", "--log-level", "debug", "--database-url", &url],
    )
    .before_exec(dns.private_resolv_conf(dir.path()))
    .start();
    r.stderr_containing("not ready:");
    thread::sleep(Duration::from_secs(2));
    let unresolved = dns.lookups();
    dns.resolve();
    let finished = r.finish();
    finished.code(0).stderr_has("database ready in");
    let span = unresolved.last().unwrap().duration_since(unresolved[0]);
    let evidence = format!(
        "{} lookups in {span:?} while the name did not resolve\n{finished}",
        unresolved.len()
    );
    // 20 a second, one more for the first login (sqlx looks the name up itself), and 25%
    // for the edges of the count: a bound a sleep-free loop would break by far.
    assert!(
        unresolved.len() as f64 <= 2.0 + 25.0 * span.as_secs_f64(),
        "{evidence}"
    );
    assert!(
        span >= Duration::from_secs(1),
        "roadie kept looking the name up\n{evidence}"
    );
}

#[test]
fn gives_up_at_the_wait_timeout_with_69() {
    let port = free_port();
    let url = format!("postgres://roadie:{ROADIE_PASSWORD}@127.0.0.1:{port}/app");
    let finished = roadie(
        Mode::Subreaper,
        ["--database-url", &url, "--wait-timeout", "1s", "true"],
    )
    .run();
    finished
        .code(69)
        .stderr_has("not ready after --wait-timeout 1s")
        .stderr_has("database (last error:")
        .stderr_lacks(ROADIE_PASSWORD);
    assert!(finished.elapsed >= Duration::from_secs(1), "{finished}");
    assert!(finished.elapsed < Duration::from_secs(5), "{finished}");
}

#[test]
fn a_wrong_password_fails_in_under_a_second_with_69_after_one_attempt() {
    let pg = Postgres::started();
    let url = pg.url("roadie", "not-the-password", "app");
    let finished = roadie(Mode::Subreaper, ["--database-url", &url, "true"]).run();
    finished
        .code(69)
        .stderr_has("wrong password for user \"roadie\" (28P01)")
        .stderr_has("check the password in --database-url")
        .stderr_lacks("not-the-password")
        .faster_than(Duration::from_secs(1));
    let failures = pg.log().matches("password authentication failed").count();
    assert_eq!(failures, 1, "no retry storm: one attempt\n{}", pg.log());
}

#[test]
fn a_missing_database_fails_fast_with_its_own_message() {
    let pg = Postgres::started();
    let url = pg.url("roadie", ROADIE_PASSWORD, "nosuchdb");
    roadie(Mode::Subreaper, ["--database-url", &url, "true"])
        .run()
        .code(69)
        .stderr_has("database \"nosuchdb\" does not exist (3D000)")
        .faster_than(Duration::from_secs(1));
}

#[test]
fn a_pg_hba_rejection_fails_fast_with_its_own_message() {
    let pg = Postgres::started();
    let url = pg.url("blocked", "blocked", "app");
    roadie(Mode::Subreaper, ["--database-url", &url, "true"])
        .run()
        .code(69)
        .stderr_has("(28000)")
        .stderr_has("pg_hba.conf")
        .faster_than(Duration::from_secs(1));
}

#[test]
fn tls_required_by_the_url_but_not_offered_fails_fast() {
    let pg = Postgres::started();
    let url = format!("{}?sslmode=require", pg.app_url());
    roadie(Mode::Subreaper, ["--database-url", &url, "true"])
        .run()
        .code(69)
        .stderr_has("TLS")
        .stderr_has("sslmode")
        .faster_than(Duration::from_secs(1));
}

#[test]
fn a_server_restarted_during_the_wait_is_survived() {
    // The official image's first boot: a socket-only server runs the init scripts, stops,
    // then the real one starts with TCP. roadie must ride through both.
    let mut pg = Postgres::new();
    let r = roadie(
        Mode::Subreaper,
        [
            "--log-level",
            "debug",
            "--database-url",
            &pg.app_url(),
            "sh",
            "-c",
            "echo app-started",
        ],
    )
    .start();
    pg.start_with(false);
    r.stderr_containing("not ready:");
    pg.psql("CREATE TABLE created_by_init_script (id int)");
    pg.stop();
    pg.start();
    r.finish()
        .code(0)
        .stdout_has("app-started")
        .stderr_has("database ready in");
}

#[rstest]
fn a_stop_signal_during_the_wait_exits_at_once_with_128_plus_s(
    #[values(Mode::Subreaper, Mode::Pid1)] mode: Mode,
    #[values(libc::SIGTERM, libc::SIGINT)] signal: i32,
) {
    let url = format!("postgres://roadie:pw@127.0.0.1:{}/app", free_port());
    let r = roadie(
        mode,
        ["--log-level", "debug", "--database-url", &url, "true"],
    )
    .start();
    r.stderr_containing("not ready:");
    let sent = Instant::now();
    r.signal(signal);
    let finished = r.finish();
    let took = sent.elapsed();
    finished
        .code(128 + signal)
        .stderr_has("while waiting")
        .stderr_lacks("starting true");
    // At once: well under the 60 s the wait would take, and the 10 s docker gives.
    assert!(
        took < Duration::from_secs(1),
        "exited {took:?} after the signal\n{finished}"
    );
}

#[test]
fn secrets_are_read_from_files() {
    let pg = Postgres::started();
    let dir = scratch();
    let url_file = dir.path().join("database-url");
    std::fs::write(&url_file, format!("{}\n", pg.app_url())).unwrap();
    roadie(Mode::Subreaper, ["true"])
        .env("DATABASE_URL_FILE", &url_file.to_string_lossy())
        .run()
        .code(0)
        .stderr_has("database ready in");

    let password_file = dir.path().join("password");
    std::fs::write(&password_file, format!("{ROADIE_PASSWORD}\n")).unwrap();
    roadie(Mode::Subreaper, ["true"])
        .env("POSTGRES_HOST", "127.0.0.1")
        .env("POSTGRES_PORT", &pg.port.to_string())
        .env("POSTGRES_USER", "roadie")
        .env("POSTGRES_DB", "app")
        .env("POSTGRES_PASSWORD_FILE", &password_file.to_string_lossy())
        .run()
        .code(0)
        .stderr_has("database ready in");
}

#[test]
fn an_unreadable_secret_file_is_a_configuration_error() {
    roadie(Mode::Subreaper, ["true"])
        .env("DATABASE_URL_FILE", "/run/secrets/missing")
        .run()
        .code(78)
        .stderr_has("DATABASE_URL_FILE=/run/secrets/missing: cannot read it");
}

#[test]
fn the_postgres_variables_are_the_fallback_and_flags_beat_them() {
    let pg = Postgres::started();
    let variables = [
        ("POSTGRES_HOST", "127.0.0.1".to_string()),
        ("POSTGRES_PORT", pg.port.to_string()),
        ("POSTGRES_USER", "special".to_string()),
        ("POSTGRES_PASSWORD", SPECIAL_PASSWORD.to_string()),
        ("POSTGRES_DB", "app".to_string()),
    ];
    let mut with_vars = roadie(Mode::Subreaper, ["true"]);
    for (k, v) in &variables {
        with_vars = with_vars.env(k, v);
    }
    with_vars.run().code(0).stderr_has("database ready in");

    // DATABASE_URL comes before POSTGRES_*: a wrong one is what roadie uses.
    let mut overridden =
        roadie(Mode::Subreaper, ["true"]).env("DATABASE_URL", &pg.url("roadie", "wrong", "app"));
    for (k, v) in &variables {
        overridden = overridden.env(k, v);
    }
    overridden.run().code(69).stderr_has("DATABASE_URL");
}

#[rstest]
#[case::postgres("postgres://roadie:{pw}@127.0.0.1:{port}/app")]
#[case::postgresql("postgresql://roadie:{pw}@127.0.0.1:{port}/app")]
#[case::asyncpg("postgresql+asyncpg://roadie:{pw}@127.0.0.1:{port}/app")]
#[case::psycopg2("postgresql+psycopg2://roadie:{pw}@127.0.0.1:{port}/app")]
#[case::psycopg("postgresql+psycopg://roadie:{pw}@127.0.0.1:{port}/app")]
#[case::escaped_password("postgres://special:{special}@127.0.0.1:{port}/app")]
#[case::ipv6("postgres://roadie:{pw}@[::1]:{port}/app")]
#[case::localhost_name("postgres://roadie:{pw}@localhost:{port}/app")]
#[case::unix_socket("postgres://roadie@/app?host={socket}&port={port}")]
#[case::sslmode_disable("postgres://roadie:{pw}@127.0.0.1:{port}/app?sslmode=disable")]
#[case::sslmode_prefer("postgres://roadie:{pw}@127.0.0.1:{port}/app?sslmode=prefer")]
#[case::asyncpg_ssl_false("postgresql+asyncpg://roadie:{pw}@127.0.0.1:{port}/app?ssl=false")]
fn every_url_form_reaches_the_server(#[case] form: &str) {
    let pg = Postgres::started();
    let url = form
        .replace("{pw}", &escape(ROADIE_PASSWORD))
        .replace("{special}", &escape(SPECIAL_PASSWORD))
        .replace("{port}", &pg.port.to_string())
        .replace("{socket}", &pg.socket_dir());
    roadie(Mode::Subreaper, ["wait", "--database-url", &url])
        .run()
        .code(0)
        .stderr_has("database ready in")
        .stderr_lacks(ROADIE_PASSWORD)
        .stderr_lacks(SPECIAL_PASSWORD);
}

#[test]
fn no_password_appears_in_stderr_for_any_failing_case() {
    let pg = Postgres::started();
    let closed = free_port();
    let secret = "Zq9-secret-Zq9";
    let cases = [
        pg.url("roadie", secret, "app"),
        pg.url("roadie", secret, "nosuchdb"),
        pg.url("blocked", secret, "app"),
        format!("{}?sslmode=require", pg.url("roadie", secret, "app")),
        format!("postgres://roadie:{secret}@127.0.0.1:{closed}/app"),
        format!("postgres://roadie:{secret}@no-such-host.invalid:5432/app"),
        format!("postgres://roadie:{secret}@127.0.0.1:notaport/app"),
    ];
    no_secret_in_any_failure(secret, &cases);
}

#[test]
fn an_unreachable_wait_for_target_times_out_by_name() {
    let port = free_port();
    let target = format!("tcp://127.0.0.1:{port}");
    roadie(
        Mode::Subreaper,
        ["--wait-for", &target, "--wait-timeout", "500ms", "true"],
    )
    .run()
    .code(69)
    .stderr_has(&format!("{target} (last error:"));
}

#[test]
fn wait_for_targets_are_checked_beside_the_database() {
    let pg = Postgres::started();
    let other = pg.url("special", SPECIAL_PASSWORD, "app");
    let tcp = format!("tcp://127.0.0.1:{}", pg.port);
    roadie(Mode::Subreaper, ["wait", "--database-url", &pg.app_url()])
        .env("ROADIE_WAIT_FOR", &format!("{tcp},{other}"))
        .run()
        .code(0)
        .stderr_has("database ready in")
        .stderr_has(&format!("{tcp} ready in"))
        .stderr_has("postgres://special:***@127.0.0.1")
        .stderr_lacks(SPECIAL_PASSWORD);
}

/// An HTTP server that answers 503 to the first `failures` requests, then 200.
fn flaky_http(failures: usize) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&served);
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let n = count.fetch_add(1, Ordering::SeqCst);
            let status = if n < failures {
                "503 Service Unavailable"
            } else {
                "200 OK"
            };
            let _ = (&stream).write_all(
                format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .as_bytes(),
            );
        }
    });
    (port, served)
}

#[test]
fn an_http_target_answering_503_then_200_is_waited_for() {
    let (port, served) = flaky_http(3);
    let target = format!("http://127.0.0.1:{port}/health");
    roadie(
        Mode::Subreaper,
        [
            "--log-level",
            "debug",
            "--wait-for",
            &target,
            "sh",
            "-c",
            "echo app-started",
        ],
    )
    .run()
    .code(0)
    .stderr_has("HTTP 503")
    .stderr_has(&format!("{target} ready in"))
    .stderr_has("after 4 attempts")
    .stdout_has("app-started");
    assert_eq!(served.load(Ordering::SeqCst), 4);
}

#[test]
fn a_sqlite_file_is_created_and_ready_when_its_directory_exists() {
    let dir = scratch();
    let file = dir.path().join("app.db");
    roadie(Mode::Subreaper, ["wait"])
        .env("DATABASE_URL", &format!("sqlite:{}", file.display()))
        .run()
        .code(0)
        .stderr_has("database ready in");
    assert!(file.exists());
}

#[test]
fn a_sqlite_file_in_a_missing_directory_is_a_configuration_error() {
    let dir = scratch();
    let url = format!("sqlite:{}/missing/app.db", dir.path().display());
    roadie(Mode::Subreaper, ["--database-url", &url, "true"])
        .run()
        .code(78)
        .stderr_has("missing of the SQLite file does not exist");
}

#[test]
fn with_no_database_roadie_says_so_once_and_is_a_plain_init() {
    let finished = roadie(Mode::Subreaper, ["sh", "-c", "exit 4"]).run();
    finished.code(4);
    assert_eq!(
        finished.stderr.matches("no database configured").count(),
        1,
        "{finished}"
    );
    roadie(Mode::Subreaper, ["wait"])
        .run()
        .code(0)
        .stderr_has("no database configured");
}

#[test]
fn sh_dash_c_is_an_app_and_boots_normally() {
    let url = format!("postgres://roadie:pw@127.0.0.1:{}/app", free_port());
    roadie(
        Mode::Subreaper,
        [
            "--database-url",
            &url,
            "--wait-timeout",
            "300ms",
            "sh",
            "-c",
            "echo app-started",
        ],
    )
    .run()
    .code(69)
    .stderr_lacks("interactive shell");
}
