//! The wait stage against a real MariaDB (the mysql driver), where it differs from PostgreSQL:
//! a database the user may not use, and a server out of connections. What holds for both
//! servers is waiting.rs's, run against each.

use std::time::Duration;

use crate::support::mariadb::{MariaDb, ROADIE_PASSWORD};
use crate::support::postgres::eventually;
use crate::support::server::Server as _;
use crate::support::{DEADLINE, Mode, roadie, waiting_for};

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
    assert_eq!(db.failed_logins(), 1, "no retry storm: one attempt");
}

#[test]
fn too_many_connections_is_waited_out() {
    // max_connections at its minimum, 10, and 10 clients holding them: everyone else gets
    // 1040 (but root, for whom MariaDB keeps one more).
    let mut db = MariaDb::new();
    db.options.push("--max-connections=10".into());
    db.start();
    let mut holders: Vec<_> = (0..10).map(|_| db.hold_connection()).collect();
    let r = waiting_for(&db.app_url()).start();
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

/// A MariaDB project configured as the official image is (issue 23): MARIADB_* (or MYSQL_*)
/// variables, the password a Docker secret (`_FILE`), full of URL-reserved characters; roadie
/// waits for the database and migrates it with no URL anywhere.
#[rstest::rstest]
#[case::mariadb("MARIADB")]
#[case::mysql("MYSQL")]
fn the_official_images_variables_with_a_secret_file_configure_the_database(#[case] kind: &str) {
    use crate::support::server::SPECIAL_PASSWORD;
    let db = MariaDb::started();
    let dir = crate::support::scratch();
    let secret = dir.path().join("db_password");
    std::fs::write(&secret, format!("{SPECIAL_PASSWORD}\n")).unwrap();
    let migrations = dir.path().join("migrations");
    std::fs::create_dir(&migrations).unwrap();
    std::fs::write(
        migrations.join("1_via_variables.sql"),
        "CREATE TABLE via_variables (id int);",
    )
    .unwrap();
    let boot = |password_file: &str| {
        roadie(
            Mode::Subreaper,
            [
                "--migrations",
                &migrations.to_string_lossy(),
                "sh",
                "-c",
                "echo app-started",
            ],
        )
        .env(&format!("{kind}_HOST"), "127.0.0.1")
        .env(&format!("{kind}_PORT"), &db.port().to_string())
        .env(&format!("{kind}_USER"), "special")
        .env(&format!("{kind}_PASSWORD_FILE"), password_file)
        .env(&format!("{kind}_DATABASE"), "app")
        .env("ROADIE_WAIT_TIMEOUT", "5s")
    };
    boot(&secret.to_string_lossy())
        .run()
        .code(0)
        .stdout_has("app-started")
        .stderr_has("database ready in")
        .stderr_has("1 migration applied")
        .stderr_lacks(SPECIAL_PASSWORD);
    assert_eq!(
        db.sql(
            "SELECT COUNT(*) FROM information_schema.tables \
             WHERE table_schema = 'app' AND table_name = 'via_variables'"
        ),
        "1"
    );
    // The secret is what logs in: another one is refused.
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    boot(&wrong.to_string_lossy())
        .run()
        .code(69)
        .stderr_has("access denied for user \"special\"")
        .stderr_has("(1045); check the user and password in MARIADB_*/MYSQL_* variables");
}
