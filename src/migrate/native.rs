//! Native migrations: a sqlx-format folder run by sqlx's own `Migrator` (same table, SHA-384
//! checksums, file names, `-- no-transaction`, dirty/missing/mismatch checks), so a service
//! running `sqlx::migrate!()` on the same database and roadie agree in both directions. roadie
//! adds what the library lacks: its lock is taken before the table is created and released on
//! every path, a stop cancels the running statement, and failures name the file and line.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use libc::c_int;
use sqlx::Row;
use sqlx::migrate::{
    AppliedMigration, Migrate, MigrateError as SqlxMigrateError, Migration, Migrator,
};
#[cfg(feature = "mysql")]
use sqlx::mysql::MySqlDatabaseError;
#[cfg(feature = "postgres")]
use sqlx::postgres::{PgDatabaseError, PgErrorPosition};

use super::lock::{Acquired, MigrationLock};
use super::{MigrateError, Summary};
use crate::database::{ConnectOptions, Connection, DatabaseUrl, Kind};

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

    fn migrator(&self) -> Migrator {
        let mut migrator =
            Migrator::with_migrations(self.migrations.iter().map(|(m, _)| m.clone()).collect());
        // roadie's own lock is held around the run (see lock.rs).
        migrator.set_locking(false);
        migrator
    }

    fn file_of(&self, version: i64) -> String {
        self.migrations
            .iter()
            .find(|(m, _)| m.version == version && !m.migration_type.is_down_migration())
            .map_or_else(
                || format!("version {version}"),
                |(_, p)| p.display().to_string(),
            )
    }

    fn ups(&self) -> impl Iterator<Item = &Migration> {
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

    /// Turns sqlx's error into one that names the file, the line and what to do.
    fn explain(&self, error: SqlxMigrateError) -> MigrateError {
        match error {
            SqlxMigrateError::ExecuteMigration(e, version) => {
                let file = self.file_of(version);
                let line = line_of(&e, &file).map(|l| format!(", line {l}")).unwrap_or_default();
                if is_connection_loss(&e) {
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
            SqlxMigrateError::Execute(e) if is_connection_loss(&e) => {
                MigrateError::Unavailable(format!("the connection was lost while migrating: {e}"))
            }
            other => MigrateError::Failed {
                what: format!("migrating with {}", self.dir.display()),
                message: other.to_string(),
            },
        }
    }
}

/// Runs the folder's pending migrations under the lock. `stop` resolves with a stop signal.
pub async fn run(
    folder: &Folder,
    url: &DatabaseUrl,
    reused: Option<Connection>,
    lock_timeout: Duration,
    grace: Duration,
    stop: impl Future<Output = io::Result<c_int>>,
) -> Result<Summary, MigrateError> {
    let options = url
        .connect_options()
        .map_err(|e| MigrateError::Unavailable(e.to_string()))?;
    let mut conn = migration_session(&options, reused).await?;
    // Fast path, without the lock: nothing pending means nothing to serialise.
    if let Ok(applied) = conn.applied().await
        && folder.pending(&applied)?.is_empty()
    {
        return Ok(Summary::UpToDate { lock_waited: None });
    }
    tokio::pin!(stop);
    let sqlite_file = url.sqlite_file().map(Path::to_path_buf);
    let done_elsewhere = async || matches!(conn.applied().await, Ok(applied) if folder.pending(&applied).is_ok_and(|p| p.is_empty()));
    let acquired = tokio::select! {
        acquired = MigrationLock::acquire_unless_done(&options, None, sqlite_file, lock_timeout, done_elsewhere) => {
            acquired.map_err(MigrateError::from)?
        }
        signal = &mut stop => return Err(MigrateError::stopped(signal)),
    };
    let (mut lock, waited) = match acquired {
        Acquired::Held(lock, waited) => (lock, waited),
        Acquired::NotNeeded(waited) => {
            conn.close().await;
            return Ok(Summary::UpToDate {
                lock_waited: Some(waited),
            });
        }
    };
    let outcome = run_locked(folder, &mut conn, &mut lock, waited, grace, &mut stop).await;
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
    stop: &mut (impl Future<Output = io::Result<c_int>> + Unpin),
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
    let migrator = folder.migrator();
    let run = conn.run(&migrator);
    tokio::pin!(run);
    tokio::select! {
        result = &mut run => result.map_err(|e| {
            let failed = match &e {
                SqlxMigrateError::ExecuteMigration(_, version) => Some(*version),
                _ => None,
            };
            let mut error = folder.explain(e);
            if let (Some(failed), MigrateError::Failed { message, .. }) = (failed, &mut error) {
                message.push_str(&committed_before(&pending, failed));
            }
            error
        })?,
        signal = stop => {
            // Cancel the running statement (its transaction rolls back), let it end.
            lock.cancel(backend).await;
            let _ = tokio::time::timeout(grace, &mut run).await;
            return Err(MigrateError::stopped(signal));
        }
    }
    Ok(Summary::Applied {
        count: pending.len(),
        took: started.elapsed(),
        lock_waited: waited,
    })
}

/// The migration session: the wait stage's connection when it still answers, else a new one.
/// On Postgres it has the server check the client every second: if roadie dies
/// mid-statement, the server would otherwise notice only when it next writes to the socket,
/// and a long statement would keep its transaction (and the next replica waiting) until then
/// (PostgreSQL 14+; an older server refuses the setting, which costs only that).
async fn migration_session(
    options: &ConnectOptions,
    reused: Option<Connection>,
) -> Result<Connection, MigrateError> {
    let mut conn = match Connection::if_alive(reused).await {
        Some(conn) => conn,
        None => Connection::open(options)
            .await
            .map_err(|e| MigrateError::Unavailable(format!("connecting to migrate: {e}")))?,
    };
    #[cfg(feature = "postgres")]
    if let Connection::Postgres(_) = conn
        && let Err(e) = conn
            .execute(
                "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; \
                 SET tcp_keepalives_count = 3; SET client_connection_check_interval = '1s'",
            )
            .await
    {
        tracing::debug!("the migration session keeps the server's defaults: {e}");
    }
    Ok(conn)
}

/// What migrating needs of the connection, for whichever driver.
impl Connection {
    async fn applied(&mut self) -> Result<Vec<AppliedMigration>, MigrateError> {
        let result = match self {
            #[cfg(feature = "postgres")]
            Connection::Postgres(c) => c.list_applied_migrations(TABLE).await,
            #[cfg(feature = "mysql")]
            Connection::MySql(c) => c.list_applied_migrations(TABLE).await,
            #[cfg(feature = "sqlite")]
            Connection::Sqlite(c) => c.list_applied_migrations(TABLE).await,
        };
        result.map_err(|e| MigrateError::Unavailable(format!("reading {TABLE}: {e}")))
    }

    async fn ensure_table(&mut self) -> Result<(), MigrateError> {
        let result = match self {
            #[cfg(feature = "postgres")]
            Connection::Postgres(c) => c.ensure_migrations_table(TABLE).await,
            #[cfg(feature = "mysql")]
            Connection::MySql(c) => c.ensure_migrations_table(TABLE).await,
            #[cfg(feature = "sqlite")]
            Connection::Sqlite(c) => c.ensure_migrations_table(TABLE).await,
        };
        result.map_err(|e| MigrateError::Unavailable(format!("creating {TABLE}: {e}")))
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
        match self {
            #[cfg(feature = "postgres")]
            Connection::Postgres(c) => migrator.run_direct(None, c, false).await,
            #[cfg(feature = "mysql")]
            Connection::MySql(c) => migrator.run_direct(None, c, false).await,
            #[cfg(feature = "sqlite")]
            Connection::Sqlite(c) => migrator.run_direct(None, c, false).await,
        }
    }

    /// Every row of the history table, for `roadie migrate status`.
    async fn history(&mut self) -> Result<Vec<Recorded>, sqlx::Error> {
        let sql = match self {
            #[cfg(feature = "postgres")]
            Connection::Postgres(_) => {
                "SELECT version, description, installed_on::text, success, checksum, execution_time FROM _sqlx_migrations ORDER BY version"
            }
            #[cfg(feature = "mysql")]
            Connection::MySql(_) => {
                "SELECT version, description, CAST(installed_on AS CHAR), success, checksum, execution_time FROM _sqlx_migrations ORDER BY version"
            }
            #[cfg(feature = "sqlite")]
            Connection::Sqlite(_) => {
                "SELECT version, description, CAST(installed_on AS TEXT), success, checksum, execution_time FROM _sqlx_migrations ORDER BY version"
            }
        };
        macro_rules! rows {
            ($c:expr) => {
                sqlx::query(sql)
                    .fetch_all($c)
                    .await?
                    .into_iter()
                    .map(|r| Recorded {
                        version: r.get(0),
                        description: r.get(1),
                        installed_on: r.get(2),
                        success: r.get(3),
                        checksum: r.get(4),
                        execution_ns: r.get(5),
                    })
                    .collect()
            };
        }
        Ok(match self {
            #[cfg(feature = "postgres")]
            Connection::Postgres(c) => rows!(c),
            #[cfg(feature = "mysql")]
            Connection::MySql(c) => rows!(c),
            #[cfg(feature = "sqlite")]
            Connection::Sqlite(c) => rows!(c),
        })
    }
}

/// One row of `_sqlx_migrations`.
struct Recorded {
    version: i64,
    description: String,
    installed_on: String,
    success: bool,
    checksum: Vec<u8>,
    execution_ns: i64,
}

/// What `roadie migrate status` shows for one migration.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub version: i64,
    pub description: String,
    /// applied, pending, checksum mismatch, missing (applied, file gone), partially applied
    pub state: &'static str,
    pub installed_on: Option<String>,
    pub execution_ms: Option<f64>,
    pub file: Option<String>,
}

/// Every migration of the folder and of the history table, merged.
pub async fn status(folder: &Folder, url: &DatabaseUrl) -> Result<Vec<Status>, MigrateError> {
    let options = url
        .connect_options()
        .map_err(|e| MigrateError::Unavailable(e.to_string()))?;
    let mut conn = migration_session(&options, None).await?;
    // No table yet: everything is pending.
    let recorded = conn.history().await.unwrap_or_default();
    conn.close().await;
    let mut rows: Vec<Status> = folder
        .ups()
        .map(|m| {
            let r = recorded.iter().find(|r| r.version == m.version);
            Status {
                version: m.version,
                description: m.description.to_string(),
                state: match r {
                    None => "pending",
                    Some(r) if !r.success => "partially applied",
                    Some(r) if r.checksum != *m.checksum => "checksum mismatch",
                    Some(_) => "applied",
                },
                installed_on: r.map(|r| r.installed_on.clone()),
                execution_ms: r
                    .filter(|r| r.execution_ns >= 0)
                    .map(|r| r.execution_ns as f64 / 1e6),
                file: Some(folder.file_of(m.version)),
            }
        })
        .collect();
    for r in recorded
        .iter()
        .filter(|r| !folder.ups().any(|m| m.version == r.version))
    {
        rows.push(Status {
            version: r.version,
            description: r.description.clone(),
            state: "missing",
            installed_on: Some(r.installed_on.clone()),
            execution_ms: (r.execution_ns >= 0).then(|| r.execution_ns as f64 / 1e6),
            file: None,
        });
    }
    rows.sort_by_key(|s| s.version);
    Ok(rows)
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

fn is_connection_loss(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::PoolClosed => true,
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("08") || c == "57P01" || c == "57P02" || c == "57P03"),
        _ => false,
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
