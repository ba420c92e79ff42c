//! Partitions and dead hosts: roadie in a network namespace of the test's own (a "remote host"
//! joined to the database by a veth pair) loses its network in the middle of a migration.
//! The server frees the lock and rolls the migration back within its keepalive bound (5 s +
//! 3 x 2 s), the next replica migrates, and the partitioned roadie exits 69 within its own,
//! shorter bound (its sockets' silence bound, 5 s; for a migration command, the watch's next
//! look, 2 s, plus that) and before the server frees the lock, without starting its app.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::netns::Namespace;
use crate::support::postgres::{Postgres, ROADIE_PASSWORD, eventually};
use crate::support::server::Server as _;
use crate::support::{Finished, Mode, Roadie, Running, entrypoint, roadie, roadie_bin, scratch};

/// The server's bound (11 s) and roadie's (5-7 s), with room for a loaded machine.
const BOUND: Duration = Duration::from_secs(30);

/// A cluster listening on loopback and on the host's end of `ns`'s veth pair, with a `pause`
/// table the migration reads its sleep from. The namespace comes first: bindings drop in
/// reverse, so the server stops before its veth goes.
fn cluster() -> (Namespace, Postgres) {
    let mut pg = Postgres::new();
    let ns = Namespace::new(pg.port);
    pg.start_also_on(&ns.host_address, &ns.network);
    pg.psql(
        "CREATE TABLE pause (seconds float8); INSERT INTO pause VALUES (60); \
         GRANT SELECT ON pause TO roadie;",
    );
    (ns, pg)
}

/// `cluster()` with `slow_folder` in a scratch directory, as its path.
fn cluster_and_slow_folder() -> (Namespace, Postgres, tempfile::TempDir, String) {
    let (ns, pg) = cluster();
    let dir = scratch();
    let folder = slow_folder(dir.path()).to_string_lossy().into_owned();
    (ns, pg, dir, folder)
}

/// One migration that sleeps as long as `pause` says, then records that it got there.
fn slow_folder(dir: &Path) -> PathBuf {
    let path = dir.join("migrations");
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(
        path.join("1_slow.sql"),
        "CREATE TABLE done (id int);\nSELECT pg_sleep((SELECT seconds FROM pause));",
    )
    .unwrap();
    path
}

fn inside(ns: &Namespace, pg: &Postgres, args: &[&str]) -> Roadie {
    let url = format!(
        "postgres://roadie:{ROADIE_PASSWORD}@{}:{}/app",
        ns.host_address, pg.port
    );
    let mut argv = vec![roadie_bin(), "--database-url", &url];
    argv.extend(args);
    entrypoint(
        Mode::Subreaper,
        Path::new("/usr/sbin/ip"),
        ns.exec_argv(&argv),
    )
}

/// What the server still has from the namespace, for a failure message.
fn left_from(pg: &Postgres, ns: &Namespace) -> String {
    pg.psql(&format!(
        "SELECT pid, application_name, state, wait_event, backend_start, query FROM pg_stat_activity \
         WHERE client_addr = '{}'",
        ns.ns_address
    ))
}

/// Sessions the server still has from the namespace.
fn sessions_from(pg: &Postgres, ns: &Namespace) -> i64 {
    pg.psql(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE client_addr = '{}'",
        ns.ns_address
    ))
    .parse()
    .expect("a count")
}

/// Waits until the namespace's roadie runs its migration (sleeping) under the lock.
fn migrating(pg: &Postgres, running: &Running) {
    let sleeping = eventually(Duration::from_secs(20), || {
        pg.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' \
             AND query LIKE '%pg_sleep((SELECT seconds FROM pause))%' AND pid <> pg_backend_pid()",
        ) == "1"
    });
    if !sleeping {
        running.fail("the migration never started in the namespace");
    }
}

/// Once `ns` is cut off (at `cut`): the server drops the namespace's sessions within BOUND, and
/// `partitioned` (started at `started`) ends within BOUND of the cut. Both times are printed,
/// not asserted more tightly: bench/ddl.py measures them.
fn after_the_cut(
    pg: &Postgres,
    ns: &Namespace,
    partitioned: Running,
    started: Instant,
    cut: Instant,
    what: &str,
) -> Finished {
    // Both moments are watched at once (a psql poll is about 50 ms): when the server has no
    // session of the namespace's left (lock free, migration rolled back), and when the
    // partitioned roadie exits.
    let mut partitioned = partitioned;
    let (mut server_freed, mut roadie_exited) = (None, None);
    while (server_freed.is_none() || roadie_exited.is_none()) && cut.elapsed() < BOUND {
        if roadie_exited.is_none() && partitioned.has_exited() {
            roadie_exited = Some(cut.elapsed());
        }
        if server_freed.is_none() && sessions_from(pg, ns) == 0 {
            server_freed = Some(cut.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let Some(server_freed) = server_freed else {
        panic!(
            "the server still had the namespace's sessions after {BOUND:?}: {}",
            left_from(pg, ns)
        );
    };
    let ended = partitioned.finish_within(Duration::from_secs(10));
    let roadie_exited =
        roadie_exited.unwrap_or_else(|| ended.elapsed.saturating_sub(cut - started));
    eprintln!(
        "{what}partition -> lock free on the server: {:.1}s; -> partitioned roadie exited: {:.1}s",
        server_freed.as_secs_f64(),
        roadie_exited.as_secs_f64()
    );
    assert!(
        roadie_exited < BOUND,
        "exited {roadie_exited:?} after the cut\n{ended}"
    );
    // A holder cut off must stop before the server can free its lock: roadie's own silence
    // bounds (5 s on its sockets and on each look of the watch) are shorter than the
    // server's (11 s).
    assert!(
        roadie_exited < server_freed,
        "the partitioned roadie outlived its lock: exited {roadie_exited:?} after the cut, the \
         server freed the lock after {server_freed:?}\n{ended}"
    );
    ended
}

#[test]
fn a_partitioned_roadie_exits_69_in_bounded_time_while_the_server_frees_the_lock_for_the_next() {
    let (ns, pg, _dir, folder) = cluster_and_slow_folder();
    let started = Instant::now();
    let partitioned = inside(
        &ns,
        &pg,
        &["--migrations", &folder, "sh", "-c", "echo app-started"],
    )
    .start();
    migrating(&pg, &partitioned);
    ns.partition();
    let cut = Instant::now();
    pg.psql("UPDATE pause SET seconds = 0");
    let next = roadie(
        Mode::Subreaper,
        [
            "--database-url",
            &pg.app_url(),
            "--migrations",
            &folder,
            "sh",
            "-c",
            "echo next-started",
        ],
    )
    .env("PGPASSWORD", ROADIE_PASSWORD)
    .start();
    let ended = after_the_cut(&pg, &ns, partitioned, started, cut, "");
    ended
        .code(69)
        .stderr_has("while running migration 1 (")
        .stderr_has("did not answer within");
    assert!(!ended.stdout.contains("app-started"), "{ended}");
    next.finish_within(BOUND)
        .code(0)
        .stdout_has("next-started")
        .stderr_has("1 migration applied");
    assert_eq!(pg.psql("SELECT count(*) FROM _sqlx_migrations"), "1");
}

#[test]
fn a_dead_host_holding_the_lock_frees_it_within_the_keepalive_bound() {
    let (ns, pg, _dir, folder) = cluster_and_slow_folder();
    let running = inside(
        &ns,
        &pg,
        &["--migrations", &folder, "sh", "-c", "echo app-started"],
    )
    .start();
    migrating(&pg, &running);
    // The host dies: its network first (so its kernel's FIN or RST never leaves), then
    // everything on it, then the host itself.
    ns.partition();
    running.signal(libc::SIGKILL);
    drop(running);
    ns.delete();
    let gone = Instant::now();
    let freed = eventually(BOUND, || sessions_from(&pg, &ns) == 0);
    let took = gone.elapsed();
    eprintln!(
        "dead host -> lock free on the server: {:.1}s",
        took.as_secs_f64()
    );
    assert!(
        freed,
        "the server still had the dead host's sessions after {BOUND:?}: {}",
        left_from(&pg, &ns)
    );
    assert_eq!(
        pg.psql("SELECT pg_try_advisory_lock(3469795979745788610)"),
        "t",
        "the lock is free"
    );
    assert!(!pg.table_exists("done"), "the migration was rolled back");
}

#[test]
fn a_partitioned_roadie_stops_its_migration_command_and_exits_69_in_bounded_time() {
    let (ns, pg) = cluster();
    let psql = |host: &str| {
        format!(
            "{}/psql -X -v ON_ERROR_STOP=1 -c \"CREATE TABLE done (id int); \
             SELECT pg_sleep((SELECT seconds FROM pause))\" \
             postgres://roadie@{host}:{}/app",
            crate::support::postgres::BIN,
            pg.port
        )
    };
    let started = Instant::now();
    let partitioned = inside(
        &ns,
        &pg,
        &[
            "--migrate-command",
            &psql(&ns.host_address),
            "--ddl-lock-timeout",
            "2s",
            "sh",
            "-c",
            "echo app-started",
        ],
    )
    .env("PGPASSWORD", ROADIE_PASSWORD)
    .start();
    migrating(&pg, &partitioned);
    ns.partition();
    let cut = Instant::now();
    pg.psql("UPDATE pause SET seconds = 0");
    let ended = after_the_cut(&pg, &ns, partitioned, started, cut, "command: ");
    ended
        .code(69)
        .stderr_has("did not answer within")
        .stderr_has("the command was stopped and the app is not started");
    assert!(!ended.stdout.contains("app-started"), "{ended}");
    roadie(
        Mode::Subreaper,
        [
            "--database-url",
            &pg.app_url(),
            "--migrate-command",
            &psql("127.0.0.1"),
            "sh",
            "-c",
            "echo next-started",
        ],
    )
    .env("PGPASSWORD", ROADIE_PASSWORD)
    .start()
    .finish_within(BOUND)
    .code(0)
    .stdout_has("next-started");
    assert!(pg.table_exists("done"));
}

#[test]
fn a_partitioned_roadie_waiting_for_the_lock_exits_69_in_bounded_time() {
    let (ns, pg, _dir, folder) = cluster_and_slow_folder();
    // A replica on the host holds the lock for a minute...
    let holder = roadie(
        Mode::Subreaper,
        [
            "--database-url",
            &pg.app_url(),
            "--migrations",
            &folder,
            "true",
        ],
    )
    .start();
    migrating(&pg, &holder);
    // ... while the one in the namespace polls for it, until the network goes.
    let started = Instant::now();
    let waiting = inside(
        &ns,
        &pg,
        &["--migrations", &folder, "sh", "-c", "echo app-started"],
    )
    .start();
    // Polling: its session names itself for the holder report on every try.
    let polling = eventually(Duration::from_secs(20), || {
        pg.psql(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE client_addr = '{}' \
             AND application_name = 'roadie (migration lock)'",
            ns.ns_address
        )) == "1"
    });
    if !polling {
        waiting.fail("the namespace's roadie never came to wait for the lock");
    }
    ns.partition();
    let cut = Instant::now();
    let ended = waiting.finish_within(BOUND + Duration::from_secs(10));
    let exited = ended.elapsed.saturating_sub(cut - started);
    eprintln!(
        "waiting for the lock: partition -> roadie exited: {:.1}s",
        exited.as_secs_f64()
    );
    ended.code(69).stderr_has("did not answer within");
    assert!(!ended.stdout.contains("app-started"), "{ended}");
    assert!(exited < BOUND, "exited {exited:?} after the cut\n{ended}");
    drop(holder);
}
