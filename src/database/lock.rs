//! The cluster-wide migration lock, around any kind of migration. Postgres: a transaction-scoped
//! advisory lock (`pg_try_advisory_xact_lock`, sqlx's key, so roadie serialises with apps that run
//! `sqlx::migrate!()`) taken in a READ COMMITTED transaction kept open on a dedicated connection:
//! a transaction pins one server connection in every pooling mode (PgBouncer's transaction mode
//! too), holds no snapshot while idle (`CREATE INDEX CONCURRENTLY` elsewhere is not blocked), and
//! the lock goes with COMMIT, ROLLBACK or disconnect. Everything is sent as simple queries and
//! `SET LOCAL`: nothing outlives the transaction on a shared server connection. MySQL:
//! `GET_LOCK` with sqlx's name. SQLite: an flock on a file beside the database.

use std::fs::File;
use std::path::PathBuf;

use sqlx::Connection as _;
#[cfg(feature = "mysql")]
use sqlx::mysql::MySqlConnection;
#[cfg(feature = "postgres")]
use sqlx::postgres::PgConnection;
use tracing::debug;

#[cfg(feature = "mysql")]
use super::mysql;
#[cfg(feature = "postgres")]
use super::postgres;
#[cfg(feature = "sqlite")]
use super::sqlite;
use super::{Connection, DatabaseUrl};

/// sqlx's advisory-lock key: `0x3d32ad9e * crc32(current_database())`.
pub fn sqlx_key(database: &str) -> i64 {
    const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    0x3d32ad9e * i64::from(CRC.checksum(database.as_bytes()))
}

/// A lock, held or about to be. Dropping it without `release` still frees it (the connection
/// or file closes), but `release` says so in the log and reports failures.
pub enum MigrationLock {
    #[cfg(feature = "postgres")]
    Postgres { conn: PgConnection, key: i64 },
    #[cfg(feature = "mysql")]
    MySql { conn: MySqlConnection, name: String },
    #[cfg(feature = "sqlite")]
    Sqlite { file: Option<File> },
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
    /// The lock's session, not yet locked: a connection (the handed-on one when it still
    /// answers) with the lock's key in its database, or SQLite's lock file.
    pub async fn prepare(url: &DatabaseUrl, reused: Option<Connection>) -> Result<Self, LockError> {
        if !url.driver().has_server() {
            return Self::sqlite(url);
        }
        let conn = match Connection::if_alive(reused).await {
            Some(conn) => conn,
            None => url.connect().await.map_err(LockError::Database)?,
        };
        match conn {
            #[cfg(feature = "postgres")]
            Connection::Postgres(mut conn) => {
                let key = postgres::lock_key(&mut conn)
                    .await
                    .map_err(LockError::Database)?;
                Ok(MigrationLock::Postgres { conn, key })
            }
            #[cfg(feature = "mysql")]
            Connection::MySql(mut conn) => {
                let name = mysql::lock_name(&mut conn)
                    .await
                    .map_err(LockError::Database)?;
                Ok(MigrationLock::MySql { conn, name })
            }
            #[cfg(feature = "sqlite")]
            Connection::Sqlite(_) => Self::sqlite(url),
        }
    }

    fn sqlite(url: &DatabaseUrl) -> Result<Self, LockError> {
        #[cfg(feature = "sqlite")]
        {
            let file = sqlite::lock_file(url.sqlite_file())
                .map_err(|(path, source)| LockError::File { path, source })?;
            Ok(MigrationLock::Sqlite { file })
        }
        #[cfg(not(feature = "sqlite"))]
        unreachable!("UNWRAP: DatabaseUrl::parse refuses sqlite: in this build ({url})")
    }

    /// Tries the lock once, without waiting.
    pub async fn try_lock(&mut self) -> Result<bool, sqlx::Error> {
        match self {
            #[cfg(feature = "postgres")]
            MigrationLock::Postgres { conn, key } => postgres::try_lock(conn, *key).await,
            #[cfg(feature = "mysql")]
            MigrationLock::MySql { conn, name } => mysql::try_lock(conn, name).await,
            #[cfg(feature = "sqlite")]
            MigrationLock::Sqlite { file } => Ok(sqlite::try_lock(file.as_ref())),
        }
    }

    /// Who holds the lock, for the waiting log line (SQLite's flock has no holder to name).
    pub async fn holder(&mut self) -> Option<String> {
        match self {
            #[cfg(feature = "postgres")]
            MigrationLock::Postgres { conn, key } => postgres::lock_holder(conn, *key).await,
            #[cfg(feature = "mysql")]
            MigrationLock::MySql { conn, name } => mysql::lock_holder(conn, name).await,
            #[cfg(feature = "sqlite")]
            MigrationLock::Sqlite { .. } => None,
        }
    }

    /// Cancels the migration session's running statement (`backend`, its server-side id)
    /// through the lock's idle connection.
    pub async fn cancel(&mut self, backend: i64) {
        let result = match self {
            #[cfg(feature = "postgres")]
            MigrationLock::Postgres { conn, .. } => postgres::cancel(conn, backend).await,
            #[cfg(feature = "mysql")]
            MigrationLock::MySql { conn, .. } => mysql::cancel(conn, backend).await,
            #[cfg(feature = "sqlite")]
            MigrationLock::Sqlite { .. } => Ok::<_, sqlx::Error>(()),
        };
        if let Err(e) = result {
            debug!("cancelling the migration's query: {e}");
        }
    }

    /// Closes the connection of a lock that was never taken.
    pub async fn close(self) {
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
                let ended = postgres::unlock(&mut conn).await;
                let _ = conn.close().await;
                ended
            }
            #[cfg(feature = "mysql")]
            MigrationLock::MySql { mut conn, name } => {
                let released = mysql::unlock(&mut conn, &name).await;
                let _ = conn.close().await;
                released
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
