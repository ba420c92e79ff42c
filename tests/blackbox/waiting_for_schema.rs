//! `--wait-for-schema`: replicas and workers that do not migrate wait until another process
//! (a Job, a one-shot service) has applied everything their image knows of, then start.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::postgres::Postgres;
use crate::support::server::Server as _;
use crate::support::{Mode, Roadie, roadie, scratch};

/// Two migrations; the second takes `slow` seconds, so a waiter can be seen waiting.
fn folder(dir: &Path, slow: f64) -> PathBuf {
    let path = dir.join("migrations");
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(
        path.join("1_create_users.sql"),
        "CREATE TABLE users (id int);",
    )
    .unwrap();
    std::fs::write(
        path.join("2_slow_index.sql"),
        format!("SELECT pg_sleep({slow});\nCREATE INDEX users_id ON users (id);"),
    )
    .unwrap();
    path
}

fn waiter(pg: &Postgres, migrations: &Path, extra: &[&str]) -> Roadie {
    let mut args = vec![
        "--database-url".to_string(),
        pg.app_url(),
        "--migrations".into(),
        migrations.to_string_lossy().into_owned(),
        "--wait-for-schema".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    roadie(Mode::Subreaper, args)
}

fn migrator(pg: &Postgres, migrations: &Path) -> Roadie {
    roadie(
        Mode::Subreaper,
        [
            "migrate",
            "--database-url",
            &pg.app_url(),
            "--migrations",
            &migrations.to_string_lossy(),
        ],
    )
}

#[test]
fn a_replica_waits_while_another_process_migrates_then_starts_the_app_at_once() {
    let pg = Postgres::started();
    let dir = scratch();
    let migrations = folder(dir.path(), 2.0);
    let app = waiter(&pg, &migrations, &["sh", "-c", "echo app-started"]).start();
    app.stderr_containing("database ready in");
    let migrating = migrator(&pg, &migrations).start();
    let migrated = migrating.finish_within(Duration::from_secs(30));
    let migrated_at = Instant::now();
    migrated.code(0).stderr_has("2 migrations applied in");
    let started = app.finish_within(Duration::from_secs(30));
    started
        .code(0)
        .stdout_has("app-started")
        .stderr_has("schema up to date, after")
        .stderr_lacks("migration lock");
    // Within a second of the migrator's end: no slow poll (the precise figure is bench's).
    assert!(
        migrated_at.elapsed() < Duration::from_secs(1),
        "the app started {:?} after the migrations\n{started}",
        migrated_at.elapsed()
    );
    // It never took the lock nor migrated itself: one history row per migration.
    assert_eq!(pg.psql("SELECT count(*) FROM _sqlx_migrations"), "2");
}

#[test]
fn roadie_wait_waits_for_the_schema_too() {
    let pg = Postgres::started();
    let dir = scratch();
    let migrations = folder(dir.path(), 0.0);
    migrator(&pg, &migrations).run().code(0);
    roadie(
        Mode::Subreaper,
        [
            "wait",
            "--database-url",
            &pg.app_url(),
            "--migrations",
            &migrations.to_string_lossy(),
            "--wait-for-schema",
        ],
    )
    .run()
    .code(0)
    .stderr_has("schema up to date");
}

#[test]
fn nothing_applied_in_time_is_69_naming_what_is_missing() {
    let pg = Postgres::started();
    let dir = scratch();
    let migrations = folder(dir.path(), 0.0);
    let finished = waiter(
        &pg,
        &migrations,
        &["--wait-timeout", "1s", "sh", "-c", "echo app-started"],
    )
    .run();
    finished
        .code(69)
        .stderr_has("missing migration 1 (")
        .stderr_has("1_create_users.sql")
        .stderr_has("migration 2 (")
        .stderr_lacks("app-started");
    assert!(!finished.stdout.contains("app-started"), "{finished}");
}

#[test]
fn a_changed_file_is_65_at_once_since_waiting_cannot_fix_it() {
    let pg = Postgres::started();
    let dir = scratch();
    let migrations = folder(dir.path(), 0.0);
    migrator(&pg, &migrations).run().code(0);
    std::fs::write(migrations.join("1_create_users.sql"), "-- edited\n").unwrap();
    let began = Instant::now();
    waiter(
        &pg,
        &migrations,
        &["--wait-timeout", "30s", "sh", "-c", "echo app-started"],
    )
    .run()
    .code(65)
    .stderr_has("checksum mismatch");
    assert!(began.elapsed() < Duration::from_secs(10), "it waited");
}

#[test]
fn an_unreadable_migration_command_is_refused_with_78() {
    roadie(
        Mode::Subreaper,
        [
            "--database-url",
            "postgres://app@127.0.0.1:1/app",
            "--migrate-command",
            "true",
            "--wait-for-schema",
            "sh",
            "-c",
            "echo app",
        ],
    )
    .run()
    .code(78)
    .stderr_has("--wait-for-schema: roadie cannot read what \"true\" applies");
}
