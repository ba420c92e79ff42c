//! Behind a real PgBouncer (transaction and session pooling, two server connections per pool)
//! and across a failover: the lock excludes through the pooler, nothing roadie sets stays on a
//! server connection, native migrations without a direct URL are refused with 78 (never 69),
//! `--migrate-database-url` is used for the lock, the migrations and the command, and a
//! standby is waited for, refused or skipped as `--on-standby` says.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rstest::rstest;

use crate::support::pgbouncer::{PgBouncer, PoolMode};
use crate::support::postgres::Postgres;
use crate::support::server::Server as _;
use crate::support::{Finished, Mode, Roadie, app, migrating, roadie, scratch, venv_bin};

const APP_KEY: i64 = 3469795979745788610;

fn folder(dir: &Path) -> PathBuf {
    let path = dir.join("migrations");
    std::fs::create_dir_all(&path).unwrap();
    let files = [
        (
            1,
            "log",
            "CREATE TABLE applied_log (version int NOT NULL);\nINSERT INTO applied_log VALUES (1);",
        ),
        (
            2,
            "customers",
            "CREATE TABLE customers (id int PRIMARY KEY);\nSELECT pg_sleep(0.2);\nINSERT INTO applied_log VALUES (2);",
        ),
        (
            3,
            "email",
            "ALTER TABLE customers ADD COLUMN email text;\nINSERT INTO applied_log VALUES (3);",
        ),
    ];
    for (version, name, sql) in files {
        std::fs::write(path.join(format!("{version}_{name}.sql")), sql).unwrap();
    }
    path
}

/// roadie running the real alembic project's `alembic upgrade head`; DATABASE_URL is `url`.
fn alembic(url: &str, extra: &[&str]) -> Roadie {
    let mut args = vec!["--database-url".to_string(), url.to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(["sh".into(), "-c".into(), "echo app-started".into()]);
    roadie(Mode::Subreaper, args)
        .current_dir(app("alembic"))
        .env("PATH", &format!("{}:/usr/bin:/bin", venv_bin().display()))
        .env("DATABASE_URL", url)
}

/// Nothing roadie set or held is left on any server connection.
fn nothing_left(pg: &Postgres) {
    assert_eq!(
        pg.psql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"),
        "0",
        "an advisory lock is left"
    );
    // roadie's own sessions leave no label behind. A migration command's sessions are named
    // by PGAPPNAME (the lock's next holder waits for them: lock_fencing.rs), and a transaction
    // pooler keeps that name on an idle server connection until its next client: idle ones
    // with that name are the command's, not roadie's.
    assert_eq!(
        pg.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'roadie%' \
             AND NOT (application_name = 'roadie (migration command)' AND state = 'idle')"
        ),
        "0",
        "a server connection is labelled as roadie's"
    );
}

/// Ten replicas started at once, each run to its end (within `limit`).
fn ten_at_once(replica: impl Fn() -> Roadie, limit: Duration) -> Vec<Finished> {
    let started: Vec<_> = (0..10).map(|_| replica().start()).collect();
    started
        .into_iter()
        .map(|r| r.finish_within(limit))
        .collect()
}

/// The versions `applied_log` holds (each test migration appends its own), in order.
fn applied(pg: &Postgres) -> String {
    pg.psql("SELECT string_agg(version::text, ',' ORDER BY version) FROM applied_log")
}

/// Alembic through a transaction pooler, with or without `--migrate-database-url`: the lock
/// holds either way (alembic needs no session state across transactions).
#[rstest]
#[case::through_a_transaction_pooler(false)]
#[case::with_a_direct_url_for_the_migration(true)]
fn ten_replicas_run_alembic_once_and_none_fails(#[case] direct: bool) {
    let pg = Postgres::started();
    let bouncer = PgBouncer::start(&pg, PoolMode::Transaction);
    let url = pg.app_url();
    let extra: &[&str] = if direct {
        &["--migrate-database-url", &url]
    } else {
        &[]
    };
    let replica = || alembic(&bouncer.app_url(), extra).env("ALEMBIC_APP_SLEEP", "0.3");
    for finished in ten_at_once(replica, Duration::from_secs(90)) {
        finished
            .code(0)
            .stdout_has("app-started")
            .stderr_lacks("Traceback");
    }
    assert_eq!(pg.psql("SELECT version_num FROM alembic_version"), "0005");
    nothing_left(&pg);
}

#[test]
fn native_migrations_through_a_transaction_pooler_are_refused_with_78_naming_the_fix() {
    let pg = Postgres::started();
    let bouncer = PgBouncer::start(&pg, PoolMode::Transaction);
    let dir = scratch();
    let migrations = folder(dir.path());
    // Alone, a replica's two connections get the server connection PgBouncer was given back
    // last (LIFO): the pooler shows for certain.
    migrating(&bouncer.app_url(), &migrations, &[])
        .run()
        .code(78)
        .stderr_has("goes through a transaction pooler (two of roadie's connections were served by the same server process")
        .stderr_has("--migrate-database-url")
        .stderr_lacks("roadie-secret-pw")
        .stderr_lacks("app-started");
    assert!(!pg.table_exists("applied_log"));
    // Ten at once: busy clients can hide a pooler from one replica (the detection samples a
    // few times; bench/pooler.py saw it in 100 of 100 replicas), so the claim is the one that
    // holds for certain: never "unavailable" (69), and never a half-migrated schema.
    let replica = || migrating(&bouncer.app_url(), &migrations, &[]);
    for finished in ten_at_once(replica, Duration::from_secs(60)) {
        assert!(matches!(finished.code, Some(0 | 78)), "{finished}");
        finished.stderr_lacks("roadie-secret-pw");
    }
    if pg.table_exists("applied_log") {
        assert_eq!(applied(&pg), "1,2,3");
    }
    nothing_left(&pg);
}

#[test]
fn ten_replicas_with_a_direct_url_migrate_a_native_folder_once_and_none_fails() {
    let pg = Postgres::started();
    let bouncer = PgBouncer::start(&pg, PoolMode::Transaction);
    let dir = scratch();
    let migrations = folder(dir.path());
    let direct = pg.app_url();
    let replica = || {
        migrating(
            &bouncer.app_url(),
            &migrations,
            &["--migrate-database-url", &direct],
        )
    };
    for finished in ten_at_once(replica, Duration::from_secs(60)) {
        finished.code(0).stdout_has("app-started");
    }
    assert_eq!(applied(&pg), "1,2,3");
    nothing_left(&pg);
}

#[test]
fn ten_replicas_through_a_session_pooler_migrate_a_native_folder_once() {
    let pg = Postgres::started();
    // Each replica keeps two sessions (migration and lock): a session pool smaller than the
    // replicas' sessions queues them forever (see the README).
    let bouncer = PgBouncer::start_with(&pg, PoolMode::Session, 25);
    let dir = scratch();
    let migrations = folder(dir.path());
    let replica = || migrating(&bouncer.app_url(), &migrations, &[]);
    for finished in ten_at_once(replica, Duration::from_secs(60)) {
        finished.code(0).stdout_has("app-started");
    }
    assert_eq!(applied(&pg), "1,2,3");
}

#[test]
fn a_ddl_lock_timeout_through_a_pooler_refusing_startup_options_is_set_in_the_session() {
    // PgBouncer refuses the startup `options` roadie gives a direct server; the timeout must
    // still reach the migration's session, and the watch session must still open.
    let pg = Postgres::started();
    let bouncer = PgBouncer::start_with(&pg, PoolMode::Session, 10);
    let dir = scratch();
    let migrations = folder(dir.path());
    std::fs::write(
        migrations.join("4_seen.sql"),
        "CREATE TABLE seen AS SELECT current_setting('lock_timeout') AS lock_timeout;",
    )
    .unwrap();
    migrating(
        &bouncer.app_url(),
        &migrations,
        &["--ddl-lock-timeout", "250ms"],
    )
    .run()
    .code(0)
    .stdout_has("app-started");
    assert_eq!(pg.psql("SELECT lock_timeout FROM seen"), "250ms");
}

#[test]
fn migrate_status_wait_and_an_up_to_date_boot_work_through_a_transaction_pooler() {
    let pg = Postgres::started();
    let bouncer = PgBouncer::start(&pg, PoolMode::Transaction);
    let dir = scratch();
    let migrations = folder(dir.path());
    migrating(&pg.app_url(), &migrations, &[]).run().code(0);
    roadie(
        Mode::Subreaper,
        [
            "migrate",
            "status",
            "--database-url",
            &bouncer.app_url(),
            "--migrations",
            &migrations.to_string_lossy(),
        ],
    )
    .run()
    .code(0)
    .stdout_has("applied");
    // Up to date, nothing to lock: the boot goes through the pooler without a direct URL.
    migrating(&bouncer.app_url(), &migrations, &[])
        .run()
        .code(0)
        .stderr_has("schema up to date")
        .stdout_has("app-started");
    roadie(
        Mode::Subreaper,
        ["wait", "--database-url", &bouncer.app_url()],
    )
    .run()
    .code(0)
    .stderr_has("database ready");
    nothing_left(&pg);
}

#[test]
fn the_migration_command_gets_the_direct_url_as_database_url() {
    let pg = Postgres::started();
    let bouncer = PgBouncer::start(&pg, PoolMode::Transaction);
    let dir = scratch();
    let out = dir.path().join("env");
    let command = format!(
        "sh -c 'echo \"$DATABASE_URL|$ROADIE_MIGRATE_DATABASE_URL\" > {}'",
        out.display()
    );
    roadie(
        Mode::Subreaper,
        [
            "--database-url",
            &bouncer.app_url(),
            "--migrate-database-url",
            &pg.app_url(),
            "--migrate-command",
            &command,
            "--",
            "sh",
            "-c",
            "echo \"app sees $DATABASE_URL\"",
        ],
    )
    .env("DATABASE_URL", "postgres://from-the-environment/app")
    .run()
    .code(0)
    .stdout_has("app sees postgres://from-the-environment/app")
    .stderr_lacks("roadie-secret-pw");
    let seen = std::fs::read_to_string(&out).unwrap();
    assert_eq!(seen.trim(), format!("{}|{}", pg.app_url(), pg.app_url()));
}

#[test]
fn a_bad_direct_url_is_one_clear_line_without_the_password() {
    let pg = Postgres::started();
    for (url, code, says) in [
        (
            "postgres://roadie:pw-secret@127.0.0.1:notaport/app".to_string(),
            78,
            "--migrate-database-url: malformed URL",
        ),
        (
            "mysql://roadie:pw-secret@127.0.0.1/app".to_string(),
            78,
            "must be the direct URL of the app's PostgreSQL server",
        ),
        (
            pg.url("roadie", "pw-secret", "app"),
            69,
            "wrong password for user \"roadie\"",
        ),
    ] {
        let finished = roadie(
            Mode::Subreaper,
            [
                "--database-url",
                &pg.app_url(),
                "--migrate-database-url",
                &url,
                "--migrate-command",
                "true",
                "--wait-timeout",
                "5s",
                "--",
                "true",
            ],
        )
        .run();
        finished
            .code(code)
            .stderr_has(says)
            .stderr_lacks("pw-secret");
    }
}

/// Makes the role `roadie` start every transaction in REPEATABLE READ, and end a session idle
/// in a transaction after 1 s: the lock's transaction must be READ COMMITTED (no snapshot for a
/// CREATE INDEX CONCURRENTLY to wait for) and exempt from the timeout.
fn hostile_role(pg: &Postgres) {
    pg.psql("ALTER ROLE roadie SET default_transaction_isolation = 'repeatable read'");
    pg.psql("ALTER ROLE roadie SET idle_in_transaction_session_timeout = '1s'");
}

#[test]
fn create_index_concurrently_through_the_pooler_runs_while_another_replica_waits_for_the_lock() {
    let pg = Postgres::started();
    hostile_role(&pg);
    pg.psql("CREATE TABLE big AS SELECT g AS id FROM generate_series(1, 100000) g; ALTER TABLE big OWNER TO roadie");
    let bouncer = PgBouncer::start(&pg, PoolMode::Transaction);
    let dir = scratch();
    let path = dir.path().join("migrations");
    std::fs::create_dir_all(&path).unwrap();
    // 1 outlives the server's idle_in_transaction_session_timeout under the lock.
    std::fs::write(
        path.join("1_slow.sql"),
        "SELECT pg_sleep(2.5);\nCREATE TABLE t1 (id int);",
    )
    .unwrap();
    std::fs::write(
        path.join("2_cic.sql"),
        "-- no-transaction\nCREATE INDEX CONCURRENTLY big_by_id ON big (id);",
    )
    .unwrap();
    let direct = pg.app_url();
    let with = ["--migrate-database-url", direct.as_str()];
    let first = migrating(&bouncer.app_url(), &path, &with).start();
    std::thread::sleep(Duration::from_millis(300));
    let second = migrating(&bouncer.app_url(), &path, &with).start();
    first.finish_within(Duration::from_secs(30)).code(0);
    second.finish_within(Duration::from_secs(30)).code(0);
    assert_eq!(
        pg.psql("SELECT indisvalid FROM pg_index WHERE indexrelid = 'big_by_id'::regclass"),
        "t"
    );
    assert_eq!(
        pg.psql("SELECT count(*) FROM _sqlx_migrations WHERE success"),
        "2"
    );
    nothing_left(&pg);
}

#[test]
fn a_sigkilled_lock_holder_behind_the_pooler_frees_the_lock_within_seconds() {
    let pg = Postgres::started();
    let bouncer = PgBouncer::start(&pg, PoolMode::Transaction);
    let command = "sh -c 'echo migrating $$; exec sleep 30'";
    let start = |cmd: &str| {
        roadie(
            Mode::Subreaper,
            [
                "--database-url",
                &bouncer.app_url(),
                "--migrate-command",
                cmd,
                "--",
                "sh",
                "-c",
                "echo app-started",
            ],
        )
        .start()
    };
    let mut holder = start(command);
    let line = holder.line_containing("migrating");
    let migrator: i32 = line.trim().rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(
        pg.psql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"),
        "1"
    );
    holder.signal(libc::SIGKILL);
    let began = std::time::Instant::now();
    let next = start("true");
    next.finish_within(Duration::from_secs(20))
        .code(0)
        .stdout_has("app-started");
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
    // SAFETY: plain kill(2) of the killed roadie's orphaned migration command.
    unsafe { libc::kill(migrator, libc::SIGKILL) };
}

#[test]
fn roadie_and_a_service_using_sqlx_locking_serialise() {
    let pg = Postgres::started();
    let bouncer = PgBouncer::start(&pg, PoolMode::Transaction);
    // What sqlx::migrate!() takes: a session lock with sqlx's key, on a direct session.
    let holder = std::process::Command::new("runuser")
        .args([
            "-u",
            "postgres",
            "--",
            &format!("{}/psql", crate::support::postgres::BIN),
            "-X",
            "-q",
            "-h",
        ])
        .arg(pg.socket_dir())
        .args(["-p", &pg.port.to_string(), "-d", "app", "-c"])
        .arg(format!(
            "SELECT pg_advisory_lock({APP_KEY}); SELECT pg_sleep(2)"
        ))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(crate::support::postgres::eventually(
        Duration::from_secs(5),
        || {
            pg.psql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted") == "1"
        }
    ));
    let finished = roadie(
        Mode::Subreaper,
        [
            "--database-url",
            &bouncer.app_url(),
            "--migrate-command",
            "true",
            "--",
            "sh",
            "-c",
            "echo app-started",
        ],
    )
    .run();
    finished.code(0).stderr_has("s waiting for the lock");
    assert!(!finished.stderr.contains("after 0.0"), "{finished}");
    let mut holder = holder;
    let _ = holder.wait();
    // And the other way round: while roadie holds its transaction-scoped lock through the
    // pooler, sqlx's session lock on the same key is not to be had.
    let mut migrating = roadie(
        Mode::Subreaper,
        [
            "--database-url",
            &bouncer.app_url(),
            "--migrate-command",
            "sh -c 'echo migrating; sleep 1'",
            "--",
            "true",
        ],
    )
    .start();
    migrating.line_containing("migrating");
    assert_eq!(
        pg.psql(&format!("SELECT pg_try_advisory_lock({APP_KEY})")),
        "f"
    );
    migrating.finish().code(0);
    assert_eq!(
        pg.psql(&format!(
            "SELECT pg_try_advisory_lock({APP_KEY}) AND pg_advisory_unlock({APP_KEY})"
        )),
        "t"
    );
}

fn standby_boot(url: &str, dir: &Path, policy: &str, extra: &[&str]) -> Roadie {
    let mut with = vec!["--on-standby", policy];
    with.extend_from_slice(extra);
    migrating(url, dir, &with)
}

#[test]
fn a_standby_is_refused_at_once_waited_for_until_promoted_or_skipped() {
    let primary = Postgres::started();
    let standby = primary.standby();
    let dir = scratch();
    let migrations = folder(dir.path());
    let host = format!("127.0.0.1:{}", standby.port);

    standby_boot(&standby.app_url(), &migrations, "fail", &[])
        .run()
        .code(69)
        .stderr_has(&host)
        .stderr_has("read-only standby")
        .stderr_lacks("app-started")
        .faster_than(Duration::from_secs(5));

    // `roadie wait` reports it too, with or without migrations to run.
    roadie(
        Mode::Subreaper,
        [
            "wait",
            "--database-url",
            &standby.app_url(),
            "--on-standby",
            "fail",
        ],
    )
    .run()
    .code(69)
    .stderr_has(&host)
    .stderr_has("read-only standby");
    roadie(
        Mode::Subreaper,
        [
            "wait",
            "--database-url",
            &standby.app_url(),
            "--wait-timeout",
            "4s",
        ],
    )
    .run()
    .code(69)
    .stderr_has("not ready after --wait-timeout 4s")
    // The progress line, 3 s in (the last error may be the attempt the deadline cut short).
    .stderr_has("is a read-only standby (pg_is_in_recovery() is true); waiting for a primary");

    standby_boot(&standby.app_url(), &migrations, "skip", &[])
        .run()
        .code(0)
        .stdout_has("app-started")
        .stderr_has("--on-standby skip, not migrating");
    assert!(!primary.table_exists("_sqlx_migrations"));

    // The app's URL on the standby, the direct URL on the primary: the primary is migrated.
    standby_boot(
        &standby.app_url(),
        &migrations,
        "fail",
        &["--migrate-database-url", &primary.app_url()],
    )
    .run()
    .code(0)
    .stdout_has("app-started");
    assert!(primary.table_exists("applied_log"));
}

#[test]
fn waiting_on_a_standby_proceeds_once_it_is_promoted() {
    let primary = Postgres::started();
    let standby = primary.standby();
    let dir = scratch();
    let migrations = folder(dir.path());
    let waiting = standby_boot(
        &standby.app_url(),
        &migrations,
        "wait",
        &["--wait-timeout", "60s"],
    )
    .start();
    // The progress line (every 3 s) names the host and why.
    waiting.stderr_containing(&format!(
        "127.0.0.1:{} is a read-only standby",
        standby.port
    ));
    standby.promote();
    waiting
        .finish_within(Duration::from_secs(20))
        .code(0)
        .stdout_has("app-started");
    assert_eq!(
        standby.psql("SELECT string_agg(version::text, ',' ORDER BY version) FROM applied_log"),
        "1,2,3"
    );
}

#[test]
fn a_multi_host_url_settles_on_the_primary_and_skips_a_host_that_is_down_or_hangs() {
    let primary = Postgres::started();
    let standby = primary.standby();
    let dir = scratch();
    let migrations = folder(dir.path());
    let pw = crate::support::postgres::escape(crate::support::postgres::ROADIE_PASSWORD);
    let url = |first: u16| {
        format!(
            "postgresql://roadie:{pw}@127.0.0.1:{first},127.0.0.1:{}/app?target_session_attrs=read-write&connect_timeout=1",
            primary.port
        )
    };
    // The standby first: read-write settles on the primary, second.
    standby_boot(&url(standby.port), &migrations, "fail", &[])
        .run()
        .code(0)
        .stdout_has("app-started");
    assert!(primary.table_exists("applied_log"));
    // The first host is down.
    let down = crate::support::postgres::free_port();
    migrating(&url(down), &migrations, &[])
        .run()
        .code(0)
        .stderr_has("schema up to date");
    // The first host accepts TCP but never answers: connect_timeout (libpq: at least 2 s)
    // bounds that attempt, and the next host is tried.
    let hanging = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = hanging.local_addr().unwrap().port();
    migrating(&url(port), &migrations, &[])
        .run()
        .code(0)
        .stderr_has("schema up to date")
        .slower_than(Duration::from_millis(1900))
        .faster_than(Duration::from_secs(25));
    drop(hanging);
}

#[test]
fn a_read_only_mariadb_is_refused_or_waited_for_as_the_policy_says() {
    let db = crate::support::mariadb::MariaDb::started();
    db.sql("SET GLOBAL read_only = 1");
    let dir = scratch();
    let migrations = folder_for_mariadb(dir.path());
    migrating(&db.app_url(), &migrations, &["--on-standby", "fail"])
        .run()
        .code(69)
        .stderr_has("@@read_only is ON")
        .stderr_lacks("app-started");
    let waiting = migrating(&db.app_url(), &migrations, &["--wait-timeout", "60s"]).start();
    waiting.stderr_containing("@@read_only is ON");
    db.sql("SET GLOBAL read_only = 0");
    waiting
        .finish_within(Duration::from_secs(20))
        .code(0)
        .stdout_has("app-started");
    assert_eq!(db.sql("SELECT COUNT(*) FROM app.applied_log"), "1");
}

fn folder_for_mariadb(dir: &Path) -> PathBuf {
    let path = dir.join("migrations");
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(
        path.join("1_log.sql"),
        "CREATE TABLE applied_log (version INTEGER NOT NULL);\nINSERT INTO applied_log VALUES (1);",
    )
    .unwrap();
    path
}

#[test]
fn standby_and_prefer_standby_choose_as_libpq_does() {
    let primary = Postgres::started();
    let standby = primary.standby();
    let dir = scratch();
    let migrations = folder(dir.path());
    let pw = crate::support::postgres::escape(crate::support::postgres::ROADIE_PASSWORD);
    let url = |ports: &[u16], attrs: &str| {
        let hosts: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        format!(
            "postgresql://roadie:{pw}@{}/app?target_session_attrs={attrs}",
            hosts.join(",")
        )
    };
    // The primary first: `standby` and `prefer-standby` both settle on the standby, second,
    // which --on-standby skip then leaves unmigrated.
    for attrs in ["standby", "prefer-standby"] {
        standby_boot(
            &url(&[primary.port, standby.port], attrs),
            &migrations,
            "skip",
            &[],
        )
        .run()
        .code(0)
        .stdout_has("app-started")
        .stderr_has("is a read-only standby (pg_is_in_recovery() is true): --on-standby skip");
    }
    assert!(!primary.table_exists("applied_log"));
    // No standby among the hosts: prefer-standby takes any, so the primary is migrated.
    let down = crate::support::postgres::free_port();
    standby_boot(
        &url(&[down, primary.port], "prefer-standby"),
        &migrations,
        "fail",
        &[],
    )
    .run()
    .code(0)
    .stdout_has("app-started");
    assert!(primary.table_exists("applied_log"));
}
