//! Native migrations on MariaDB (sqlx's GET_LOCK name) and SQLite (an flock beside the file):
//! concurrent replicas apply each migration once, and a failure names its file.

use std::path::{Path, PathBuf};

use crate::support::mariadb::MariaDb;
use crate::support::server::Server as _;
use crate::support::{Mode, Roadie, roadie, scratch};

/// Three migrations that log themselves, in SQL MariaDB and SQLite both take.
fn folder(dir: &Path) -> PathBuf {
    let path = dir.join("migrations");
    std::fs::create_dir_all(&path).unwrap();
    let files = [
        (
            "1_create_log.sql",
            "CREATE TABLE applied_log (version INTEGER NOT NULL);\nINSERT INTO applied_log VALUES (1);",
        ),
        (
            "2_create_customers.sql",
            "CREATE TABLE customers (id INTEGER PRIMARY KEY, name VARCHAR(100) NOT NULL);\nINSERT INTO applied_log VALUES (2);",
        ),
        (
            "3_seed.sql",
            "INSERT INTO customers VALUES (1, 'Ada');\nINSERT INTO applied_log VALUES (3);",
        ),
    ];
    for (name, sql) in files {
        std::fs::write(path.join(name), sql).unwrap();
    }
    path
}

fn migrate(url: &str, dir: &Path) -> Roadie {
    let dir = dir.to_string_lossy().into_owned();
    roadie(
        Mode::Subreaper,
        [
            "--database-url",
            url,
            "--migrations",
            &dir,
            "sh",
            "-c",
            "echo app-started",
        ],
    )
}

#[test]
fn five_mariadb_replicas_apply_each_migration_once() {
    let db = MariaDb::started();
    let dir = scratch();
    let migrations = folder(dir.path());
    let replicas: Vec<_> = (0..5)
        .map(|_| migrate(&db.app_url(), &migrations).start())
        .collect();
    for r in replicas {
        r.finish().code(0).stdout_has("app-started");
    }
    assert_eq!(
        db.sql("SELECT COUNT(*) FROM app._sqlx_migrations WHERE success"),
        "3"
    );
    assert_eq!(
        db.sql("SELECT GROUP_CONCAT(version ORDER BY version) FROM app.applied_log"),
        "1,2,3"
    );
}

#[test]
fn a_failing_mariadb_migration_exits_65_naming_the_file() {
    let db = MariaDb::started();
    let dir = scratch();
    let migrations = folder(dir.path());
    std::fs::write(
        migrations.join("3_seed.sql"),
        "INSRT INTO customers VALUES (1, 'Ada');",
    )
    .unwrap();
    migrate(&db.app_url(), &migrations)
        .run()
        .code(65)
        .stderr_has("migration 3 (")
        .stderr_has("3_seed.sql")
        .stderr_has("(1064)");
    // The lock is free: a second run fails the same way at once rather than waiting.
    migrate(&db.app_url(), &migrations)
        .run()
        .code(65)
        .faster_than(std::time::Duration::from_secs(5));
}

#[test]
fn five_sqlite_replicas_apply_each_migration_once() {
    let dir = scratch();
    let migrations = folder(dir.path());
    let url = format!("sqlite:{}/app.db", dir.path().display());
    let replicas: Vec<_> = (0..5).map(|_| migrate(&url, &migrations).start()).collect();
    for r in replicas {
        r.finish().code(0).stdout_has("app-started");
    }
    let status = roadie(
        Mode::Subreaper,
        [
            "migrate",
            "status",
            "--json",
            "--database-url",
            &url,
            "--migrations",
            &migrations.to_string_lossy(),
        ],
    )
    .run();
    status.code(0);
    assert_eq!(
        status.stdout.matches("\"state\":\"applied\"").count(),
        3,
        "{status}"
    );
    assert!(
        dir.path().join("app.db.roadie-lock").exists(),
        "the lock file sits beside the database"
    );
}
