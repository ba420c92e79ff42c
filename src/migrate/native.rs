//! Native migrations: a sqlx-format folder run by sqlx's own `Migrator` (same table, SHA-384
//! checksums, file names, `-- no-transaction`, dirty/missing/mismatch checks), so a service
//! running `sqlx::migrate!()` on the same database and roadie agree in both directions. roadie
//! adds what the library lacks: its lock is taken before the table is created and released on
//! every path, a stop cancels the running statement, and failures name the file and line.

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

use super::lock::{Acquired, MigrationLock};
use super::{MigrateError, Summary};
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
/// statement (its transaction rolls back) and waits up to `grace` for it to end.
pub async fn run(
    folder: &Folder,
    url: &DatabaseUrl,
    reused: Option<Connection>,
    lock_timeout: Duration,
    grace: Duration,
    supervision: &Supervision,
) -> Result<Summary, MigrateError> {
    let mut conn = migration_session(url, reused).await?;
    // Fast path, without the lock: nothing pending means nothing to serialise.
    match conn.applied().await {
        Ok(applied) if folder.pending(&applied)?.is_empty() => {
            return Ok(Summary::UpToDate { lock_waited: None });
        }
        Ok(_) => {}
        Err(e) => tracing::debug!("{e}; on to the lock"),
    }
    let lock_session = refuse_transaction_pooling(url, &mut conn).await?;
    keep_checking_the_client(url, &mut conn).await;
    let done_elsewhere = async || matches!(conn.applied().await, Ok(applied) if folder.pending(&applied).is_ok_and(|p| p.is_empty()));
    let acquired = supervision
        .until_stopped(MigrationLock::acquire_unless_done(
            url,
            lock_session,
            lock_timeout,
            done_elsewhere,
        ))
        .await??;
    let (mut lock, waited) = match acquired {
        Acquired::Held(lock, waited) => (lock, waited),
        Acquired::NotNeeded(waited) => {
            conn.close().await;
            return Ok(Summary::UpToDate {
                lock_waited: Some(waited),
            });
        }
    };
    let outcome = run_locked(folder, &mut conn, &mut lock, waited, grace, supervision).await;
    lock.release().await;
    conn.close().await;
    outcome
}

async fn run_locked(
    folder: &Folder,
    conn: &mut Connection,
    lock: &mut MigrationLock,
    waited: Duration,
    grace: Duration,
    supervision: &Supervision,
) -> Result<Summary, MigrateError> {
    // Again, under the lock: the replica that waited usually finds the work done.
    conn.ensure_table().await?;
    let pending = folder.pending(&conn.applied().await?)?;
    if pending.is_empty() {
        return Ok(Summary::UpToDate {
            lock_waited: Some(waited),
        });
    }
    let backend = conn.backend_id().await?;
    let started = Instant::now();
    // One migration at a time (sqlx's Migrator over the folder up to it), so that what the
    // server says during it (a NOTICE) names the migration it came from.
    for &version in &pending {
        logging::on_behalf_of(Some(format!(
            "migration {version} ({})",
            folder.file_of(version)
        )));
        let migrator = folder.migrator_through(version);
        let run = conn.run(&migrator);
        tokio::pin!(run);
        let outcome = supervision.until_stopped(&mut run).await;
        logging::on_behalf_of(None);
        match outcome {
            Ok(result) => result.map_err(|e| folder.explain_run(e, &pending))?,
            Err(stop) => {
                // Cancel the running statement (its transaction rolls back), let it end.
                lock.cancel(backend).await;
                let _ = tokio::time::timeout(grace, &mut run).await;
                return Err(stop.into());
            }
        }
    }
    Ok(Summary::Applied {
        count: pending.len(),
        took: started.elapsed(),
        lock_waited: waited,
    })
}

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
pub(super) async fn migration_session(
    url: &DatabaseUrl,
    reused: Option<Connection>,
) -> Result<Connection, MigrateError> {
    let conn = match Connection::if_alive(reused).await {
        Some(conn) => conn,
        None => url
            .connect()
            .await
            .map_err(|e| MigrateError::Unavailable(format!("connecting to migrate: {e}")))?,
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
        && let Err(e) = conn
            .execute(
                "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; \
                 SET tcp_keepalives_count = 3; SET client_connection_check_interval = '1s'",
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

    use super::committed_before;

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
