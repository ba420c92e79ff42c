//! Any migrator under roadie's lock, with a real alembic project (tests/blackbox/apps/alembic,
//! 5 revisions) from the venv the test command builds. Without the lock, concurrent
//! `alembic upgrade head` runs fail (duplicate alembic_version); with it, none does.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::postgres::Postgres;
use crate::support::server::Server as _;
use crate::support::{Mode, Roadie, app, roadie, venv_bin};

const APP_KEY: i64 = 3469795979745788610;

/// roadie running `alembic upgrade head` (auto-detected from alembic.ini in its working
/// directory) before `app`.
fn with_alembic(pg: &Postgres, app_argv: &[&str]) -> Roadie {
    let path = format!("{}:/usr/bin:/bin", venv_bin().display());
    let mut args = vec!["--database-url".to_string(), pg.app_url()];
    args.extend(app_argv.iter().map(|s| s.to_string()));
    roadie(Mode::Subreaper, args)
        .current_dir(app("alembic"))
        .env("PATH", &path)
        .env("DATABASE_URL", &pg.app_url())
}

#[test]
fn ten_replicas_running_alembic_apply_it_once_and_none_fails() {
    let pg = Postgres::started();
    // Each run holds its transaction 1 s: without a lock, the others collide with it.
    let replicas: Vec<_> = (0..10)
        .map(|_| {
            // Every replica runs alembic under the lock: the at-head shortcut, which lets the
            // ones that waited skip it, has tests of its own (migrating_alembic_at_head.rs).
            with_alembic(&pg, &["sh", "-c", "echo app-started"])
                .env("ALEMBIC_APP_SLEEP", "1")
                .env("ROADIE_NO_ALEMBIC_SHORTCUT", "1")
                .start()
        })
        .collect();
    for r in replicas {
        let finished = r.finish_within(Duration::from_secs(60));
        finished
            .code(0)
            .stdout_has("app-started")
            .stderr_has("under the migration lock")
            .stderr_lacks("Traceback");
    }
    assert_eq!(pg.psql("SELECT count(*) FROM alembic_version"), "1");
    assert_eq!(pg.psql("SELECT version_num FROM alembic_version"), "0005");
}

#[test]
fn the_migrator_as_command_waits_but_does_not_migrate_first() {
    let pg = Postgres::started();
    with_alembic(&pg, &["alembic", "current"])
        .run()
        .code(0)
        .stderr_has("alembic is the migrator itself: waiting, but not migrating first")
        .stderr_lacks("under the migration lock");
    assert_eq!(pg.psql("SELECT to_regclass('customers') IS NULL"), "t");
}

#[test]
fn a_failing_migration_command_exits_65_naming_it_and_never_starts_the_app() {
    let pg = Postgres::started();
    let finished = with_alembic(&pg, &["sh", "-c", "echo app-started"])
        .env("DATABASE_URL", &pg.url("roadie", "wrong-password", "app"))
        .run();
    finished
        .code(65)
        .stderr_has("migration command \"alembic upgrade head\" exited with code 1")
        .stderr_lacks("wrong-password\"");
    assert!(!finished.stdout.contains("app-started"), "{finished}");
}

#[test]
fn sigterm_during_alembic_exits_143_and_frees_the_lock() {
    let pg = Postgres::started();
    let r = with_alembic(&pg, &["sh", "-c", "echo app-started"])
        .env("ALEMBIC_APP_SLEEP", "60")
        .start();
    r.stderr_containing("under the migration lock");
    assert!(crate::support::postgres::eventually(
        Duration::from_secs(20),
        || {
            pg.psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'roadie' AND state = 'idle in transaction'") != "0"
        }
    ));
    let sent = Instant::now();
    r.signal(libc::SIGTERM);
    let finished = r.finish();
    finished
        .code(143)
        .stderr_has("stopped by SIGTERM while migrating");
    assert!(!finished.stdout.contains("app-started"), "{finished}");
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "{:?}",
        sent.elapsed()
    );
    assert_eq!(
        pg.psql(&format!(
            "SELECT pg_try_advisory_lock({APP_KEY}) AND pg_advisory_unlock({APP_KEY})"
        )),
        "t"
    );
    assert_eq!(
        pg.psql("SELECT to_regclass('customers') IS NULL"),
        "t",
        "alembic rolled back"
    );
}

#[test]
fn an_explicit_migrate_command_runs_from_any_directory() {
    let pg = Postgres::started();
    let ini = Path::new(&app("alembic")).join("alembic.ini");
    let command = format!(
        "{}/alembic -c '{}' upgrade head",
        venv_bin().display(),
        ini.display()
    );
    roadie(
        Mode::Subreaper,
        [
            "--database-url",
            &pg.app_url(),
            "--migrate-command",
            &command,
            "true",
        ],
    )
    .env("DATABASE_URL", &pg.app_url())
    .run()
    .code(0)
    .stderr_has("migration command done in");
    assert_eq!(pg.psql("SELECT version_num FROM alembic_version"), "0005");
    assert_eq!(pg.psql("SELECT count(*) FROM orders"), "4");
}
