//! The cluster-wide migration lock, around any kind of migration. Postgres: a transaction-scoped
//! advisory lock (`pg_try_advisory_xact_lock`, sqlx's key, so roadie serialises with apps that run
//! `sqlx::migrate!()`) taken in a READ COMMITTED transaction kept open on a dedicated connection:
//! a transaction pins one server connection in every pooling mode (PgBouncer's transaction mode
//! too), holds no snapshot while idle (`CREATE INDEX CONCURRENTLY` elsewhere is not blocked), and
//! the lock goes with COMMIT, ROLLBACK or disconnect. Everything is sent as simple queries and
//! `SET LOCAL`: nothing outlives the transaction on a shared server connection. MySQL:
//! `GET_LOCK` with sqlx's name. SQLite: an flock on a file beside the database.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[cfg(feature = "mysql")]
use sqlx::mysql::MySqlConnection;
#[cfg(feature = "postgres")]
use sqlx::postgres::PgConnection;
use sqlx::{Connection as _, Row};
use tracing::{debug, info};

use crate::database::{Connection, DatabaseUrl, Kind};

/// Polls are this far apart (plus jitter): a waiting replica notices soon after the holder is
/// done, and each poll is one or two tiny queries on idle connections.
const POLL: Duration = Duration::from_millis(50);
const POLL_JITTER: Duration = Duration::from_millis(25);
/// While waiting, say who holds the lock this often.
const REPORT_EVERY: Duration = Duration::from_secs(3);

/// (issue 13) `work`, or a `LockError::Database` saying the database did not answer within
/// `QUERY_TIMEOUT`.
async fn bounded<T>(work: impl Future<Output = T>) -> Result<T, LockError> {
    tokio::time::timeout(crate::migrate::QUERY_TIMEOUT, work)
        .await
        .map_err(|_| {
            LockError::Database(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                crate::migrate::unanswered("the lock's session"),
            )))
        })
}

/// sqlx's advisory-lock key: `0x3d32ad9e * crc32(current_database())`.
pub fn sqlx_key(database: &str) -> i64 {
    const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    0x3d32ad9e * i64::from(CRC.checksum(database.as_bytes()))
}

/// How waiting for the lock ended well.
pub enum Acquired {
    /// Held, after waiting this long.
    Held(MigrationLock, Duration),
    /// Another replica did the work while this one waited this long.
    NotNeeded(Duration),
}

/// A held lock. Dropping it without `release` still frees it (the connection or file closes),
/// but `release` says so in the log and reports failures.
pub enum MigrationLock {
    #[cfg(feature = "postgres")]
    Postgres { conn: PgConnection, key: i64 },
    #[cfg(feature = "mysql")]
    MySql { conn: MySqlConnection, name: String },
    #[cfg(feature = "sqlite")]
    Sqlite { _file: Option<File> },
}

#[derive(Debug)]
pub enum LockError {
    /// Not acquired before `--lock-timeout`; the last holder seen, if any.
    TimedOut {
        timeout: Duration,
        holder: Option<String>,
    },
    /// The database went away while taking the lock.
    Database(sqlx::Error),
    /// The SQLite lock file could not be opened.
    File {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::TimedOut { timeout, .. } => write!(
                f,
                "not acquired within --lock-timeout {}",
                humantime::format_duration(*timeout)
            ),
            LockError::Database(_) => f.write_str("taking the migration lock"),
            LockError::File { path, .. } => write!(f, "opening {}", path.display()),
        }
    }
}

impl std::error::Error for LockError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LockError::TimedOut { .. } => None,
            LockError::Database(e) => Some(e),
            LockError::File { source, .. } => Some(source),
        }
    }
}

impl MigrationLock {
    /// Waits for the lock up to `timeout`, for work only the lock holder can judge (a
    /// migration command's state is its own). Returns the lock and how long it waited.
    pub async fn acquire(
        url: &DatabaseUrl,
        reused: Option<Connection>,
        timeout: Duration,
    ) -> Result<(Self, Duration), LockError> {
        let done_elsewhere = async || false;
        match Self::acquire_unless_done(url, reused, timeout, done_elsewhere).await? {
            Acquired::Held(lock, waited) => Ok((lock, waited)),
            Acquired::NotNeeded(_) => unreachable!("UNWRAP: never done elsewhere"),
        }
    }

    /// Waits for the lock up to `timeout`. Between polls it asks `done_elsewhere` whether the
    /// holder has already done the work (nothing pending any more): then the lock is not
    /// needed, and ten replicas do not queue up to find that out one by one. The lock goes on
    /// `reused` (the wait stage's connection) when it still answers.
    pub async fn acquire_unless_done(
        url: &DatabaseUrl,
        reused: Option<Connection>,
        timeout: Duration,
        mut done_elsewhere: impl AsyncFnMut() -> bool,
    ) -> Result<Acquired, LockError> {
        let started = Instant::now();
        let deadline = started + timeout;
        // (issue 13) Every query here is bounded: a poll that gets no answer is a database
        // gone (a partition), not a busy lock.
        let mut lock = bounded(Self::prepare(url, reused)).await??;
        let mut next_report = started + REPORT_EVERY;
        let mut holder = None;
        loop {
            if bounded(lock.try_lock())
                .await?
                .map_err(LockError::Database)?
            {
                return Ok(Acquired::Held(lock, started.elapsed()));
            }
            if done_elsewhere().await {
                lock.close().await;
                return Ok(Acquired::NotNeeded(started.elapsed()));
            }
            let now = Instant::now();
            if now >= next_report || holder.is_none() {
                holder = bounded(lock.holder()).await.ok().flatten();
            }
            if now >= deadline {
                return Err(LockError::TimedOut { timeout, holder });
            }
            if now >= next_report {
                info!(
                    "waiting for the migration lock ({:.1}s of {}): held by {}",
                    started.elapsed().as_secs_f64(),
                    humantime::format_duration(timeout),
                    holder.as_deref().unwrap_or("another process")
                );
                next_report = now + REPORT_EVERY;
            }
            let pause = POLL + POLL_JITTER.mul_f64(fastrand::f64());
            tokio::time::sleep(pause.min(deadline.saturating_duration_since(now))).await;
        }
    }

    /// The lock's session, not yet locked: a connection (the handed-on one when it still
    /// answers) named for the holder report, or SQLite's lock file.
    async fn prepare(url: &DatabaseUrl, reused: Option<Connection>) -> Result<Self, LockError> {
        if url.kind() == Kind::Sqlite {
            return Self::sqlite_file(url);
        }
        let conn = match Connection::if_alive(reused).await {
            Some(conn) => conn,
            None => url.connect().await.map_err(LockError::Database)?,
        };
        match conn {
            #[cfg(feature = "postgres")]
            Connection::Postgres(mut conn) => {
                // A simple query: no prepared statement for a transaction pooler to lose.
                let database: String = simple_scalar(&mut conn, "SELECT current_database()::text")
                    .await
                    .map_err(LockError::Database)?
                    .unwrap_or_default();
                Ok(MigrationLock::Postgres {
                    conn,
                    key: sqlx_key(&database),
                })
            }
            #[cfg(feature = "mysql")]
            Connection::MySql(mut conn) => {
                let database: String = sqlx::query_scalar("SELECT DATABASE()")
                    .fetch_one(&mut conn)
                    .await
                    .map_err(LockError::Database)?;
                Ok(MigrationLock::MySql {
                    conn,
                    name: format!("{:x}", sqlx_key(&database)),
                })
            }
            #[cfg(feature = "sqlite")]
            Connection::Sqlite(_) => Self::sqlite_file(url),
        }
    }

    /// SQLite: an flock on a file beside the database; an in-memory database lives in one
    /// process, with nothing to share.
    fn sqlite_file(url: &DatabaseUrl) -> Result<Self, LockError> {
        #[cfg(feature = "sqlite")]
        {
            let Some(db) = url.sqlite_file() else {
                return Ok(MigrationLock::Sqlite { _file: None });
            };
            let path = PathBuf::from(format!("{}.roadie-lock", db.display()));
            let file = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|source| LockError::File { path, source })?;
            Ok(MigrationLock::Sqlite { _file: Some(file) })
        }
        #[cfg(not(feature = "sqlite"))]
        unreachable!("UNWRAP: DatabaseUrl::parse refuses sqlite: in this build ({url})")
    }

    async fn try_lock(&mut self) -> Result<bool, sqlx::Error> {
        match self {
            #[cfg(feature = "postgres")]
            MigrationLock::Postgres { conn, key } => {
                // One simple query, so one round trip and one server connection even through
                // a transaction pooler. READ COMMITTED explicitly: a role or server whose
                // default_transaction_isolation is repeatable read would keep a snapshot for
                // the whole migration, and a CREATE INDEX CONCURRENTLY would wait for it.
                // SET LOCAL: the name (for the holder report) and the keepalives (a lock held
                // by a host that vanished is freed within about 5 + 2 * 3 s) end with the
                // transaction; no idle_in_transaction_session_timeout may end it under a long
                // migration.
                let sql = format!(
                    "BEGIN ISOLATION LEVEL READ COMMITTED; \
                     SET LOCAL application_name = 'roadie (migration lock)'; \
                     SET LOCAL idle_in_transaction_session_timeout = 0; \
                     SET LOCAL tcp_keepalives_idle = 5; SET LOCAL tcp_keepalives_interval = 2; \
                     SET LOCAL tcp_keepalives_count = 3; \
                     SELECT pg_try_advisory_xact_lock({key})::text"
                );
                let got = simple_scalar(conn, &sql).await;
                match got {
                    Ok(Some(ref t)) if t == "true" => Ok(true),
                    _ => {
                        // Not taken (or failed): end the transaction, so a waiting replica
                        // pins no server connection between polls.
                        let ended = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
                        got?;
                        ended?;
                        Ok(false)
                    }
                }
            }
            #[cfg(feature = "mysql")]
            MigrationLock::MySql { conn, name } => {
                let got: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, 0)")
                    .bind(name.as_str())
                    .fetch_one(conn)
                    .await?;
                Ok(got == Some(1))
            }
            #[cfg(feature = "sqlite")]
            MigrationLock::Sqlite { _file: None } => Ok(true),
            #[cfg(feature = "sqlite")]
            MigrationLock::Sqlite { _file: Some(file) } => {
                // SAFETY: flock on an open file; LOCK_NB never blocks.
                Ok(unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0)
            }
        }
    }

    /// Who holds the lock, for the waiting log line: pid, application and since when.
    async fn holder(&mut self) -> Option<String> {
        match self {
            #[cfg(feature = "postgres")]
            MigrationLock::Postgres { conn, key } => {
                // Another role's session shows only pid, user and application_name unless
                // roadie's role may read all statistics: the rest is NULL then.
                let sql = format!(
                    "SELECT a.pid::text, a.usename::text, a.application_name, host(a.client_addr), \
                            to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SS TZ') \
                     FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                     WHERE l.locktype = 'advisory' AND l.granted \
                       AND l.classid = ({key}::bigint >> 32)::oid \
                       AND l.objid = ({key}::bigint & 4294967295)::oid \
                       AND l.objsubid = 1 LIMIT 1"
                );
                let row = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .fetch_optional(conn)
                    .await
                    .ok()??;
                let text = |i: usize| row.try_get::<Option<String>, _>(i).ok().flatten();
                // A simple query's row is text.
                let pid: i32 = text(0)?.parse().ok()?;
                let mut holder = format!("pid {pid}");
                if let Some(user) = text(1) {
                    holder.push_str(&format!(" (user {user}"));
                    match text(2).filter(|a| !a.is_empty()) {
                        Some(app) => holder.push_str(&format!(", application {app:?})")),
                        None => holder.push(')'),
                    }
                }
                if let Some(from) = text(3) {
                    holder.push_str(&format!(" from {from}"));
                }
                if let Some(since) = text(4) {
                    holder.push_str(&format!(", connected since {since}"));
                }
                Some(holder)
            }
            #[cfg(feature = "mysql")]
            MigrationLock::MySql { conn, name } => {
                let id: Option<i64> = sqlx::query_scalar("SELECT IS_USED_LOCK(?)")
                    .bind(name.as_str())
                    .fetch_one(&mut *conn)
                    .await
                    .ok()?;
                let id = id?;
                // The processlist shows another user's session only with the PROCESS
                // privilege: then the connection id is all there is to say.
                let row = sqlx::query(
                    "SELECT USER, HOST, TIME FROM information_schema.PROCESSLIST WHERE ID = ?",
                )
                .bind(id)
                .fetch_optional(&mut *conn)
                .await
                .ok()
                .flatten();
                let mut holder = format!("connection {id}");
                if let Some(row) = row {
                    let user: Option<String> = row.try_get(0).ok();
                    let host: Option<String> = row.try_get(1).ok();
                    let time: Option<i64> = row.try_get(2).ok();
                    if let Some(user) = user {
                        holder.push_str(&format!(" (user {user})"));
                    }
                    if let Some(host) = host.filter(|h| !h.is_empty()) {
                        holder.push_str(&format!(" from {host}"));
                    }
                    if let Some(time) = time {
                        holder.push_str(&format!(", in its current state for {time}s"));
                    }
                }
                Some(holder)
            }
            #[cfg(feature = "sqlite")]
            MigrationLock::Sqlite { .. } => None,
        }
    }

    /// The server-side id of the lock's own connection's peer is not needed: cancelling the
    /// migration's query goes through this idle connection.
    pub async fn cancel(&mut self, backend: i64) {
        let result = match self {
            #[cfg(feature = "postgres")]
            MigrationLock::Postgres { conn, .. } => sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "SELECT pg_cancel_backend({backend})"
            )))
            .execute(conn)
            .await
            .map(drop),
            #[cfg(feature = "mysql")]
            MigrationLock::MySql { conn, .. } => {
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("KILL QUERY {backend}")))
                    .execute(conn)
                    .await
                    .map(drop)
            }
            #[cfg(feature = "sqlite")]
            MigrationLock::Sqlite { .. } => Ok::<_, sqlx::Error>(()),
        };
        if let Err(e) = result {
            debug!("cancelling the migration's query: {e}");
        }
    }

    /// Closes the connection of a lock that was never taken.
    async fn close(self) {
        let _ = match self {
            #[cfg(feature = "postgres")]
            MigrationLock::Postgres { conn, .. } => conn.close().await,
            #[cfg(feature = "mysql")]
            MigrationLock::MySql { conn, .. } => conn.close().await,
            #[cfg(feature = "sqlite")]
            MigrationLock::Sqlite { .. } => Ok::<_, sqlx::Error>(()),
        };
    }

    /// Releases the lock and closes its connection.
    pub async fn release(self) {
        let result = match self {
            #[cfg(feature = "postgres")]
            MigrationLock::Postgres { mut conn, .. } => {
                // The transaction-scoped lock goes with the transaction.
                let ended = sqlx::raw_sql("COMMIT").execute(&mut conn).await;
                let _ = conn.close().await;
                ended.map(drop)
            }
            #[cfg(feature = "mysql")]
            MigrationLock::MySql { mut conn, name } => {
                let released = sqlx::query("SELECT RELEASE_LOCK(?)")
                    .bind(name)
                    .execute(&mut conn)
                    .await;
                let _ = conn.close().await;
                released.map(drop)
            }
            #[cfg(feature = "sqlite")]
            MigrationLock::Sqlite { .. } => Ok::<_, sqlx::Error>(()),
        };
        match result {
            Ok(()) => debug!("migration lock released"),
            // Closing the connection released it anyway.
            Err(e) => debug!("releasing the migration lock: {e} (the closed connection frees it)"),
        }
    }
}

/// The first column (of type text) of the last row a simple query returns: one message, one round trip, no prepared statement.
#[cfg(feature = "postgres")]
pub(crate) async fn simple_scalar(
    conn: &mut PgConnection,
    sql: &str,
) -> Result<Option<String>, sqlx::Error> {
    let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_all(conn)
        .await?;
    Ok(rows
        .last()
        .and_then(|row| row.try_get::<Option<String>, _>(0).ok().flatten()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("postgres", 368907709894077238)]
    #[case("app", 3469795979745788610)]
    fn the_key_is_sqlxs(#[case] database: &str, #[case] key: i64) {
        assert_eq!(sqlx_key(database), key);
    }
}
