//! The migrate stage against a real PostgreSQL: sqlx's format and semantics under roadie's
//! lock. Ten replicas apply each migration once; failures roll back, name the file and leave
//! the lock free; a killed or stopped roadie never wedges the next one.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::postgres::{BIN, Postgres};
use crate::support::server::Server as _;
use crate::support::{Finished, Mode, migrating, roadie, scratch};

/// sqlx's lock key for the database `app`: 0x3d32ad9e * crc32("app").
const APP_KEY: i64 = 3469795979745788610;

/// Writes a sqlx-format folder; every migration logs its version into `applied_log`, so a
/// double application shows.
fn folder(dir: &Path, migrations: &[(i64, &str, &str)]) -> PathBuf {
    let path = dir.join("migrations");
    std::fs::create_dir_all(&path).unwrap();
    for (version, name, sql) in migrations {
        std::fs::write(path.join(format!("{version}_{name}.sql")), sql).unwrap();
    }
    path
}

fn five(dir: &Path) -> PathBuf {
    folder(
        dir,
        &[
            (
                1,
                "create_log",
                "CREATE TABLE applied_log (version int NOT NULL);\nINSERT INTO applied_log VALUES (1);",
            ),
            (
                2,
                "create_customers",
                "CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL);\nINSERT INTO applied_log VALUES (2);",
            ),
            (
                3,
                "seed",
                "SELECT pg_sleep(0.2);\nINSERT INTO customers VALUES (1, 'Ada'), (2, 'Grace');\nINSERT INTO applied_log VALUES (3);",
            ),
            (
                4,
                "add_email",
                "ALTER TABLE customers ADD COLUMN email text;\nINSERT INTO applied_log VALUES (4);",
            ),
            (
                5,
                "index",
                "CREATE INDEX customers_by_name ON customers (name);\nINSERT INTO applied_log VALUES (5);",
            ),
        ],
    )
}

fn migrate(pg: &Postgres, dir: &Path, extra: &[&str]) -> crate::support::Roadie {
    migrating(&pg.app_url(), dir, extra)
}

fn lock_is_free(pg: &Postgres) -> bool {
    pg.psql(&format!(
        "SELECT pg_try_advisory_lock({APP_KEY}) AND pg_advisory_unlock({APP_KEY})"
    )) == "t"
}

#[test]
fn ten_replicas_on_an_empty_database_apply_each_migration_exactly_once() {
    let pg = Postgres::started();
    let dir = scratch();
    let migrations = five(dir.path());
    let replicas: Vec<_> = (0..10)
        .map(|_| migrate(&pg, &migrations, &[]).start())
        .collect();
    for r in replicas {
        r.finish()
            .code(0)
            .stdout_has("app-started")
            .stderr_lacks("ERROR");
    }
    assert_eq!(
        pg.psql("SELECT count(*) FROM _sqlx_migrations WHERE success"),
        "5"
    );
    assert_eq!(
        pg.psql("SELECT string_agg(version::text, ',' ORDER BY version) FROM applied_log"),
        "1,2,3,4,5"
    );
    assert!(lock_is_free(&pg));
}

#[test]
fn a_second_boot_finds_the_schema_up_to_date_without_taking_the_lock() {
    let pg = Postgres::started();
    let dir = scratch();
    let migrations = five(dir.path());
    migrate(&pg, &migrations, &[])
        .run()
        .code(0)
        .stderr_has("5 migrations applied in");
    // The lock is held elsewhere: an up-to-date boot must not wait for it.
    let holder = hold_lock(&pg);
    migrate(&pg, &migrations, &["--lock-timeout", "1s"])
        .run()
        .code(0)
        .stderr_has("schema up to date")
        .faster_than(Duration::from_secs(1));
    drop(holder);
}

#[test]
fn an_up_to_date_boot_logs_in_once_the_wait_stages_connection_goes_on_to_migrate() {
    let pg = Postgres::started();
    let dir = scratch();
    let migrations = five(dir.path());
    migrate(&pg, &migrations, &[]).run().code(0);
    let before = pg.settled_sessions("app");
    migrate(&pg, &migrations, &[])
        .run()
        .code(0)
        .stderr_has("schema up to date")
        .stdout_has("app-started");
    assert_eq!(pg.settled_sessions("app") - before, 1, "logins of one boot");
}

#[test]
fn a_boot_with_a_migration_command_logs_in_once_the_lock_goes_on_the_wait_stages_connection() {
    let pg = Postgres::started();
    let before = pg.settled_sessions("app");
    roadie(
        Mode::Subreaper,
        [
            "--database-url",
            &pg.app_url(),
            "--migrate-command",
            "true",
            "--",
            "sh",
            "-c",
            "echo app-started",
        ],
    )
    .run()
    .code(0)
    .stderr_has("running true (pid")
    // An opaque command loses the at-head shortcut, and one line says so (issue 23).
    .stderr_has("\"true\" runs on every boot, at head too: roadie cannot read what it applies")
    .stdout_has("app-started");
    assert_eq!(pg.settled_sessions("app") - before, 1, "logins of one boot");
}

#[test]
fn sqlx_accepts_what_roadie_wrote_and_roadie_accepts_what_sqlx_wrote() {
    let dir = scratch();
    let migrations = five(dir.path());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // roadie first, then sqlx's own Migrator: a no-op, no mismatch.
    let pg = Postgres::started();
    migrate(&pg, &migrations, &[]).run().code(0);
    runtime.block_on(async {
        let pool = sqlx::PgPool::connect(&pg.app_url()).await.unwrap();
        let migrator = sqlx::migrate::Migrator::new(migrations.as_path())
            .await
            .unwrap();
        migrator
            .run(&pool)
            .await
            .expect("sqlx accepts roadie's history");
        pool.close().await;
    });
    assert_eq!(
        pg.psql("SELECT count(*) FROM applied_log"),
        "5",
        "sqlx re-ran nothing"
    );
    drop(pg);

    // sqlx first, then roadie: schema up to date.
    let pg = Postgres::started();
    runtime.block_on(async {
        let pool = sqlx::PgPool::connect(&pg.app_url()).await.unwrap();
        let migrator = sqlx::migrate::Migrator::new(migrations.as_path())
            .await
            .unwrap();
        migrator.run(&pool).await.unwrap();
        pool.close().await;
    });
    migrate(&pg, &migrations, &[])
        .run()
        .code(0)
        .stderr_has("schema up to date");
    assert_eq!(pg.psql("SELECT count(*) FROM applied_log"), "5");
}

#[test]
fn a_failing_migration_exits_65_naming_the_file_and_line_rolls_back_and_frees_the_lock() {
    let pg = Postgres::started();
    let dir = scratch();
    let migrations = five(dir.path());
    std::fs::write(
        migrations.join("3_seed.sql"),
        "CREATE TABLE half_done (id int);\nINSERT INTO customers VALUES (1, 'Ada');\nINSRT INTO customers VALUES (2, 'Grace');\n",
    )
    .unwrap();
    let finished = migrate(&pg, &migrations, &[]).run();
    finished
        .code(65)
        .stderr_has("migration 3 (")
        .stderr_has("3_seed.sql, line 3)")
        .stderr_has("syntax error")
        .stderr_has("rolled back, nothing recorded")
        .stderr_lacks("app-started");
    assert!(!finished.stdout.contains("app-started"), "{finished}");
    assert_eq!(
        pg.psql("SELECT string_agg(version::text, ',' ORDER BY version) FROM _sqlx_migrations"),
        "1,2"
    );
    assert_eq!(
        pg.psql("SELECT to_regclass('half_done') IS NULL"),
        "t",
        "3 rolled back completely"
    );
    assert_eq!(pg.psql("SELECT count(*) FROM customers"), "0");
    assert!(lock_is_free(&pg));
    // A second roadie gets the lock at once and fails the same way (no dirty state, no wedge).
    migrate(&pg, &migrations, &["--lock-timeout", "2s"])
        .run()
        .code(65)
        .faster_than(Duration::from_secs(2));
}

#[test]
fn sigkill_in_the_middle_of_a_slow_migration_does_not_wedge_the_next_roadie() {
    let pg = Postgres::started();
    let dir = scratch();
    let migrations = folder(
        dir.path(),
        &[
            (1, "first", "CREATE TABLE t1 (id int);"),
            (2, "slow", "CREATE TABLE t2 (id int);\nSELECT pg_sleep(60);"),
        ],
    );
    let first = migrate(&pg, &migrations, &[]).start();
    assert!(
        crate::support::postgres::eventually(Duration::from_secs(10), || {
            pg.psql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()") == "1"
        }),
        "the slow migration never started"
    );
    first.signal(libc::SIGKILL);
    let _ = first.finish();
    // The killed roadie's statement would sleep in its backend for a minute unless the server
    // notices roadie is gone; the next boot (a fixed release) must not wait that long.
    let started = Instant::now();
    let fixed = folder(
        &dir.path().join("fixed"),
        &[
            (1, "first", "CREATE TABLE t1 (id int);"),
            (2, "slow", "CREATE TABLE t2 (id int);"),
        ],
    );
    migrate(&pg, &fixed, &["--lock-timeout", "20s"])
        .run()
        .code(0)
        .stderr_has("1 migration applied");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn sigterm_during_a_migration_exits_143_never_starts_the_app_and_frees_the_lock() {
    let pg = Postgres::started();
    let dir = scratch();
    let migrations = folder(
        dir.path(),
        &[(1, "slow", "CREATE TABLE t1 (id int);\nSELECT pg_sleep(60);")],
    );
    let r = migrate(&pg, &migrations, &[]).start();
    assert!(crate::support::postgres::eventually(
        Duration::from_secs(10),
        || {
            pg.psql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()") == "1"
        }
    ));
    let sent = Instant::now();
    r.signal(libc::SIGTERM);
    let finished = r.finish();
    finished
        .code(143)
        .stderr_has("stopped by SIGTERM while migrating")
        .stderr_lacks("starting sh");
    assert!(!finished.stdout.contains("app-started"));
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "{:?}",
        sent.elapsed()
    );
    assert!(lock_is_free(&pg));
    assert_eq!(
        pg.psql("SELECT to_regclass('t1') IS NULL"),
        "t",
        "cancelled and rolled back"
    );
}

#[test]
fn postgres_dying_in_the_middle_gives_a_clear_error_and_a_later_boot_completes() {
    let mut pg = Postgres::started();
    let dir = scratch();
    let migrations = folder(
        dir.path(),
        &[(1, "slow", "CREATE TABLE t1 (id int);\nSELECT pg_sleep(30);")],
    );
    let r = migrate(&pg, &migrations, &[]).start();
    assert!(crate::support::postgres::eventually(
        Duration::from_secs(10),
        || {
            pg.psql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30)%' AND pid <> pg_backend_pid()") == "1"
        }
    ));
    pg.stop();
    let finished = r.finish();
    assert!(matches!(finished.code, Some(65 | 69)), "{finished}");
    finished.stderr_has("unavailable");
    pg.start();
    let fixed = folder(
        &dir.path().join("fixed"),
        &[(1, "slow", "CREATE TABLE t1 (id int);")],
    );
    migrate(&pg, &fixed, &[])
        .run()
        .code(0)
        .stderr_has("1 migration applied");
}

#[test]
fn a_changed_file_is_a_checksum_mismatch_naming_version_and_file() {
    let pg = Postgres::started();
    let dir = scratch();
    let migrations = five(dir.path());
    migrate(&pg, &migrations, &[]).run().code(0);
    std::fs::write(migrations.join("2_create_customers.sql"), "-- edited\n").unwrap();
    migrate(&pg, &migrations, &[])
        .run()
        .code(65)
        .stderr_has("migration 2 (")
        .stderr_has("2_create_customers.sql")
        .stderr_has("checksum mismatch");
    assert!(lock_is_free(&pg));
}

#[test]
fn an_applied_migration_missing_from_the_folder_fails_with_65() {
    let pg = Postgres::started();
    let dir = scratch();
    let migrations = five(dir.path());
    migrate(&pg, &migrations, &[]).run().code(0);
    std::fs::remove_file(migrations.join("5_index.sql")).unwrap();
    migrate(&pg, &migrations, &[])
        .run()
        .code(65)
        .stderr_has("migration 5")
        .stderr_has("missing from");
}

/// A psql session holding the migration lock until dropped.
struct LockHolder(Child);

impl Drop for LockHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn hold_lock(pg: &Postgres) -> LockHolder {
    let mut child = Command::new("runuser")
        .args([
            "-u",
            "postgres",
            "--",
            &format!("{BIN}/psql"),
            "-X",
            "-q",
            "-h",
        ])
        .arg(pg.socket_dir())
        .args([
            "-p",
            &pg.port.to_string(),
            "-d",
            "app",
            "-v",
            "ON_ERROR_STOP=1",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    let stdin = child.stdin.as_mut().unwrap();
    writeln!(
        stdin,
        "SET application_name = 'held-by-test'; SELECT pg_advisory_lock({APP_KEY});"
    )
    .unwrap();
    stdin.flush().unwrap();
    assert!(crate::support::postgres::eventually(
        Duration::from_secs(5),
        || !lock_is_free(pg)
    ));
    LockHolder(child)
}

#[test]
fn the_lock_timeout_gives_75_naming_the_holder() {
    let pg = Postgres::started();
    let dir = scratch();
    let migrations = five(dir.path());
    let holder = hold_lock(&pg);
    let finished: Finished = migrate(&pg, &migrations, &["--lock-timeout", "1s"]).run();
    drop(holder);
    finished
        .code(75)
        .stderr_has("--lock-timeout")
        .stderr_has("held-by-test")
        .stderr_lacks("app-started");
    assert_eq!(
        pg.psql("SELECT to_regclass('_sqlx_migrations') IS NULL"),
        "t",
        "nothing ran, not even the table"
    );
}

#[test]
fn skip_migrations_waits_but_does_not_migrate() {
    let pg = Postgres::started();
    let dir = scratch();
    let migrations = five(dir.path());
    migrate(&pg, &migrations, &["--skip-migrations"])
        .run()
        .code(0)
        .stdout_has("app-started")
        .stderr_has("--skip-migrations");
    migrate(&pg, &migrations, &[])
        .env("ROADIE_SKIP_MIGRATIONS", "1")
        .run()
        .code(0);
    assert_eq!(
        pg.psql("SELECT to_regclass('_sqlx_migrations') IS NULL"),
        "t"
    );
}

#[test]
fn create_index_concurrently_runs_while_another_replica_waits_for_the_lock() {
    let pg = Postgres::started();
    pg.psql("CREATE TABLE big AS SELECT g AS id FROM generate_series(1, 100000) g; ALTER TABLE big OWNER TO roadie");
    let dir = scratch();
    let migrations = folder(
        dir.path(),
        &[
            (1, "slow", "SELECT pg_sleep(1);\nCREATE TABLE t1 (id int);"),
            (
                2,
                "cic",
                "-- no-transaction\nCREATE INDEX CONCURRENTLY big_by_id ON big (id);",
            ),
        ],
    );
    let first = migrate(&pg, &migrations, &[]).start();
    std::thread::sleep(Duration::from_millis(300));
    // The second replica polls for the lock while the first one's CIC waits for every open
    // snapshot: a blocking pg_advisory_lock waiter would hold one and deadlock.
    let second = migrate(&pg, &migrations, &[]).start();
    first.finish_within(Duration::from_secs(20)).code(0);
    second.finish_within(Duration::from_secs(20)).code(0);
    assert_eq!(
        pg.psql("SELECT indisvalid FROM pg_index WHERE indexrelid = 'big_by_id'::regclass"),
        "t"
    );
}

#[test]
fn migrate_status_lists_applied_pending_mismatched_and_missing() {
    let pg = Postgres::started();
    let dir = scratch();
    let migrations = five(dir.path());
    migrate(&pg, &migrations, &[]).run().code(0);
    std::fs::write(migrations.join("2_create_customers.sql"), "-- edited\n").unwrap();
    std::fs::remove_file(migrations.join("5_index.sql")).unwrap();
    std::fs::write(migrations.join("6_more.sql"), "SELECT 1;").unwrap();
    let url = pg.app_url();
    let dir_arg = migrations.to_string_lossy().into_owned();
    let text = roadie(
        Mode::Subreaper,
        [
            "migrate",
            "status",
            "--database-url",
            &url,
            "--migrations",
            &dir_arg,
        ],
    )
    .run();
    text.code(0)
        .stdout_has("_sqlx_migrations in postgres://roadie:***@")
        .stdout_has("/app (from --database-url)\n")
        .stdout_has("applied")
        .stdout_has("checksum mismatch")
        .stdout_has("missing")
        .stdout_has("pending");
    let json = roadie(
        Mode::Subreaper,
        [
            "migrate",
            "status",
            "--json",
            "--database-url",
            &url,
            "--migrations",
            &dir_arg,
        ],
    )
    .run();
    json.code(0);
    let rows: serde_json::Value = serde_json::from_str(json.stdout.trim()).expect("one JSON array");
    let states: Vec<(i64, String)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["version"].as_i64().unwrap(),
                r["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            (1, "applied".to_string()),
            (2, "checksum mismatch".into()),
            (3, "applied".into()),
            (4, "applied".into()),
            (5, "missing".into()),
            (6, "pending".into())
        ]
    );
    assert!(rows[0]["installed_on"].is_string() && rows[0]["execution_ms"].is_number());
    // The key of 0.1, kept for one release.
    for row in rows.as_array().unwrap() {
        assert_eq!(row["status"], row["state"], "{row}");
    }
}

#[test]
fn roadie_migrate_is_a_one_shot_that_waits_migrates_and_exits() {
    let mut pg = Postgres::new();
    let dir = scratch();
    let migrations = five(dir.path());
    let url = pg.app_url();
    let dir_arg = migrations.to_string_lossy().into_owned();
    let r = roadie(
        Mode::Subreaper,
        ["migrate", "--database-url", &url, "--migrations", &dir_arg],
    )
    .start();
    std::thread::sleep(Duration::from_millis(500));
    pg.start();
    r.finish()
        .code(0)
        .stderr_has("database ready in")
        .stderr_has("5 migrations applied in");
}

#[test]
fn the_repos_migrations_folder_is_found_without_flags() {
    let pg = Postgres::started();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    roadie(Mode::Subreaper, ["--database-url", &pg.app_url(), "true"])
        .current_dir(repo)
        .run()
        .code(0)
        .stderr_has("4 migrations applied in");
    assert_eq!(pg.psql("SELECT count(*) FROM orders"), "3");
}

#[test]
fn the_lock_timeout_is_reported_as_configured() {
    let pg = Postgres::started();
    let dir = scratch();
    let migrations = five(dir.path());
    let holder = hold_lock(&pg);
    let finished: Finished = migrate(&pg, &migrations, &["--lock-timeout", "1500ms"]).run();
    drop(holder);
    finished
        .code(75)
        .stderr_has("not acquired within --lock-timeout 1s 500ms");
}

#[test]
fn a_server_warning_during_a_migration_names_the_migration() {
    let pg = Postgres::started();
    let dir = scratch();
    let migrations = folder(
        dir.path(),
        &[
            (1, "plain", "CREATE TABLE plain (id int);"),
            (
                2,
                "own_transaction",
                "BEGIN;\nCREATE TABLE inner_tx (id int);\nCOMMIT;",
            ),
            (
                3,
                "own_transaction_too",
                "BEGIN;\nCREATE TABLE inner_tx_too (id int);\nCOMMIT;",
            ),
        ],
    );
    let finished = migrate(&pg, &migrations, &[]).run();
    finished.code(0);
    // Four WARN lines (two a migration), explained once (issue 23).
    let explained = "about the WARN line(s) above: the migration has its own BEGIN/COMMIT";
    assert_eq!(finished.stderr.matches(explained).count(), 1, "{finished}");
    assert_eq!(
        finished.stderr.matches("transaction in progress").count(),
        4,
        "{finished}"
    );
    let line = finished
        .stderr
        .lines()
        .find(|l| l.contains("there is already a transaction in progress"))
        .unwrap_or_else(|| panic!("no notice line\n{finished}"));
    assert!(
        line.contains("migration 2 (") && line.contains("2_own_transaction.sql"),
        "the notice does not name its migration: {line}"
    );
}

#[test]
fn one_info_line_names_the_host_and_database_but_no_password() {
    let pg = Postgres::started();
    let dir = scratch();
    let migrations = five(dir.path());
    let finished = migrate(&pg, &migrations, &[]).run();
    finished
        .code(0)
        .stderr_has("waiting for the database \"app\" on 127.0.0.1:")
        .stderr_lacks(crate::support::postgres::ROADIE_PASSWORD);
}
