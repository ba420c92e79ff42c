//! Migrations that never stall the site: with `--ddl-lock-timeout`, a migration queued behind a
//! long transaction gives up its place after that long (so ordinary queries queued behind it
//! go on), is rolled back and retried, names its blocker, and ends with 65 when the retries run
//! out. Without it, every query on the table waits as long as the blocker: the problem is real.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::postgres::Postgres;
use crate::support::server::Server as _;
use crate::support::sessions::{Blocker, longest_query_time, query_time};
use crate::support::{Mode, Roadie, app, migrating, roadie, scratch};

const APP_KEY: i64 = 3469795979745788610;

/// A folder whose first migration creates `orders` (applied before the blocker comes) and
/// whose second is `second`.
fn folder(dir: &Path, second: &str) -> PathBuf {
    let path = dir.join("migrations");
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(
        path.join("1_create_orders.sql"),
        "CREATE TABLE orders (id int PRIMARY KEY);\nINSERT INTO orders VALUES (1), (2);",
    )
    .unwrap();
    std::fs::write(path.join("2_change_orders.sql"), second).unwrap();
    path
}

fn migrate(pg: &Postgres, dir: &Path, extra: &[&str]) -> Roadie {
    migrating(&pg.app_url(), dir, extra)
}

/// A cluster with migration 1 applied (roadie's own run, so the table is roadie's role's).
fn orders_table(second: &str) -> (Postgres, tempfile::TempDir, PathBuf) {
    let pg = Postgres::started();
    let dir = scratch();
    let path = folder(dir.path(), second);
    let first = dir.path().join("first");
    std::fs::create_dir_all(&first).unwrap();
    std::fs::copy(
        path.join("1_create_orders.sql"),
        first.join("1_create_orders.sql"),
    )
    .unwrap();
    migrate(&pg, &first, &[]).run().code(0);
    (pg, dir, path)
}

fn lock_is_free(pg: &Postgres) -> bool {
    pg.psql(&format!(
        "SELECT pg_try_advisory_lock({APP_KEY}) AND pg_advisory_unlock({APP_KEY})"
    )) == "t"
}

#[test]
fn a_migration_behind_a_long_transaction_retries_and_never_stalls_other_queries() {
    let (pg, _dir, path) = orders_table("ALTER TABLE orders ADD COLUMN status text;");
    let blocker = Blocker::hold(
        &pg,
        "reporting",
        "LOCK TABLE orders IN ACCESS SHARE MODE; SELECT count(*) FROM orders;",
    );
    let running = migrate(&pg, &path, &["--ddl-lock-timeout", "200ms"]).start();
    running.stderr_containing("gave up waiting for a table lock");
    // While the migration retries, ordinary queries on the table go on: each waits at most
    // about one lock timeout (when it arrives while the ALTER waits in the queue).
    let longest = longest_query_time(&pg, "SELECT count(*) FROM orders", Duration::from_secs(2));
    eprintln!("longest SELECT on orders during the retries: {longest:?}");
    assert!(
        longest < Duration::from_secs(2),
        "a SELECT waited {longest:?} behind the migration"
    );
    blocker.commit();
    let finished = running.finish_within(Duration::from_secs(30));
    finished
        .code(0)
        .stdout_has("app-started")
        .stderr_has("migration 2 (")
        .stderr_has("(attempt 1 of 11)")
        .stderr_has("blocked by pid ")
        .stderr_has("application \"reporting\"")
        .stderr_has("idle in transaction")
        .stderr_has("\"SELECT count(*) FROM ...\"")
        .stderr_has("rolled back, retrying in");
    assert_eq!(
        pg.psql("SELECT count(*) FROM information_schema.columns WHERE table_name = 'orders' AND column_name = 'status'"),
        "1"
    );
    assert_eq!(pg.psql("SELECT count(*) FROM _sqlx_migrations"), "2");
}

#[test]
fn without_a_ddl_lock_timeout_queries_wait_as_long_as_the_blocker_holds() {
    let (pg, _dir, path) = orders_table("ALTER TABLE orders ADD COLUMN status text;");
    let blocker = Blocker::hold(&pg, "reporting", "LOCK TABLE orders IN ACCESS SHARE MODE;");
    let running = migrate(&pg, &path, &[]).start();
    // The ALTER waits in the lock queue...
    let queued = crate::support::postgres::eventually(Duration::from_secs(20), || {
        pg.psql(
            // The migration's session is unnamed (a pooler would keep a name): find it by
            // its statement.
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'ALTER TABLE orders%' \
             AND wait_event_type = 'Lock'",
        ) == "1"
    });
    assert!(queued, "the ALTER never queued for its lock");
    // ... and a SELECT queues behind it until the blocker commits, 1.5 s from now.
    let commit = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        blocker.commit();
    });
    let waited = query_time(&pg, "SELECT count(*) FROM orders");
    commit.join().unwrap();
    eprintln!("a SELECT on orders waited {waited:?} behind the migration");
    assert!(
        waited >= Duration::from_millis(1000),
        "the SELECT waited only {waited:?}"
    );
    running.finish().code(0);
}

#[test]
fn retries_run_out_with_65_naming_the_migration_and_the_blocker_even_when_it_resets_its_settings() {
    // A migration's own RESET returns to the session's default: the startup option.
    let (pg, _dir, path) =
        orders_table("RESET lock_timeout;\nRESET ALL;\nALTER TABLE orders ADD COLUMN status text;");
    let blocker = Blocker::hold(
        &pg,
        "nightly-report",
        "LOCK TABLE orders IN ACCESS SHARE MODE;",
    );
    let finished = migrate(
        &pg,
        &path,
        &["--ddl-lock-timeout", "100ms", "--ddl-retries", "2"],
    )
    .run();
    finished
        .code(65)
        .stderr_has("(attempt 2 of 3)")
        .stderr_has("migration 2 (")
        .stderr_has("2_change_orders.sql) failed: still waiting for a table lock after 3 attempts")
        .stderr_has("--ddl-lock-timeout 100ms")
        .stderr_has("application \"nightly-report\"")
        .stderr_has("rolled back, nothing recorded");
    assert!(!finished.stdout.contains("app-started"), "{finished}");
    assert_eq!(pg.psql("SELECT count(*) FROM _sqlx_migrations"), "1");
    assert!(lock_is_free(&pg));
    blocker.commit();
}

#[test]
fn a_no_transaction_migration_that_left_nothing_behind_is_retried() {
    let (pg, _dir, path) =
        orders_table("-- no-transaction\nCREATE INDEX CONCURRENTLY orders_by_id ON orders (id);");
    // SHARE conflicts with the build's first lock: it times out before creating anything.
    let blocker = Blocker::hold(&pg, "reporting", "LOCK TABLE orders IN SHARE MODE;");
    let running = migrate(&pg, &path, &["--ddl-lock-timeout", "100ms"]).start();
    running.stderr_containing("gave up waiting for a table lock");
    blocker.commit();
    running.finish_within(Duration::from_secs(30)).code(0);
    assert_eq!(
        pg.psql("SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_by_id'::regclass"),
        "t"
    );
}

#[test]
fn a_concurrent_index_build_that_timed_out_names_its_invalid_index_and_the_fix() {
    let (pg, _dir, path) =
        orders_table("-- no-transaction\nCREATE INDEX CONCURRENTLY orders_by_id ON orders (id);");
    // A writer's open transaction: the build creates its (invalid) index, then times out
    // waiting for that transaction to end. Running it again would fail on the name.
    let blocker = Blocker::hold(&pg, "writer", "INSERT INTO orders VALUES (3);");
    let finished = migrate(&pg, &path, &["--ddl-lock-timeout", "100ms"]).run();
    finished
        .code(65)
        .stderr_has("lock timeout")
        .stderr_has("it left index orders_by_id INVALID")
        .stderr_has("DROP INDEX CONCURRENTLY orders_by_id;")
        .stderr_lacks("retrying in");
    blocker.commit();
    assert!(lock_is_free(&pg));
}

#[test]
fn alembic_under_a_ddl_lock_timeout_fails_on_the_lock_instead_of_stalling() {
    let pg = Postgres::started();
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin");
    assert!(bin.join("alembic").exists(), "run scripts/venv.sh first");
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let alembic = |command: &str, extra: &[&str]| {
        let mut args = vec![
            "migrate".to_string(),
            "--database-url".into(),
            pg.app_url(),
            "--migrate-command".into(),
            command.into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        roadie(Mode::Subreaper, args)
            .current_dir(app("alembic"))
            .env("PATH", &path)
            .env("DATABASE_URL", &pg.app_url())
            .env("PGOPTIONS", "-c search_path=public")
    };
    alembic("alembic upgrade 0002", &[]).run().code(0);
    // 0003 adds a column to orders.
    let blocker = Blocker::hold(&pg, "reporting", "LOCK TABLE orders IN ACCESS SHARE MODE;");
    let finished = alembic("alembic upgrade head", &["--ddl-lock-timeout", "300ms"]).run();
    finished
        .code(65)
        .stderr_has("canceling statement due to lock timeout")
        .stderr_has("migration command \"alembic upgrade head\" exited with code 1")
        .stderr_has("it waited for a table lock held by pid ")
        .stderr_has("application \"reporting\"");
    blocker.commit();
    assert_eq!(pg.psql("SELECT version_num FROM alembic_version"), "0002");
    assert!(lock_is_free(&pg));
}

#[test]
fn the_migration_command_gets_the_lock_timeout_in_pgoptions_after_the_containers_own() {
    let pg = Postgres::started();
    let dir = scratch();
    let seen = dir.path().join("env");
    let command = format!(
        "sh -c 'echo \"$PGOPTIONS|$PGAPPNAME\" > {}'",
        seen.display()
    );
    let run = |extra: &[&str]| {
        let mut args = vec![
            "migrate".to_string(),
            "--database-url".into(),
            pg.app_url(),
            "--migrate-command".into(),
            command.clone(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        roadie(Mode::Subreaper, args)
            .env("PGOPTIONS", "-c search_path=app")
            .run()
            .code(0);
        std::fs::read_to_string(&seen).unwrap().trim().to_string()
    };
    assert_eq!(
        run(&["--ddl-lock-timeout", "2s"]),
        "-c search_path=app -c lock_timeout=2000ms -c tcp_keepalives_idle=5 \
         -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3 \
         -c client_connection_check_interval=1s|roadie (migration command)"
    );
    // PGOPTIONS untouched without the option; PGAPPNAME always names the command's sessions,
    // so that a new lock holder can wait for an earlier holder's (lock_fencing.rs).
    assert_eq!(
        run(&[]),
        "-c search_path=app|roadie (migration command)",
        "PGOPTIONS untouched without the option"
    );
}
