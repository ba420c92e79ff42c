//! The cluster-wide migration lock, around any kind of migration, with sqlx's key so roadie
//! serialises with apps that run `sqlx::migrate!()`. PostgreSQL, two scopes:
//! - a native run holds a session-level advisory lock (`pg_try_advisory_lock`) on the very
//!   session that runs its migrations, as sqlx does: should the session end (terminated, a
//!   partition, a pooler dropping it), the lock and the run end together, so no second replica
//!   can migrate while the first still does (fencing by construction);
//! - a migration command, whose sessions are its own, holds a transaction-scoped advisory lock
//!   (`pg_try_advisory_xact_lock`) in a READ COMMITTED transaction kept open on a session of
//!   roadie's: a transaction pins one server connection in every pooling mode (PgBouncer's
//!   transaction mode too), holds no snapshot while idle (`CREATE INDEX CONCURRENTLY` elsewhere
//!   is not blocked), and the lock goes with COMMIT, ROLLBACK or disconnect. The watch beside
//!   the command checks that the lock is still held (`still_held`).
//!
//! Everything is sent as simple queries and `SET LOCAL`: nothing outlives the transaction on a
//! shared server connection. MySQL: `GET_LOCK` (session-level) with sqlx's name. SQLite: an
//! flock on a file beside the database.

use std::fs::File;
use std::path::PathBuf;

use tracing::debug;

#[cfg(feature = "mysql")]
use super::mysql;
#[cfg(feature = "postgres")]
use super::postgres;
#[cfg(feature = "sqlite")]
use super::sqlite;
use super::{Connection, DatabaseUrl};

/// What the lock is held by: a transaction of its session, or the session itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// An open transaction (a migration command's lock: pooler-safe, watched).
    Transaction,
    /// The session, which runs the native migrations itself.
    Session,
}

/// A lock, held or about to be. Dropping it without `release` still frees it (the connection
/// or file closes), but `release` says so in the log and reports failures.
pub struct MigrationLock {
    /// The lock's session (a server's); for a native run also the migration's (and, SQLite,
    /// the migration's connection beside the lock file).
    conn: Option<Connection>,
    kind: LockKind,
}

enum LockKind {
    #[cfg(feature = "postgres")]
    Advisory { key: i64, scope: Scope },
    #[cfg(feature = "mysql")]
    Named { name: String },
    #[cfg(feature = "sqlite")]
    File { file: Option<File> },
}

/// Why the lock's session could not be set up.
#[derive(Debug)]
pub enum LockError {
    /// The database went away.
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
            LockError::Database(_) => f.write_str("taking the migration lock"),
            LockError::File { path, .. } => write!(f, "opening {}", path.display()),
        }
    }
}

impl std::error::Error for LockError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LockError::Database(e) => Some(e),
            LockError::File { source, .. } => Some(source),
        }
    }
}

impl MigrationLock {
    /// The lock's session, not yet locked: `session` (the wait stage's connection, or the
    /// migration's) when it still answers, else a new connection, with the lock's key in its
    /// database; SQLite's lock file beside the database, `session` kept for the migrations.
    pub async fn prepare(
        url: &DatabaseUrl,
        session: Option<Connection>,
        scope: Scope,
    ) -> Result<Self, LockError> {
        if !url.driver().has_server() {
            return Self::sqlite(url, session);
        }
        let mut conn = match Connection::if_alive(session).await {
            Some(conn) => conn,
            None => url.connect().await.map_err(LockError::Database)?,
        };
        let kind = match &mut conn {
            #[cfg(feature = "postgres")]
            Connection::Postgres(c) => LockKind::Advisory {
                key: postgres::lock_key(c).await.map_err(LockError::Database)?,
                scope,
            },
            #[cfg(feature = "mysql")]
            Connection::MySql(c) => LockKind::Named {
                name: mysql::lock_name(c).await.map_err(LockError::Database)?,
            },
            #[cfg(feature = "sqlite")]
            Connection::Sqlite(_) => return Self::sqlite(url, Some(conn)),
        };
        let _ = scope;
        Ok(MigrationLock {
            conn: Some(conn),
            kind,
        })
    }

    fn sqlite(url: &DatabaseUrl, session: Option<Connection>) -> Result<Self, LockError> {
        #[cfg(feature = "sqlite")]
        {
            let file = sqlite::lock_file(url.sqlite_file())
                .map_err(|(path, source)| LockError::File { path, source })?;
            Ok(MigrationLock {
                conn: session,
                kind: LockKind::File { file },
            })
        }
        #[cfg(not(feature = "sqlite"))]
        {
            drop(session);
            unreachable!("UNWRAP: DatabaseUrl::parse refuses sqlite: in this build ({url})")
        }
    }

    /// The lock's session: for a native run, the one its migrations run on.
    pub fn connection(&mut self) -> Option<&mut Connection> {
        self.conn.as_mut()
    }

    /// The server's id for the lock's session, for the watch's `still_held`.
    pub async fn backend_id(&mut self) -> Option<i64> {
        match self.conn.as_mut() {
            Some(conn) => conn.backend_id().await.ok(),
            None => None,
        }
    }

    /// The advisory key the lock is taken with (PostgreSQL).
    pub fn advisory_key(&self) -> Option<i64> {
        match &self.kind {
            #[cfg(feature = "postgres")]
            LockKind::Advisory { key, .. } => Some(*key),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// Tries the lock once, without waiting.
    pub async fn try_lock(&mut self) -> Result<bool, sqlx::Error> {
        match (&self.kind, self.conn.as_mut()) {
            #[cfg(feature = "postgres")]
            (LockKind::Advisory { key, scope }, Some(Connection::Postgres(c))) => match scope {
                Scope::Transaction => postgres::try_lock(c, *key).await,
                Scope::Session => postgres::try_session_lock(c, *key).await,
            },
            #[cfg(feature = "mysql")]
            (LockKind::Named { name }, Some(Connection::MySql(c))) => {
                mysql::try_lock(c, name).await
            }
            #[cfg(feature = "sqlite")]
            (LockKind::File { file }, _) => Ok(sqlite::try_lock(file.as_ref())),
            #[allow(unreachable_patterns)]
            _ => Err(sqlx::Error::Protocol("the lock's session is gone".into())),
        }
    }

    /// Who holds the lock, for the waiting log line (SQLite's flock has no holder to name).
    pub async fn holder(&mut self) -> Option<String> {
        match (&self.kind, self.conn.as_mut()) {
            #[cfg(feature = "postgres")]
            (LockKind::Advisory { key, .. }, Some(Connection::Postgres(c))) => {
                postgres::lock_holder(c, *key).await
            }
            #[cfg(feature = "mysql")]
            (LockKind::Named { name }, Some(Connection::MySql(c))) => {
                mysql::lock_holder(c, name).await
            }
            _ => None,
        }
    }

    /// Closes the session of a lock that was never taken.
    pub async fn close(self) {
        if let Some(conn) = self.conn {
            conn.close().await;
        }
    }

    /// Releases the lock and closes its session. An error means the lock was not held to
    /// the end (its session or transaction was gone): whatever ran under it may have run
    /// beside another holder.
    pub async fn release(self) -> Result<(), sqlx::Error> {
        let MigrationLock { conn, kind } = self;
        let Some(mut conn) = conn else {
            debug!("migration lock released");
            return Ok(());
        };
        let released = match (&kind, &mut conn) {
            #[cfg(feature = "postgres")]
            (LockKind::Advisory { key, scope }, Connection::Postgres(c)) => match scope {
                Scope::Transaction => postgres::unlock(c).await,
                Scope::Session => postgres::session_unlock(c, *key).await,
            },
            #[cfg(feature = "mysql")]
            (LockKind::Named { name }, Connection::MySql(c)) => mysql::unlock(c, name).await,
            _ => Ok(()),
        };
        conn.close().await;
        match &released {
            Ok(()) => debug!("migration lock released"),
            Err(e) => debug!("releasing the migration lock: {e}"),
        }
        released
    }
}
