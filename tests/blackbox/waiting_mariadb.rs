//! The wait stage against a real MariaDB (the mysql driver): ready means a login and
//! `SELECT 1`; a server not up yet is retried, a wrong password or database fails at once with
//! 69; every URL form applications write for MySQL/MariaDB reaches the server.

use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rstest::rstest;

use crate::support::mariadb::{MariaDb, ROADIE_PASSWORD, ROOT_PASSWORD, SPECIAL_PASSWORD};
use crate::support::postgres::{escape, eventually, free_port};
use crate::support::{DEADLINE, Mode, PRINTS_START, no_secret_in_any_failure, roadie};

fn unix_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
        * 1000.0
}

/// The server's count of failed logins (wrong password, or a database the user may not use).
fn access_denied_errors(db: &MariaDb) -> u32 {
    db.sql("SHOW GLOBAL STATUS LIKE 'Access_denied_errors'")
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a count")
}

/// A claim with a wide margin (it proves there is no sleep-a-second loop); the precise figures
/// are `bench/readiness`'s.
#[rstest]
fn waits_for_a_mariadb_started_2s_later_and_starts_the_app_within_1s_of_it_accepting_logins(
    #[values(Mode::Subreaper, Mode::Pid1)] mode: Mode,
) {
    let mut db = MariaDb::new();
    let r = roadie(
        mode,
        ["--database-url", &db.app_url(), "sh", "-c", PRINTS_START],
    )
    .start();
    // The delay is the stimulus: roadie meets a closed port for 2 s.
    thread::sleep(Duration::from_secs(2));
    let spawned = unix_ms();
    db.start();
    // Our own client's first login, polled every 10 ms: the server accepted logins by then.
    let accepting = unix_ms();
    let finished = r.finish();
    finished
        .code(0)
        .stderr_has("database ready in")
        .stderr_lacks("after 1 attempt")
        .stderr_lacks(ROADIE_PASSWORD);
    let started = finished.app_started_at_ms();
    assert!(
        started >= spawned,
        "the app started before the server did\n{finished}"
    );
    let lag = started - accepting;
    assert!(
        lag <= 1000.0,
        "the app started {lag:.0} ms after the server accepted logins\n{finished}"
    );
}

#[test]
fn gives_up_at_the_wait_timeout_with_69_when_nothing_listens() {
    let url = format!(
        "mysql://roadie:{ROADIE_PASSWORD}@127.0.0.1:{}/app",
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

#[test]
fn a_wrong_password_fails_in_under_a_second_with_69_after_one_attempt() {
    let db = MariaDb::started();
    let url = db.url("roadie", "not-the-password", "app");
    roadie(Mode::Subreaper, ["--database-url", &url, "true"])
        .run()
        .code(69)
        .stderr_has("access denied for user \"roadie\": wrong password or user (1045)")
        .stderr_has("check the user and password in --database-url")
        .stderr_lacks("not-the-password")
        .stderr_lacks("starting true")
        .faster_than(Duration::from_secs(1));
    assert_eq!(access_denied_errors(&db), 1, "no retry storm: one attempt");
}

#[test]
fn a_missing_database_fails_fast_saying_it_does_not_exist() {
    // Only a user with rights beyond its own databases learns that one does not exist: root.
    let db = MariaDb::started();
    let url = db.url("root", ROOT_PASSWORD, "nosuchdb");
    roadie(Mode::Subreaper, ["--database-url", &url, "true"])
        .run()
        .code(69)
        .stderr_has("database \"nosuchdb\" does not exist (1049)")
        .stderr_has("fix the database name in --database-url")
        .stderr_lacks(ROOT_PASSWORD)
        .faster_than(Duration::from_secs(1));
}

#[test]
fn a_database_the_user_may_not_use_fails_fast_naming_it() {
    // MariaDB does not tell a user with grants on `app` only whether `nosuchdb` exists: it
    // denies access to it (1044), which waiting will not change either.
    let db = MariaDb::started();
    let url = db.url("roadie", ROADIE_PASSWORD, "nosuchdb");
    roadie(Mode::Subreaper, ["--database-url", &url, "true"])
        .run()
        .code(69)
        .stderr_has("(1044)")
        .stderr_has("nosuchdb")
        .stderr_lacks(ROADIE_PASSWORD)
        .faster_than(Duration::from_secs(1));
    assert_eq!(access_denied_errors(&db), 1, "no retry storm: one attempt");
}

#[test]
fn tls_required_by_the_url_but_not_offered_fails_fast() {
    let db = MariaDb::started();
    let url = format!("{}?ssl-mode=required", db.app_url());
    roadie(Mode::Subreaper, ["--database-url", &url, "true"])
        .run()
        .code(69)
        .stderr_has("TLS")
        .stderr_lacks(ROADIE_PASSWORD)
        .faster_than(Duration::from_secs(1));
}

#[test]
fn a_server_restarted_during_the_wait_is_survived() {
    // The official image's first boot: a socket-only server (--skip-networking) runs the init
    // scripts, stops, then the real one starts with TCP. roadie must ride through both.
    let mut db = MariaDb::new();
    let r = roadie(
        Mode::Subreaper,
        [
            "--log-level",
            "debug",
            "--database-url",
            &db.app_url(),
            "sh",
            "-c",
            "echo app-started",
        ],
    )
    .start();
    db.start_with(false);
    r.stderr_containing("not ready:");
    db.sql("CREATE TABLE app.created_by_init_script (id int)");
    db.stop();
    db.start();
    r.finish()
        .code(0)
        .stdout_has("app-started")
        .stderr_has("database ready in");
}

#[test]
fn too_many_connections_is_waited_out() {
    // max_connections at its minimum, 10, and 10 clients holding them: everyone else gets
    // 1040 (but root, for whom MariaDB keeps one more).
    let mut db = MariaDb::new();
    db.options.push("--max-connections=10".into());
    db.start();
    let mut holders: Vec<_> = (0..10).map(|_| db.hold_connection()).collect();
    let r = roadie(
        Mode::Subreaper,
        [
            "--log-level",
            "debug",
            "--database-url",
            &db.app_url(),
            "sh",
            "-c",
            "echo app-started",
        ],
    )
    .start();
    r.stderr_containing("(1040)");
    // One connection back. root's own may meet one of roadie's attempts in the extra slot.
    let kill = format!("KILL CONNECTION {}", holders[0].1);
    assert!(
        eventually(DEADLINE, || db.try_sql(&kill).is_ok()),
        "could not free a connection"
    );
    r.finish()
        .code(0)
        .stdout_has("app-started")
        .stderr_has("database ready in");
    for (client, _) in &mut holders {
        let _ = client.kill();
        let _ = client.wait();
    }
}

#[test]
fn roadie_wait_exits_0_once_mariadb_is_ready_and_runs_nothing() {
    let mut db = MariaDb::new();
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
        .stderr_lacks("starting")
        .stderr_lacks(ROADIE_PASSWORD);
    assert_eq!(finished.stdout, "", "{finished}");
}

#[rstest]
#[case::mysql("mysql://roadie:{pw}@127.0.0.1:{port}/app")]
#[case::mariadb("mariadb://roadie:{pw}@127.0.0.1:{port}/app")]
#[case::pymysql("mysql+pymysql://roadie:{pw}@127.0.0.1:{port}/app")]
#[case::pymysql_charset("mysql+pymysql://roadie:{pw}@127.0.0.1:{port}/app?charset=utf8mb4")]
#[case::mysqldb("mysql+mysqldb://roadie:{pw}@127.0.0.1:{port}/app")]
#[case::aiomysql("mysql+aiomysql://roadie:{pw}@127.0.0.1:{port}/app")]
#[case::asyncmy("mysql+asyncmy://roadie:{pw}@127.0.0.1:{port}/app")]
#[case::mariadbconnector("mariadb+mariadbconnector://roadie:{pw}@127.0.0.1:{port}/app")]
#[case::escaped_password("mysql://special:{special}@127.0.0.1:{port}/app")]
#[case::ipv6("mysql://roadie:{pw}@[::1]:{port}/app")]
#[case::localhost_name("mysql://roadie:{pw}@localhost:{port}/app")]
#[case::unix_socket("mysql://roadie:{pw}@localhost/app?socket={socket}")]
#[case::unix_socket_no_host("mysql://roadie:{pw}@/app?socket={socket}")]
#[case::ssl_mode_disabled("mysql://roadie:{pw}@127.0.0.1:{port}/app?ssl-mode=disabled")]
#[case::ssl_mode_preferred("mysql://roadie:{pw}@127.0.0.1:{port}/app?ssl-mode=preferred")]
fn every_url_form_reaches_the_server(#[case] form: &str) {
    let db = MariaDb::started();
    let url = form
        .replace("{pw}", &escape(ROADIE_PASSWORD))
        .replace("{special}", &escape(SPECIAL_PASSWORD))
        .replace("{port}", &db.port.to_string())
        .replace("{socket}", &db.socket().to_string_lossy());
    roadie(Mode::Subreaper, ["wait", "--database-url", &url])
        .run()
        .code(0)
        .stderr_has("database ready in")
        .stderr_lacks(ROADIE_PASSWORD)
        .stderr_lacks(SPECIAL_PASSWORD);
}

#[test]
fn no_password_appears_in_stderr_for_any_failing_case() {
    let db = MariaDb::started();
    let closed = free_port();
    let secret = "Zq9-secret-Zq9";
    let cases = [
        db.url("roadie", secret, "app"),
        db.url("roadie", secret, "nosuchdb"),
        db.url("root", secret, "nosuchdb"),
        format!("{}?ssl-mode=required", db.url("roadie", secret, "app")),
        format!("mysql://roadie:{secret}@127.0.0.1:{closed}/app"),
        format!("mariadb://roadie:{secret}@no-such-host.invalid:3306/app"),
        format!("mysql+pymysql://roadie:{secret}@127.0.0.1:notaport/app"),
    ];
    no_secret_in_any_failure(secret, &cases);
}
