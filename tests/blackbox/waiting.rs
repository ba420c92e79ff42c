//! The wait stage against real servers: ready means a login and `SELECT 1`; transient
//! failures are retried, permanent ones fail at once with 69; a stop signal ends the wait.
//! What holds for every server runs against PostgreSQL and MariaDB alike (`Engine`); then
//! PostgreSQL's own cases, `--wait-for` targets and SQLite. MariaDB's own: waiting_mariadb.rs.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rstest::rstest;

use crate::support::dns::Dns;
use crate::support::mariadb::ROOT_PASSWORD;
use crate::support::postgres::{
    Postgres, ROADIE_PASSWORD, SPECIAL_PASSWORD, escape, eventually, free_port,
};
use crate::support::server::{Engine, Server};
use crate::support::{Mode, PRINTS_START, no_secret_in_any_failure, roadie, scratch, waiting_for};

// ---------------------------------------------------------------------------------------------
// Every server: one body, run against PostgreSQL and MariaDB (the mysql driver).

/// `form` with its placeholders filled for `db`: `{pw}` and `{special}` (the escaped passwords
/// of `roadie` and `special`), `{port}`, `{socket}` (what a URL names to reach the server over
/// its socket), `{secret}` and `{closed}` (a port nobody listens on).
fn fill(form: &str, db: &dyn Server, secret: &str) -> String {
    form.replace("{pw}", &escape(ROADIE_PASSWORD))
        .replace("{special}", &escape(SPECIAL_PASSWORD))
        .replace("{port}", &db.port().to_string())
        .replace("{socket}", &db.socket_in_url())
        .replace("{secret}", secret)
        .replace("{closed}", &free_port().to_string())
}

/// A claim with a wide margin (it proves there is no sleep-a-second loop); the precise figures
/// are `bench/readiness`'s.
#[rstest]
fn waits_for_a_database_started_2s_later_and_starts_the_app_within_1s_of_it_accepting_logins(
    #[values(Engine::Postgres, Engine::MariaDb)] engine: Engine,
    #[values(Mode::Subreaper, Mode::Pid1)] mode: Mode,
) {
    let mut db = engine.server();
    let r = roadie(
        mode,
        ["--database-url", &db.app_url(), "sh", "-c", PRINTS_START],
    )
    .start();
    // The delay is the stimulus: roadie meets a closed port for 2 s.
    thread::sleep(Duration::from_secs(2));
    let at = db.start_timed();
    let finished = r.finish();
    finished
        .code(0)
        .stderr_has("database ready in")
        .stderr_lacks("after 1 attempt")
        .stderr_lacks(ROADIE_PASSWORD);
    let started = finished.app_started_at_ms();
    assert!(
        started >= at.not_before,
        "the app started before the server accepted logins\n{finished}"
    );
    let lag = started - at.accepting;
    assert!(
        lag <= 1000.0,
        "the app started {lag:.0} ms after the server accepted logins\n{finished}"
    );
}

#[rstest]
fn gives_up_at_the_wait_timeout_with_69_when_nothing_listens(
    #[values(Engine::Postgres, Engine::MariaDb)] engine: Engine,
) {
    let url = format!(
        "{}://roadie:{ROADIE_PASSWORD}@127.0.0.1:{}/app",
        engine.scheme(),
        free_port()
    );
    let finished = roadie(
        Mode::Subreaper,
        ["--database-url", &url, "--wait-timeout", "1s", "true"],
    )
    .run();
    finished
        .code(69)
        .stderr_has("not ready after --wait-timeout 1s")
        .stderr_has("database (last error:")
        .stderr_lacks("starting true")
        .stderr_lacks(ROADIE_PASSWORD);
    assert!(finished.elapsed >= Duration::from_secs(1), "{finished}");
    assert!(finished.elapsed < Duration::from_secs(5), "{finished}");
}

#[rstest]
#[case::postgres(
    Engine::Postgres,
    "wrong password for user \"roadie\" (28P01)",
    "check the password in --database-url"
)]
#[case::mariadb(
    Engine::MariaDb,
    "access denied for user \"roadie\": wrong password or user (1045)",
    "check the user and password in --database-url"
)]
fn a_wrong_password_fails_in_under_a_second_with_69_after_one_attempt(
    #[case] engine: Engine,
    #[case] says: &str,
    #[case] hint: &str,
) {
    let db = engine.started();
    let url = db.url("roadie", "not-the-password", "app");
    roadie(Mode::Subreaper, ["--database-url", &url, "true"])
        .run()
        .code(69)
        .stderr_has(says)
        .stderr_has(hint)
        .stderr_lacks("not-the-password")
        .stderr_lacks("starting true")
        .faster_than(Duration::from_secs(1));
    assert_eq!(
        db.failed_logins(),
        1,
        "no retry storm: one attempt\n{}",
        db.log()
    );
}

#[rstest]
#[case::postgres(Engine::Postgres, "roadie", ROADIE_PASSWORD, "(3D000)")]
// Only a MariaDB user with rights beyond its own databases learns that one does not exist:
// root (`roadie`'s case is waiting_mariadb's).
#[case::mariadb(Engine::MariaDb, "root", ROOT_PASSWORD, "(1049)")]
fn a_missing_database_fails_fast_saying_it_does_not_exist(
    #[case] engine: Engine,
    #[case] user: &str,
    #[case] password: &str,
    #[case] code: &str,
) {
    let db = engine.started();
    let url = db.url(user, password, "nosuchdb");
    roadie(Mode::Subreaper, ["--database-url", &url, "true"])
        .run()
        .code(69)
        .stderr_has(&format!("database \"nosuchdb\" does not exist {code}"))
        .stderr_has("fix the database name in --database-url")
        .stderr_lacks(password)
        .faster_than(Duration::from_secs(1));
}

#[rstest]
#[case::postgres(Engine::Postgres, "sslmode=require", "sslmode")]
#[case::mariadb(Engine::MariaDb, "ssl-mode=required", "ssl-mode")]
fn tls_required_by_the_url_but_not_offered_fails_fast(
    #[case] engine: Engine,
    #[case] query: &str,
    #[case] setting: &str,
) {
    let db = engine.started();
    let url = format!("{}?{query}", db.app_url());
    roadie(Mode::Subreaper, ["--database-url", &url, "true"])
        .run()
        .code(69)
        .stderr_has("TLS")
        .stderr_has(setting)
        .stderr_lacks(ROADIE_PASSWORD)
        .faster_than(Duration::from_secs(1));
}

#[rstest]
fn a_server_restarted_during_the_wait_is_survived(
    #[values(Engine::Postgres, Engine::MariaDb)] engine: Engine,
) {
    // The official images' first boot: a socket-only server runs the init scripts, stops,
    // then the real one starts with TCP. roadie must ride through both.
    let mut db = engine.server();
    let r = waiting_for(&db.app_url()).start();
    db.start_with(false);
    r.stderr_containing("not ready:");
    db.sql("CREATE TABLE created_by_init_script (id int)");
    db.stop();
    db.start();
    r.finish()
        .code(0)
        .stdout_has("app-started")
        .stderr_has("database ready in");
}

#[rstest]
fn roadie_wait_exits_0_once_the_database_is_ready_and_runs_nothing(
    #[values(Engine::Postgres, Engine::MariaDb)] engine: Engine,
) {
    let mut db = engine.server();
    let r = roadie(
        Mode::Subreaper,
        [
            "wait",
            "--log-level",
            "debug",
            "--database-url",
            &db.app_url(),
        ],
    )
    .start();
    r.stderr_containing("not ready:");
    db.start();
    let finished = r.finish();
    finished
        .code(0)
        .stderr_has("database ready in")
        .stderr_lacks(ROADIE_PASSWORD);
    // Nothing started: no line says `starting` but PostgreSQL's own 57P03 while it comes up
    // ("the database system is starting up"), which roadie may meet.
    let said = finished
        .stderr
        .replace("the database system is starting up", "");
    assert!(!said.contains("starting"), "{finished}");
    assert_eq!(finished.stdout, "", "{finished}");
}

#[rstest]
#[case::postgres(Engine::Postgres, "postgres://roadie:{pw}@127.0.0.1:{port}/app")]
#[case::postgresql(Engine::Postgres, "postgresql://roadie:{pw}@127.0.0.1:{port}/app")]
#[case::asyncpg(
    Engine::Postgres,
    "postgresql+asyncpg://roadie:{pw}@127.0.0.1:{port}/app"
)]
#[case::psycopg2(
    Engine::Postgres,
    "postgresql+psycopg2://roadie:{pw}@127.0.0.1:{port}/app"
)]
#[case::psycopg(
    Engine::Postgres,
    "postgresql+psycopg://roadie:{pw}@127.0.0.1:{port}/app"
)]
#[case::postgres_escaped_password(
    Engine::Postgres,
    "postgres://special:{special}@127.0.0.1:{port}/app"
)]
#[case::postgres_ipv6(Engine::Postgres, "postgres://roadie:{pw}@[::1]:{port}/app")]
#[case::postgres_localhost_name(Engine::Postgres, "postgres://roadie:{pw}@localhost:{port}/app")]
#[case::postgres_unix_socket(Engine::Postgres, "postgres://roadie@/app?host={socket}&port={port}")]
#[case::sslmode_disable(
    Engine::Postgres,
    "postgres://roadie:{pw}@127.0.0.1:{port}/app?sslmode=disable"
)]
#[case::sslmode_prefer(
    Engine::Postgres,
    "postgres://roadie:{pw}@127.0.0.1:{port}/app?sslmode=prefer"
)]
#[case::asyncpg_ssl_false(
    Engine::Postgres,
    "postgresql+asyncpg://roadie:{pw}@127.0.0.1:{port}/app?ssl=false"
)]
#[case::mysql(Engine::MariaDb, "mysql://roadie:{pw}@127.0.0.1:{port}/app")]
#[case::mariadb(Engine::MariaDb, "mariadb://roadie:{pw}@127.0.0.1:{port}/app")]
#[case::pymysql(Engine::MariaDb, "mysql+pymysql://roadie:{pw}@127.0.0.1:{port}/app")]
#[case::pymysql_charset(
    Engine::MariaDb,
    "mysql+pymysql://roadie:{pw}@127.0.0.1:{port}/app?charset=utf8mb4"
)]
#[case::mysqldb(Engine::MariaDb, "mysql+mysqldb://roadie:{pw}@127.0.0.1:{port}/app")]
#[case::aiomysql(Engine::MariaDb, "mysql+aiomysql://roadie:{pw}@127.0.0.1:{port}/app")]
#[case::asyncmy(Engine::MariaDb, "mysql+asyncmy://roadie:{pw}@127.0.0.1:{port}/app")]
#[case::mariadbconnector(
    Engine::MariaDb,
    "mariadb+mariadbconnector://roadie:{pw}@127.0.0.1:{port}/app"
)]
#[case::mysql_escaped_password(Engine::MariaDb, "mysql://special:{special}@127.0.0.1:{port}/app")]
#[case::mysql_ipv6(Engine::MariaDb, "mysql://roadie:{pw}@[::1]:{port}/app")]
#[case::mysql_localhost_name(Engine::MariaDb, "mysql://roadie:{pw}@localhost:{port}/app")]
#[case::mysql_unix_socket(Engine::MariaDb, "mysql://roadie:{pw}@localhost/app?socket={socket}")]
#[case::mysql_unix_socket_no_host(Engine::MariaDb, "mysql://roadie:{pw}@/app?socket={socket}")]
#[case::ssl_mode_disabled(
    Engine::MariaDb,
    "mysql://roadie:{pw}@127.0.0.1:{port}/app?ssl-mode=disabled"
)]
#[case::ssl_mode_preferred(
    Engine::MariaDb,
    "mysql://roadie:{pw}@127.0.0.1:{port}/app?ssl-mode=preferred"
)]
fn every_url_form_reaches_the_server(#[case] engine: Engine, #[case] form: &str) {
    let db = engine.started();
    let url = fill(form, &*db, "");
    roadie(Mode::Subreaper, ["wait", "--database-url", &url])
        .run()
        .code(0)
        .stderr_has("database ready in")
        .stderr_lacks(ROADIE_PASSWORD)
        .stderr_lacks(SPECIAL_PASSWORD);
}

#[rstest]
#[case::postgres(Engine::Postgres, &[
    "postgres://roadie:{secret}@127.0.0.1:{port}/app",
    "postgres://roadie:{secret}@127.0.0.1:{port}/nosuchdb",
    "postgres://blocked:{secret}@127.0.0.1:{port}/app",
    "postgres://roadie:{secret}@127.0.0.1:{port}/app?sslmode=require",
    "postgres://roadie:{secret}@127.0.0.1:{closed}/app",
    "postgres://roadie:{secret}@no-such-host.invalid:5432/app",
    "postgres://roadie:{secret}@127.0.0.1:notaport/app",
])]
#[case::mariadb(Engine::MariaDb, &[
    "mysql://roadie:{secret}@127.0.0.1:{port}/app",
    "mysql://roadie:{secret}@127.0.0.1:{port}/nosuchdb",
    "mysql://root:{secret}@127.0.0.1:{port}/nosuchdb",
    "mysql://roadie:{secret}@127.0.0.1:{port}/app?ssl-mode=required",
    "mysql://roadie:{secret}@127.0.0.1:{closed}/app",
    "mariadb://roadie:{secret}@no-such-host.invalid:3306/app",
    "mysql+pymysql://roadie:{secret}@127.0.0.1:notaport/app",
])]
fn no_password_appears_in_stderr_for_any_failing_case(
    #[case] engine: Engine,
    #[case] forms: &[&str],
) {
    let db = engine.started();
    let secret = "Zq9-secret-Zq9";
    let urls: Vec<String> = forms.iter().map(|f| fill(f, &*db, secret)).collect();
    no_secret_in_any_failure(secret, &urls);
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL only

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

/// getaddrinfo cannot be cancelled: a lookup stuck in the runtime's blocking pool (a resolver
/// that does not answer: Docker's embedded DNS asking an unreachable upstream) must not hold
/// up roadie's exit after a stop.
#[test]
fn a_stop_signal_during_a_name_lookup_that_never_answers_exits_at_once() {
    let name = "silent-dependency.roadie.test";
    let dns = Dns::start(name);
    dns.go_silent();
    let dir = scratch();
    let target = format!("tcp://{name}:5432");
    let r = roadie(Mode::Subreaper, ["wait", "--wait-for", &target])
        .before_exec(dns.private_resolv_conf(dir.path()))
        .start();
    let asked = eventually(Duration::from_secs(10), || !dns.lookups().is_empty());
    if !asked {
        r.fail("roadie never looked the name up");
    }
    let sent = Instant::now();
    r.signal(libc::SIGTERM);
    let finished = r.finish();
    let took = sent.elapsed();
    finished.code(143).stderr_has("while waiting");
    // The lookup itself takes 5 s (then 5 more): roadie must not wait for it.
    assert!(
        took < Duration::from_secs(2),
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
