//! Native migrations: a sqlx-format folder run by sqlx's own `Migrator` (same table, SHA-384
//! checksums, file names, `-- no-transaction`, dirty/missing/mismatch checks), so a service
//! running `sqlx::migrate!()` on the same database and roadie agree in both directions. roadie
//! adds what the library lacks: its lock is taken before the table is created and released on
//! every path, a stop cancels the running statement, and failures name the file and line.
//! With `--ddl-lock-timeout`, a migration that times out on a table lock is rolled back and
//! retried, naming its blocker; a watch session beside the run ends it (69) when the database
//! stops answering. It must never wait on the database without a bound of its own.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sqlx::migrate::{
    AppliedMigration, Migrate, MigrateError as SqlxMigrateError, Migration, Migrator,
};
#[cfg(feature = "mysql")]
use sqlx::mysql::MySqlDatabaseError;
#[cfg(feature = "postgres")]
use sqlx::postgres::{PgDatabaseError, PgErrorPosition};

use sqlx::Connection as _;
use tracing::{debug, warn};

use super::lock::{Acquired, MigrationLock};
use super::{DdlLimits, Locking, MigrateError, Summary, bounded};
use crate::database::{Connection, DatabaseUrl, Kind, on_each_driver, pooler, sqlstate};
use crate::logging;
use crate::supervise::Supervision;

const TABLE: &str = "_sqlx_migrations";

/// The folder's migrations, with the file each came from.
pub struct Folder {
    pub dir: PathBuf,
    /// The database they go to: how a failure ends depends on it.
    kind: Kind,
    migrations: Vec<(Migration, PathBuf)>,
}

impl Folder {
    /// Reads the folder as sqlx does (silently ignoring what is not a migration).
    pub fn read(dir: &Path, kind: Kind) -> Result<Self, MigrateError> {
        let mut migrations =
            sqlx::migrate::resolve_blocking(dir).map_err(|e| MigrateError::Failed {
                what: format!("reading {}", dir.display()),
                message: e.to_string(),
            })?;
        migrations.sort_by_key(|(m, _)| m.version);
        Ok(Folder {
            dir: dir.to_path_buf(),
            kind,
            migrations,
        })
    }

    /// sqlx's migrator over the folder's migrations up to `version`: it applies what of them
    /// is pending, after the same checks a whole-folder run makes.
    fn migrator_through(&self, version: i64) -> Migrator {
        let mut migrator = Migrator::with_migrations(
            self.migrations
                .iter()
                .map(|(m, _)| m.clone())
                .filter(|m| m.version <= version)
                .collect(),
        );
        // roadie's own lock is held around the run (see lock.rs).
        migrator.set_locking(false);
        // Applied migrations newer than `version` are in the folder: `pending` checked every
        // applied one against the whole folder before the run.
        migrator.set_ignore_missing(true);
        migrator
    }

    pub(super) fn file_of(&self, version: i64) -> String {
        self.migrations
            .iter()
            .find(|(m, _)| m.version == version && !m.migration_type.is_down_migration())
            .map_or_else(
                || format!("version {version}"),
                |(_, p)| p.display().to_string(),
            )
    }

    fn is_no_tx(&self, version: i64) -> bool {
        self.migrations
            .iter()
            .any(|(m, _)| m.version == version && m.no_tx)
    }

    pub(super) fn ups(&self) -> impl Iterator<Item = &Migration> {
        self.migrations
            .iter()
            .map(|(m, _)| m)
            .filter(|m| !m.migration_type.is_down_migration())
    }

    /// Up migrations not yet applied, or the first inconsistency sqlx would refuse.
    fn pending(&self, applied: &[AppliedMigration]) -> Result<Vec<i64>, MigrateError> {
        let applied: HashMap<i64, &AppliedMigration> =
            applied.iter().map(|a| (a.version, a)).collect();
        for version in applied.keys() {
            if !self.ups().any(|m| m.version == *version) {
                return Err(self.explain(SqlxMigrateError::VersionMissing(*version)));
            }
        }
        let mut pending = Vec::new();
        for m in self.ups() {
            match applied.get(&m.version) {
                Some(a) if a.checksum != m.checksum => {
                    return Err(self.explain(SqlxMigrateError::VersionMismatch(m.version)));
                }
                Some(_) => {}
                None => pending.push(m.version),
            }
        }
        Ok(pending)
    }

    /// A failed run, explained, with what it committed before the failing migration.
    fn explain_run(&self, error: SqlxMigrateError, pending: &[i64]) -> MigrateError {
        let failed = match &error {
            SqlxMigrateError::ExecuteMigration(_, version) => Some(*version),
            _ => None,
        };
        let mut error = self.explain(error);
        if let (Some(failed), MigrateError::Failed { message, .. }) = (failed, &mut error) {
            message.push_str(&committed_before(pending, failed));
        }
        error
    }

    /// What of the folder the database lacks, from its history (version, checksum): each
    /// pending migration with its file. A changed file or an applied migration missing from
    /// the folder is an error: waiting cannot fix it.
    pub(super) fn missing(&self, applied: &[(i64, Vec<u8>)]) -> Result<Vec<String>, MigrateError> {
        for (version, checksum) in applied {
            match self.ups().find(|m| m.version == *version) {
                None => return Err(self.explain(SqlxMigrateError::VersionMissing(*version))),
                Some(m) if *m.checksum != checksum[..] => {
                    return Err(self.explain(SqlxMigrateError::VersionMismatch(*version)));
                }
                Some(_) => {}
            }
        }
        Ok(self
            .ups()
            .filter(|m| !applied.iter().any(|(v, _)| *v == m.version))
            .map(|m| format!("migration {} ({})", m.version, self.file_of(m.version)))
            .collect())
    }

    /// Turns sqlx's error into one that names the file, the line and what to do.
    fn explain(&self, error: SqlxMigrateError) -> MigrateError {
        if let SqlxMigrateError::ExecuteMigration(e, _) | SqlxMigrateError::Execute(e) = &error
            && pooler::lost_prepared_statement(e)
        {
            return MigrateError::Misconfigured(format!(
                "{e}: a transaction pooler in front of the database lost a prepared statement \
                 of the migration; give the direct URL with --migrate-database-url \
                 (ROADIE_MIGRATE_DATABASE_URL), or use session pooling"
            ));
        }
        match error {
            SqlxMigrateError::ExecuteMigration(e, version) => {
                let file = self.file_of(version);
                let line = line_of(&e, &file).map(|l| format!(", line {l}")).unwrap_or_default();
                if sqlstate::is_connection_loss(&e) {
                    return MigrateError::Unavailable(format!(
                        "the connection was lost while running migration {version} ({file}): {e}"
                    ));
                }
                let no_tx = self
                    .migrations
                    .iter()
                    .any(|(m, _)| m.version == version && m.no_tx);
                let outcome = if no_tx {
                    "it is a -- no-transaction migration: what ran before the error stays, and nothing was recorded"
                } else if self.kind == Kind::MySql {
                    "MySQL and MariaDB commit DDL as they go: what ran before the error may stay, \
                     and a migration with DDL is recorded as partially applied; check the schema"
                } else {
                    "rolled back, nothing recorded"
                };
                MigrateError::Failed {
                    what: format!("migration {version} ({file}{line})"),
                    message: format!("{}; {outcome}", database_message(&e)),
                }
            }
            SqlxMigrateError::VersionMismatch(version) => MigrateError::Failed {
                what: format!("migration {version} ({})", self.file_of(version)),
                message: "the file changed after it was applied (checksum mismatch); restore it, or add a new migration".into(),
            },
            SqlxMigrateError::VersionMissing(version) => MigrateError::Failed {
                what: format!("migration {version}"),
                message: format!(
                    "it was applied to the database but is missing from {}; restore the file",
                    self.dir.display()
                ),
            },
            SqlxMigrateError::Dirty(version) => MigrateError::Failed {
                what: format!("migration {version} ({})", self.file_of(version)),
                message: format!("it is recorded as partially applied (success = false in {TABLE}); repair the schema by hand and delete that row"),
            },
            SqlxMigrateError::Execute(e) if sqlstate::is_connection_loss(&e) => {
                MigrateError::Unavailable(format!("the connection was lost while migrating: {e}"))
            }
            other => MigrateError::Failed {
                what: format!("migrating with {}", self.dir.display()),
                message: other.to_string(),
            },
        }
    }
}

/// Runs the folder's pending migrations under the lock; a stop signal cancels the running
/// statement (its transaction rolls back) and waits up to `grace` for it to end. With
/// `ddl.lock_timeout`, a migration that times out waiting for a table lock is rolled back and
/// retried from its start (see `run_one`). With `keep_lock` (hooks must run under it next) the
/// lock is taken even when nothing is pending, and handed back held.
pub async fn run(
    folder: &Folder,
    url: &DatabaseUrl,
    reused: Option<Connection>,
    locking: Locking,
    grace: Duration,
    supervision: &Supervision,
) -> Result<(Summary, Option<MigrationLock>), MigrateError> {
    let (keep_lock, ddl) = (locking.keep, locking.ddl);
    let mut conn = migration_session(url, reused, ddl.lock_timeout).await?;
    // Fast path, without the lock: nothing pending means nothing to serialise. No table yet
    // is an error here, and means "pending".
    if !keep_lock {
        match bounded(READING, conn.applied()).await? {
            Ok(applied) if folder.pending(&applied)?.is_empty() => {
                let _ = bounded("closing the migration session", conn.close()).await;
                return Ok((Summary::UpToDate { lock_waited: None }, None));
            }
            Ok(_) => {}
            Err(e) => tracing::debug!("{e}; on to the lock"),
        }
    }
    let lock_session = refuse_transaction_pooling(url, &mut conn).await?;
    keep_checking_the_client(url, &mut conn).await;
    let done_elsewhere = async || {
        !keep_lock
            && matches!(bounded(READING, conn.applied()).await, Ok(Ok(applied)) if folder.pending(&applied).is_ok_and(|p| p.is_empty()))
    };
    let acquired = supervision
        .until_stopped(MigrationLock::acquire_unless_done(
            url,
            lock_session,
            locking.timeout,
            done_elsewhere,
        ))
        .await??;
    let (mut lock, waited) = match acquired {
        Acquired::Held(lock, waited) => (lock, waited),
        Acquired::NotNeeded(waited) => {
            let _ = bounded("closing the migration session", conn.close()).await;
            let summary = Summary::UpToDate {
                lock_waited: Some(waited),
            };
            return Ok((summary, None));
        }
    };
    let outcome = run_locked(
        folder,
        url,
        &mut conn,
        &mut lock,
        waited,
        ddl,
        grace,
        supervision,
    )
    .await;
    if let Err(MigrateError::Unavailable(_)) = &outcome {
        // The database stopped answering: a goodbye would wait for it too. Dropped, the
        // sockets close here; the server frees the lock and rolls back once its keepalives
        // give up on them (5 s + 3 x 2 s).
        drop(lock);
        drop(conn);
        return outcome.map(|summary| (summary, None));
    }
    let _ = bounded("closing the migration session", conn.close()).await;
    match outcome {
        Ok(summary) if keep_lock => Ok((summary, Some(lock))),
        outcome => {
            let _ = bounded("releasing the migration lock", lock.release()).await;
            outcome.map(|summary| (summary, None))
        }
    }
}

const READING: &str = "reading _sqlx_migrations";

#[allow(clippy::too_many_arguments)]
async fn run_locked(
    folder: &Folder,
    url: &DatabaseUrl,
    conn: &mut Connection,
    lock: &mut MigrationLock,
    waited: Duration,
    ddl: DdlLimits,
    grace: Duration,
    supervision: &Supervision,
) -> Result<Summary, MigrateError> {
    // Again, under the lock: the replica that waited usually finds the work done.
    bounded("creating _sqlx_migrations", conn.ensure_table()).await??;
    let pending = folder.pending(&bounded(READING, conn.applied()).await??)?;
    if pending.is_empty() {
        return Ok(Summary::UpToDate {
            lock_waited: Some(waited),
        });
    }
    let backend = bounded("asking for the session's id", conn.backend_id()).await??;
    let mut watch = Watch::open(url, backend, ddl.lock_timeout).await?;
    let started = Instant::now();
    // One migration at a time (sqlx's Migrator over the folder up to it), so that what the
    // server says during it (a NOTICE) names the migration it came from, and a lock timeout
    // retries that migration alone.
    let mut attempt = Attempt {
        folder,
        pending: &pending,
        conn,
        lock,
        backend,
        watch: &mut watch,
        grace,
        supervision,
    };
    let mut outcome = Ok(());
    for &version in &pending {
        outcome = attempt.run_one(version, ddl).await;
        if outcome.is_err() {
            break;
        }
    }
    // A database that stopped answering gets no goodbye: it would wait for the network too.
    if let (Some(watch), false) = (watch, matches!(outcome, Err(MigrateError::Unavailable(_)))) {
        let _ = bounded("closing the watch session", watch.conn.close()).await;
    }
    outcome?;
    Ok(Summary::Applied {
        count: pending.len(),
        took: started.elapsed(),
        lock_waited: waited,
    })
}

/// What running one migration needs, borrowed for the run.
struct Attempt<'a> {
    folder: &'a Folder,
    pending: &'a [i64],
    conn: &'a mut Connection,
    lock: &'a mut MigrationLock,
    /// The migration session's server-side id, to cancel its statement or find its blockers.
    backend: i64,
    watch: &'a mut Option<Watch>,
    grace: Duration,
    supervision: &'a Supervision,
}

/// How one attempt at a migration ended, when it ended by itself.
enum Tried {
    Applied,
    /// It failed; the blocker last seen while it ran, if any.
    Failed(SqlxMigrateError, Option<String>),
}

impl Attempt<'_> {
    /// Runs migration `version`; after a lock timeout (55P03), rolled back, it waits (backoff
    /// with jitter) and runs it again from its start, up to `ddl.retries` times. A `--
    /// no-transaction` migration is retried only if the catalog shows it left nothing behind.
    async fn run_one(&mut self, version: i64, ddl: DdlLimits) -> Result<(), MigrateError> {
        let folder = self.folder;
        let file = folder.file_of(version);
        let no_tx = folder.is_no_tx(version);
        let attempts = ddl.retries.saturating_add(1);
        for attempt in 1..=attempts {
            let before = match (no_tx, self.watch.as_mut()) {
                (true, Some(watch)) => watch.catalog().await?,
                _ => None,
            };
            let (error, blocker) = match self.try_once(version, &file).await? {
                Tried::Applied => return Ok(()),
                Tried::Failed(error, blocker) => (error, blocker),
            };
            let left = match (before, self.watch.as_mut()) {
                (Some(before), Some(watch)) => watch.left_behind(&before).await?,
                _ => None,
            };
            let timed_out = ddl.lock_timeout.filter(|_| is_lock_timeout(&error));
            let (Some(timeout), None) = (timed_out, &left) else {
                let mut error = folder.explain_run(error, self.pending);
                if let (Some(left), MigrateError::Failed { message, .. }) = (left, &mut error) {
                    message.push_str(&format!("; {left}"));
                }
                return Err(error);
            };
            let blocker = blocker.unwrap_or_else(|| "a session roadie could not see".into());
            let timeout = humantime::format_duration(timeout);
            if attempt == attempts {
                return Err(MigrateError::Failed {
                    what: format!("migration {version} ({file})"),
                    message: format!(
                        "still waiting for a table lock after {attempts} attempts of \
                         --ddl-lock-timeout {timeout} each; blocked by {blocker}; rolled back, \
                         nothing recorded{}; deploy again when the blocker is done, or end it",
                        committed_before(self.pending, version)
                    ),
                });
            }
            let pause = backoff(attempt, fastrand::f64());
            warn!(
                migration = version,
                attempt,
                "migration {version} ({file}) gave up waiting for a table lock after \
                 --ddl-lock-timeout {timeout} (attempt {attempt} of {attempts}); blocked by \
                 {blocker}; rolled back, retrying in {:.2}s",
                pause.as_secs_f64()
            );
            self.supervision
                .until_stopped(tokio::time::sleep(pause))
                .await?;
        }
        unreachable!("UNWRAP: the last attempt returns")
    }

    /// One run of the migration, watched: a stop cancels it, a database that stops answering
    /// ends it (`Unavailable`), and who blocks it is noted while it waits.
    async fn try_once(&mut self, version: i64, file: &str) -> Result<Tried, MigrateError> {
        logging::on_behalf_of(Some(format!("migration {version} ({file})")));
        let migrator = self.folder.migrator_through(version);
        let mut blocker = None;
        let run = self.conn.run(&migrator);
        tokio::pin!(run);
        let outcome = tokio::select! {
            done = self.supervision.until_stopped(&mut run) => done,
            lost = watch_until_lost(self.watch.as_mut(), &mut blocker) => {
                logging::on_behalf_of(None);
                return Err(MigrateError::Unavailable(format!(
                    "while running migration {version} ({file}): {lost}; it is not recorded, \
                     and the server rolls it back once it notices this session is gone"
                )));
            }
        };
        logging::on_behalf_of(None);
        match outcome {
            Ok(Ok(())) => Ok(Tried::Applied),
            Ok(Err(e)) => Ok(Tried::Failed(e, blocker)),
            Err(stop) => {
                // Cancel the running statement (its transaction rolls back), let it end.
                let _ = bounded("cancelling the migration", self.lock.cancel(self.backend)).await;
                let _ = tokio::time::timeout(self.grace, &mut run).await;
                Err(stop.into())
            }
        }
    }
}

/// PostgreSQL's lock_not_available: `lock_timeout` expired (or a `NOWAIT` lock was refused).
const LOCK_NOT_AVAILABLE: &str = "55P03";

fn is_lock_timeout(error: &SqlxMigrateError) -> bool {
    matches!(error, SqlxMigrateError::ExecuteMigration(sqlx::Error::Database(d), _)
        if d.code().as_deref() == Some(LOCK_NOT_AVAILABLE))
}

/// The pause after attempt `attempt` (1-based) timed out: 200 ms, doubling, capped at 10 s,
/// scaled by `jitter` (0..1) into its upper half, so that retries of several replicas or
/// several blockers do not line up.
fn backoff(attempt: u32, jitter: f64) -> Duration {
    const FIRST: Duration = Duration::from_millis(200);
    const CAP: Duration = Duration::from_secs(10);
    let full = FIRST
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(16)))
        .min(CAP);
    full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// While a migration runs, roadie asks on a connection of its own this often whether the
/// database still answers (a partition shows as silence, not as an error) and, with
/// `--ddl-lock-timeout`, who blocks the migration (asked more often then: the blocker must be
/// seen before the timeout ends the wait).
pub(super) const WATCH_EVERY: Duration = Duration::from_secs(2);

/// How soon the server gives up on a session of roadie's whose host vanished: keepalives on
/// an idle socket (5 s, then 3 probes 2 s apart), and `tcp_user_timeout` (PostgreSQL 12+) for
/// a socket with a reply in flight, which keepalives never probe (the kernel would retransmit
/// it for 15 minutes). The last setting an old server refuses costs only itself and the next.
pub(super) const SERVER_BOUNDS: &str = "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; \
     SET tcp_keepalives_count = 3; SET tcp_user_timeout = 11000";

/// The watch session beside the migration's (PostgreSQL and MySQL; SQLite has no network).
struct Watch {
    conn: Connection,
    backend: i64,
    every: Duration,
}

/// What a `-- no-transaction` migration could leave behind, before it runs.
struct Catalog {
    /// A digest of the schema's relations, columns counts, index validity and constraints.
    digest: String,
    /// Indexes already INVALID.
    invalid: Vec<String>,
}

impl Watch {
    // A build with PostgreSQL alone has no other kind of options or connection.
    #[allow(irrefutable_let_patterns)]
    async fn open(
        url: &DatabaseUrl,
        backend: i64,
        ddl_lock_timeout: Option<Duration>,
    ) -> Result<Option<Self>, MigrateError> {
        if url.kind() == Kind::Sqlite {
            return Ok(None);
        }
        let named = [("application_name", "roadie (migration watch)".to_string())];
        let mut conn = bounded(
            "connecting the watch session",
            url.connect_with_settings(&named),
        )
        .await?
        .map_err(|e| MigrateError::Unavailable(format!("connecting the watch session: {e}")))?;
        // Should roadie's host vanish, the server ends this session too within the bound.
        if url.kind() == Kind::Postgres
            && let Err(e) =
                bounded("setting up the watch session", conn.execute(SERVER_BOUNDS)).await?
        {
            debug!("the watch session keeps the server's defaults: {e}");
        }
        let every = match ddl_lock_timeout {
            Some(t) => (t / 4).clamp(Duration::from_millis(20), WATCH_EVERY),
            None => WATCH_EVERY,
        };
        Ok(Some(Watch {
            conn,
            backend,
            every,
        }))
    }

    /// Returns only when the database stops answering; meanwhile notes the migration's
    /// blocker in `blocker`.
    async fn until_lost(&mut self, blocker: &mut Option<String>) -> MigrateError {
        loop {
            tokio::time::sleep(self.every).await;
            match bounded("watching the migration", self.look()).await {
                Err(silence) => return silence,
                Ok(Err(e)) if sqlstate::is_connection_loss(&e) => {
                    return MigrateError::Unavailable(format!("the watch session was lost: {e}"));
                }
                Ok(Err(e)) => debug!("watching the migration: {e}"),
                Ok(Ok(Some(seen))) => *blocker = Some(seen),
                Ok(Ok(None)) => {}
            }
        }
    }

    /// Who blocks the migration session now (PostgreSQL), if anyone; elsewhere a ping.
    #[allow(unreachable_patterns)]
    async fn look(&mut self) -> Result<Option<String>, sqlx::Error> {
        match &mut self.conn {
            #[cfg(feature = "postgres")]
            Connection::Postgres(c) => {
                let row: Option<BlockerRow> =
                    sqlx::query_as(
                        "SELECT a.pid, a.application_name, a.state, \
                                to_char(a.query_start, 'YYYY-MM-DD HH24:MI:SS TZ'), left(a.query, 200) \
                         FROM pg_stat_activity a WHERE a.pid = ANY(pg_blocking_pids($1::int)) \
                         ORDER BY a.query_start NULLS LAST LIMIT 1",
                    )
                    .bind(self.backend)
                    .fetch_optional(c)
                    .await?;
                Ok(row.map(|(pid, app, state, since, query)| {
                    describe_blocker(pid, app, state, since, query)
                }))
            }
            conn => on_each_driver!(conn, c => c.ping().await).map(|()| None),
        }
    }

    /// The catalog before a `-- no-transaction` migration runs (PostgreSQL only).
    #[allow(irrefutable_let_patterns)]
    async fn catalog(&mut self) -> Result<Option<Catalog>, MigrateError> {
        #[cfg(feature = "postgres")]
        if let Connection::Postgres(c) = &mut self.conn {
            let read = sqlx::query_as::<_, (String, Vec<String>)>(
                "SELECT md5(coalesce(string_agg(c.oid::text || ':' || c.relkind::text || ':' || c.relnatts::text \
                            || ':' || coalesce(i.indisvalid::text, '-'), ',' ORDER BY c.oid), '') \
                            || ':' || (SELECT count(*) FROM pg_constraint)), \
                        coalesce(array_agg(c.oid::regclass::text ORDER BY c.oid) \
                                 FILTER (WHERE NOT i.indisvalid), '{}') \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 LEFT JOIN pg_index i ON i.indexrelid = c.oid \
                 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') \
                   AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'",
            );
            let (digest, invalid) = bounded("reading the catalog", read.fetch_one(c))
                .await?
                .map_err(|e| MigrateError::Unavailable(format!("reading the catalog: {e}")))?;
            return Ok(Some(Catalog { digest, invalid }));
        }
        Ok(None)
    }

    /// What a failed `-- no-transaction` migration left behind, said with the fix; `None`
    /// when the catalog is as it was, so running it again is safe.
    async fn left_behind(&mut self, before: &Catalog) -> Result<Option<String>, MigrateError> {
        let Some(after) = self.catalog().await? else {
            return Ok(None);
        };
        let invalid: Vec<&String> = after
            .invalid
            .iter()
            .filter(|i| !before.invalid.contains(i))
            .collect();
        if let Some(first) = invalid.first() {
            let names = invalid
                .iter()
                .map(|i| i.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            return Ok(Some(format!(
                "it left index {names} INVALID (a CREATE INDEX CONCURRENTLY that did not finish): \
                 drop it with `DROP INDEX CONCURRENTLY {first};` and deploy again"
            )));
        }
        Ok((after.digest != before.digest).then(|| {
            "it changed the schema before it failed, so roadie does not run it again; \
             check the schema"
                .to_string()
        }))
    }
}

async fn watch_until_lost(watch: Option<&mut Watch>, blocker: &mut Option<String>) -> MigrateError {
    match watch {
        Some(watch) => watch.until_lost(blocker).await,
        None => std::future::pending().await,
    }
}

/// What `pg_stat_activity` says of a blocker: pid, application, state, query start, query.
pub(super) type BlockerRow = (
    i32,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// `pid 4242 (application "psql", idle in transaction, query started 2026-...: "SELECT * FROM
/// orders ...")`: the query's first words only, as the rest may hold secrets.
pub(super) fn describe_blocker(
    pid: i32,
    application: Option<String>,
    state: Option<String>,
    since: Option<String>,
    query: Option<String>,
) -> String {
    let mut details = Vec::new();
    if let Some(app) = application.filter(|a| !a.is_empty()) {
        details.push(format!("application {app:?}"));
    }
    if let Some(state) = state {
        details.push(state);
    }
    if let Some(since) = since {
        details.push(format!("query started {since}"));
    }
    let mut text = format!("pid {pid}");
    if !details.is_empty() {
        text.push_str(&format!(" ({}", details.join(", ")));
        // Another role's session shows this instead of its query, unless roadie's role may
        // read all statistics (pg_read_all_stats).
        let visible = query.filter(|q| !q.starts_with("<insufficient privilege>"));
        if let Some(words) = visible.as_deref().and_then(first_words) {
            text.push_str(&format!(": {words:?}"));
        }
        text.push(')');
    }
    text
}

/// The first three words of a query, at most 40 characters, with `...` when there is more.
fn first_words(query: &str) -> Option<String> {
    let words: Vec<&str> = query.split_whitespace().collect();
    if words.is_empty() {
        return None;
    }
    let mut shown: String = words[..words.len().min(3)].join(" ");
    let mut cut = words.len() > 3;
    if shown.chars().count() > 40 {
        shown = shown.chars().take(40).collect();
        cut = true;
    }
    if cut {
        shown.push_str(" ...");
    }
    Some(shown)
}

/// [`SERVER_BOUNDS`], and the server checks every second whether the client of a running
/// statement is still there (PostgreSQL 14+).
const MIGRATION_SESSION_BOUNDS: &str = "SET tcp_keepalives_idle = 5; \
     SET tcp_keepalives_interval = 2; SET tcp_keepalives_count = 3; \
     SET tcp_user_timeout = 11000; SET client_connection_check_interval = '1s'";

/// The lock's session, opened beside the migration session: with both, a transaction pooler
/// shows (see `pooler.rs`). sqlx's migrator prepares each statement in one round trip and runs
/// it in the next, outside any transaction, and a transaction pooler may hand those two round
/// trips to two server connections: refuse (78) and name the fix, rather than fail by chance.
async fn refuse_transaction_pooling(
    url: &DatabaseUrl,
    conn: &mut Connection,
) -> Result<Option<Connection>, MigrateError> {
    if url.kind() != Kind::Postgres {
        return Ok(None);
    }
    let mut lock_session = url
        .connect()
        .await
        .map_err(|e| MigrateError::Unavailable(format!("connecting to take the lock: {e}")))?;
    let seen = pooler::transaction_pooling(conn, &mut lock_session)
        .await
        .map_err(|e| MigrateError::Unavailable(format!("checking for a pooler: {e}")))?;
    let Some(seen) = seen else {
        return Ok(Some(lock_session));
    };
    lock_session.close().await;
    Err(MigrateError::Misconfigured(format!(
        "{} goes through a transaction pooler ({seen}): native migrations need a session of \
         their own, so roadie does not migrate through it; give the direct URL with \
         --migrate-database-url (ROADIE_MIGRATE_DATABASE_URL), or use session pooling",
        url.whereabouts()
    )))
}

/// The migration session: the wait stage's connection when it still answers, else a new one.
/// With `ddl_lock_timeout`, `lock_timeout` is a startup option of a new session (never the
/// handed-on one): a migration's own `RESET lock_timeout` or `RESET ALL` returns to the
/// session's default, which a startup option sets, where a `SET` would be wiped.
pub(super) async fn migration_session(
    url: &DatabaseUrl,
    reused: Option<Connection>,
    ddl_lock_timeout: Option<Duration>,
) -> Result<Connection, MigrateError> {
    let startup_lock_timeout = ddl_lock_timeout.filter(|_| url.kind() == Kind::Postgres);
    let reused = match (reused, startup_lock_timeout) {
        (Some(conn), Some(_)) => {
            let _ = bounded("closing the wait stage's session", conn.close()).await;
            None
        }
        (reused, _) => reused,
    };
    let alive = bounded(
        "checking the wait stage's session",
        Connection::if_alive(reused),
    )
    .await
    .ok()
    .flatten();
    let conn = match alive {
        Some(conn) => conn,
        None => {
            let settings: Vec<(&str, String)> = startup_lock_timeout
                .map(|t| ("lock_timeout", format!("{}ms", t.as_millis().max(1))))
                .into_iter()
                .collect();
            bounded(
                "connecting to migrate",
                url.connect_with_settings(&settings),
            )
            .await?
            .map_err(|e| MigrateError::Unavailable(format!("connecting to migrate: {e}")))?
        }
    };
    Ok(conn)
}

/// On Postgres, has the server check the client every second: if roadie dies mid-statement,
/// the server would otherwise notice only when it next writes to the socket, and a long
/// statement would keep its transaction (and the next replica waiting) until then
/// (PostgreSQL 14+; an older server refuses the setting, which costs only that). Session
/// settings: only once the session is known not to be a transaction pooler's.
async fn keep_checking_the_client(url: &DatabaseUrl, conn: &mut Connection) {
    if url.kind() == Kind::Postgres
        && let Ok(Err(e)) = bounded(
            "setting up the migration session",
            conn.execute(MIGRATION_SESSION_BOUNDS),
        )
        .await
    {
        tracing::debug!("the migration session keeps the server's defaults: {e}");
    }
}

/// What migrating needs of the connection, for whichever driver.
impl Connection {
    // A Postgres-only build has one driver: its `if let` always matches.
    #[cfg_attr(
        not(any(feature = "mysql", feature = "sqlite")),
        allow(irrefutable_let_patterns)
    )]
    async fn applied(&mut self) -> Result<Vec<AppliedMigration>, MigrateError> {
        // Postgres: a simple query, as it may go through a transaction pooler before roadie
        // knows (sqlx's own names a prepared statement that stays on the server connection).
        #[cfg(feature = "postgres")]
        if let Connection::Postgres(c) = self {
            return applied_simply(c)
                .await
                .map_err(|e| MigrateError::Unavailable(format!("reading {TABLE}: {e}")));
        }
        on_each_driver!(self, c => c.list_applied_migrations(TABLE).await)
            .map_err(|e| MigrateError::Unavailable(format!("reading {TABLE}: {e}")))
    }

    async fn ensure_table(&mut self) -> Result<(), MigrateError> {
        on_each_driver!(self, c => c.ensure_migrations_table(TABLE).await)
            .map_err(|e| MigrateError::Unavailable(format!("creating {TABLE}: {e}")))
    }

    /// The server's id for this connection, to cancel its statement from another one.
    async fn backend_id(&mut self) -> Result<i64, MigrateError> {
        let result: Result<i64, sqlx::Error> = match self {
            #[cfg(feature = "postgres")]
            Connection::Postgres(c) => sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()")
                .fetch_one(c)
                .await
                .map(i64::from),
            #[cfg(feature = "mysql")]
            Connection::MySql(c) => sqlx::query_scalar::<_, u64>("SELECT CONNECTION_ID()")
                .fetch_one(c)
                .await
                .map(|id| id as i64),
            #[cfg(feature = "sqlite")]
            Connection::Sqlite(_) => Ok(0),
        };
        result.map_err(|e| MigrateError::Unavailable(e.to_string()))
    }

    async fn run(&mut self, migrator: &Migrator) -> Result<(), SqlxMigrateError> {
        on_each_driver!(self, c => migrator.run_direct(None, c, false).await)
    }
}

/// What sqlx's `list_applied_migrations` reads, as one simple query (rows come as text).
#[cfg(feature = "postgres")]
async fn applied_simply(
    c: &mut sqlx::postgres::PgConnection,
) -> Result<Vec<AppliedMigration>, sqlx::Error> {
    use sqlx::Row;
    let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SELECT version::text, encode(checksum, 'hex') FROM {TABLE} ORDER BY version"
    )))
    .fetch_all(c)
    .await?;
    let bad = |what: &str| sqlx::Error::Protocol(format!("{TABLE} holds {what}"));
    rows.iter()
        .map(|row| {
            let version: String = row.try_get(0)?;
            let checksum: String = row.try_get(1)?;
            let bytes = (0..checksum.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(checksum.get(i..i + 2).unwrap_or("x"), 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| bad("a checksum that is not hex"))?;
            Ok(AppliedMigration {
                version: version
                    .parse()
                    .map_err(|_| bad("a version that is not a number"))?,
                checksum: bytes.into(),
            })
        })
        .collect()
}

/// What a failed run leaves behind: each migration commits on its own, so the ones before the
/// failing one stay applied; "rolled back" alone would read as the whole run.
fn committed_before(pending: &[i64], failed: i64) -> String {
    let earlier: Vec<i64> = pending.iter().copied().filter(|v| *v < failed).collect();
    match earlier.as_slice() {
        [] => String::new(),
        [one] => format!("; migration {one}, applied earlier in this run, stays applied"),
        [first, .., last] => format!(
            "; the {} migrations applied earlier in this run ({first} to {last}) stay applied",
            earlier.len()
        ),
    }
}

/// The server's message and code (MySQL's error number, which users look up), without sqlx's
/// wrapping.
fn database_message(e: &sqlx::Error) -> String {
    let sqlx::Error::Database(d) = e else {
        return e.to_string();
    };
    #[cfg(feature = "mysql")]
    if let Some(mysql) = d.try_downcast_ref::<MySqlDatabaseError>() {
        return format!("{} ({})", mysql.message(), mysql.number());
    }
    match d.code() {
        Some(code) => format!("{} ({code})", d.message()),
        None => d.message().to_string(),
    }
}

/// The line of the file where Postgres says the error is (it reports a character offset into
/// the statement, which is the whole file: sqlx sends it as one).
#[cfg(feature = "postgres")]
fn line_of(e: &sqlx::Error, file: &str) -> Option<usize> {
    let sqlx::Error::Database(d) = e else {
        return None;
    };
    let pg = d.try_downcast_ref::<PgDatabaseError>()?;
    let Some(PgErrorPosition::Original(position)) = pg.position() else {
        return None;
    };
    let text = std::fs::read_to_string(file).ok()?;
    let before: String = text.chars().take(position.saturating_sub(1)).collect();
    Some(before.matches('\n').count() + 1)
}

/// Only Postgres reports where in the statement the error is.
#[cfg(not(feature = "postgres"))]
fn line_of(_: &sqlx::Error, _: &str) -> Option<usize> {
    None
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use std::time::Duration;

    use super::{backoff, committed_before, describe_blocker, first_words};

    #[rstest]
    #[case(1, 0.0, 100)]
    #[case(1, 1.0, 200)]
    #[case(2, 1.0, 400)]
    #[case(3, 0.5, 600)]
    #[case(6, 1.0, 6400)]
    #[case(7, 1.0, 10_000)]
    #[case(7, 0.0, 5_000)]
    #[case(40, 1.0, 10_000)]
    #[case(u32::MAX, 1.0, 10_000)]
    fn retries_back_off_doubling_to_a_cap_with_jitter_in_the_upper_half(
        #[case] attempt: u32,
        #[case] jitter: f64,
        #[case] millis: u64,
    ) {
        assert_eq!(backoff(attempt, jitter), Duration::from_millis(millis));
    }

    #[rstest]
    #[case("SELECT * FROM orders WHERE id = 1", Some("SELECT * FROM ..."))]
    #[case("  LOCK   TABLE\norders ", Some("LOCK TABLE orders"))]
    #[case("ALTER ROLE app PASSWORD 'secret'", Some("ALTER ROLE app ..."))]
    #[case(
        "SELECT pg_sleep_for_a_very_long_function_name_indeed(3600)",
        Some("SELECT pg_sleep_for_a_very_long_function ...")
    )]
    #[case("   ", None)]
    fn a_blockers_query_shows_only_its_first_words(
        #[case] query: &str,
        #[case] shown: Option<&str>,
    ) {
        assert_eq!(first_words(query).as_deref(), shown);
    }

    #[test]
    fn a_blocker_is_named_by_pid_application_state_and_query_start() {
        let text = describe_blocker(
            42,
            Some("psql".into()),
            Some("idle in transaction".into()),
            Some("2026-12-05 14:00:00 UTC".into()),
            Some("LOCK TABLE orders IN ACCESS SHARE MODE".into()),
        );
        assert_eq!(
            text,
            "pid 42 (application \"psql\", idle in transaction, query started 2026-12-05 14:00:00 UTC: \"LOCK TABLE orders ...\")"
        );
        assert_eq!(describe_blocker(7, None, None, None, None), "pid 7");
    }

    #[rstest]
    #[case(&[5], 5, "")]
    #[case(&[4, 5], 5, "; migration 4, applied earlier in this run, stays applied")]
    #[case(
        &[1, 2, 3, 4, 5],
        5,
        "; the 4 migrations applied earlier in this run (1 to 4) stay applied"
    )]
    #[case(&[1, 2, 3], 2, "; migration 1, applied earlier in this run, stays applied")]
    fn a_failed_run_names_what_it_committed_before(
        #[case] pending: &[i64],
        #[case] failed: i64,
        #[case] said: &str,
    ) {
        assert_eq!(committed_before(pending, failed), said);
    }
}
