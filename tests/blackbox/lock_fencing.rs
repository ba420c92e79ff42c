//! Mutual exclusion that survives a lost lock, and waits that a small session pool cannot hang.
//! The lock holder's session is ended under it (`pg_terminate_backend`, as an idle timeout or a
//! pooler dropping the server connection would): no second replica may migrate while the first
//! still does. Each test failed before the fencing (issue 21's findings 1, 3 and 4).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::pgbouncer::{PgBouncer, PoolMode};
use crate::support::postgres::{BIN, Postgres, ROADIE_PASSWORD, eventually};
use crate::support::server::Server;
use crate::support::{Finished, Mode, Roadie, migrating, roadie, scratch};

/// Generous: each run here takes a few seconds.
const LIMIT: Duration = Duration::from_secs(60);

/// Ends the session that holds the migration lock (an advisory lock), once a migration sleeps
/// under it; the pid ended.
fn terminate_the_lock_holder(pg: &Postgres) -> String {
    let sleeping = eventually(Duration::from_secs(20), || {
        pg.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' \
             AND query LIKE '%pg_sleep(2)%' AND pid <> pg_backend_pid()",
        ) == "1"
    });
    assert!(sleeping, "no migration came to sleep under the lock");
    let pid = pg.psql("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted LIMIT 1");
    assert!(!pid.is_empty(), "nobody holds the lock");
    pg.psql(&format!("SELECT pg_terminate_backend({pid})"));
    pid
}

/// Every replica's evidence, for a failure message.
fn evidence(finished: &[Finished]) -> String {
    finished
        .iter()
        .map(|f| f.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Both replicas' exit codes, sorted.
fn codes(finished: &[Finished]) -> Vec<i32> {
    let mut codes: Vec<i32> = finished.iter().map(|f| f.code.unwrap_or(-1)).collect();
    codes.sort();
    codes
}

/// Starts `replicas` (two) at once, ends the lock holder's session under its migration, and
/// checks that the migration was applied once (`seeds` holds one row), that one replica started
/// its app and that the other exited 69 saying `says`, without starting it.
fn cut_the_holder_off(pg: &Postgres, replicas: Vec<Roadie>, says: &str) {
    let running: Vec<_> = replicas.into_iter().map(Roadie::start).collect();
    terminate_the_lock_holder(pg);
    let finished: Vec<Finished> = running
        .into_iter()
        .map(|r| r.finish_within(LIMIT))
        .collect();
    assert_eq!(
        pg.psql("SELECT count(*) FROM seeds"),
        "1",
        "applied twice: {}",
        evidence(&finished)
    );
    assert_eq!(codes(&finished), [0, 69], "{}", evidence(&finished));
    for f in &finished {
        if f.code == Some(69) {
            f.stderr_has(says);
            assert!(!f.stdout.contains("app-started"), "{f}");
        } else {
            f.stdout_has("app-started");
        }
    }
}

/// A `-- no-transaction` migration that sleeps, then inserts: applied twice, it leaves two rows.
fn sleeping_insert(dir: &Path) -> PathBuf {
    let path = dir.join("migrations");
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(
        path.join("1_seed.sql"),
        "-- no-transaction\nSELECT pg_sleep(2);\nINSERT INTO seeds VALUES (1);\n",
    )
    .unwrap();
    path
}

#[test]
fn a_native_migration_whose_lock_session_ends_is_never_applied_beside_the_next_replicas() {
    let pg = Postgres::started();
    pg.psql("CREATE TABLE seeds (id int); GRANT ALL ON seeds TO roadie;");
    let dir = scratch();
    let folder = sleeping_insert(dir.path());
    let replicas = (0..2).map(|_| migrating(&pg.app_url(), &folder, &[]));
    cut_the_holder_off(
        &pg,
        replicas.collect(),
        "the connection was lost while running migration 1",
    );
    assert_eq!(
        pg.psql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"),
        "0"
    );
}

/// A seed as migration commands write them: it records its version in its own table, and
/// skips when the version is there. Run twice at once, both see no version and seed twice.
fn seed_command(pg: &Postgres) -> String {
    format!(
        "{BIN}/psql -X -v ON_ERROR_STOP=1 -c \"BEGIN; SELECT pg_sleep(2); \
         INSERT INTO seeds SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM seed_history); \
         INSERT INTO seed_history SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM seed_history); \
         COMMIT;\" postgres://roadie@127.0.0.1:{}/app",
        pg.port
    )
}

fn seeding(pg: &Postgres) -> Roadie {
    roadie(
        Mode::Subreaper,
        [
            "--database-url",
            &pg.app_url(),
            "--migrate-command",
            &seed_command(pg),
            "sh",
            "-c",
            "echo app-started",
        ],
    )
    .env("PGPASSWORD", ROADIE_PASSWORD)
}

#[test]
fn a_migration_command_whose_lock_session_ends_is_stopped_and_the_next_holder_waits_for_it() {
    let pg = Postgres::started();
    pg.psql(
        "CREATE TABLE seeds (id int); CREATE TABLE seed_history (v int); \
         GRANT ALL ON seeds, seed_history TO roadie;",
    );
    cut_the_holder_off(&pg, vec![seeding(&pg), seeding(&pg)], "the migration lock");
    assert_eq!(pg.psql("SELECT count(*) FROM seed_history"), "1");
}

/// The smallest session pool one replica can work with: two sessions (its own, and for a
/// moment a second that shows whether a transaction pooler is in between).
#[test]
fn ten_replicas_behind_a_session_pool_of_two_all_migrate_once_and_start() {
    let pg = Postgres::started();
    pg.psql("CREATE TABLE seeds (id int); GRANT ALL ON seeds TO roadie;");
    let bouncer = PgBouncer::start_with(&pg, PoolMode::Session, 2);
    let dir = scratch();
    let folder = dir.path().join("migrations");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(
        folder.join("1_seed.sql"),
        "SELECT pg_sleep(0.5);\nINSERT INTO seeds VALUES (1);\n",
    )
    .unwrap();
    let replicas: Vec<_> = (0..10)
        .map(|_| migrating(&bouncer.app_url(), &folder, &[]).start())
        .collect();
    for finished in replicas.into_iter().map(|r| r.finish_within(LIMIT)) {
        finished.code(0).stdout_has("app-started");
    }
    assert_eq!(pg.psql("SELECT count(*) FROM seeds"), "1");
    assert_eq!(
        pg.psql("SELECT count(*) FROM _sqlx_migrations WHERE success"),
        "1"
    );
}
