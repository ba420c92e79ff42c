//! One open connection, whichever the driver. The wait stage's successful attempt hands its
//! connection on to the migrate stage, so a boot logs in once, not twice. `on_each_driver!` is
//! the one place that dispatches to the driver: code that is the same for every driver (sqlx's
//! generic API) is written once, inside it.

use sqlx::Connection as _;
#[cfg(feature = "mysql")]
use sqlx::mysql::MySqlConnection;
#[cfg(feature = "postgres")]
use sqlx::postgres::PgConnection;
#[cfg(feature = "sqlite")]
use sqlx::sqlite::SqliteConnection;

#[cfg(feature = "mysql")]
use super::mysql;
#[cfg(feature = "postgres")]
use super::postgres;
use super::{ConnectOptions, Driver};

/// Whose blockers a watch looks for.
#[derive(Debug, Clone, Copy)]
pub enum Blocked {
    /// Nobody's: the watch only pings.
    Nobody,
    /// The session with this server-side id (a native migration's).
    Session(i64),
    /// Sessions with this application name that wait for a lock (a migration command's).
    Application(&'static str),
}

pub enum Connection {
    #[cfg(feature = "postgres")]
    Postgres(PgConnection),
    #[cfg(feature = "mysql")]
    MySql(MySqlConnection),
    #[cfg(feature = "sqlite")]
    Sqlite(SqliteConnection),
}

/// Runs `$body` with `$c` bound to the driver's own connection, whichever it is.
macro_rules! on_each_driver {
    ($connection:expr, $c:ident => $body:expr) => {
        match $connection {
            #[cfg(feature = "postgres")]
            $crate::database::Connection::Postgres($c) => $body,
            #[cfg(feature = "mysql")]
            $crate::database::Connection::MySql($c) => $body,
            #[cfg(feature = "sqlite")]
            $crate::database::Connection::Sqlite($c) => $body,
        }
    };
}
pub(crate) use on_each_driver;

impl Connection {
    /// Connects, with the client-side silence bounds on the new socket (`silence.rs`).
    pub async fn open(options: &ConnectOptions) -> Result<Self, sqlx::Error> {
        let conn = Self::open_unbounded(options).await?;
        super::silence::bound_own_sockets();
        Ok(conn)
    }

    async fn open_unbounded(options: &ConnectOptions) -> Result<Self, sqlx::Error> {
        Ok(match options {
            #[cfg(feature = "postgres")]
            ConnectOptions::Postgres(o) => {
                Connection::Postgres(PgConnection::connect_with(o).await?)
            }
            #[cfg(feature = "mysql")]
            ConnectOptions::MySql(o) => Connection::MySql(MySqlConnection::connect_with(o).await?),
            #[cfg(feature = "sqlite")]
            ConnectOptions::Sqlite(o) => {
                Connection::Sqlite(SqliteConnection::connect_with(o).await?)
            }
        })
    }

    pub fn driver(&self) -> Driver {
        match self {
            #[cfg(feature = "postgres")]
            Connection::Postgres(_) => Driver::Postgres,
            #[cfg(feature = "mysql")]
            Connection::MySql(_) => Driver::MySql,
            #[cfg(feature = "sqlite")]
            Connection::Sqlite(_) => Driver::Sqlite,
        }
    }

    /// Runs statements as one simple query: one round trip, no prepared statement.
    pub async fn execute(&mut self, sql: &'static str) -> Result<(), sqlx::Error> {
        on_each_driver!(self, c => sqlx::raw_sql(sql).execute(c).await.map(drop))
    }

    /// `SET name = 'value'` for the session, as a simple query (a transaction pooler has no
    /// prepared statements). `name` is roadie's own; the value is quoted.
    pub async fn set(&mut self, name: &str, value: &str) -> Result<(), sqlx::Error> {
        let sql = format!("SET {name} = '{}'", value.replace('\'', "''"));
        on_each_driver!(self, c => sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(c).await.map(drop))
    }

    /// A handed-on connection, if it still answers: it may have idled while other targets
    /// were waited for, and the server may have gone since.
    pub async fn if_alive(reused: Option<Self>) -> Option<Self> {
        let mut connection = reused?;
        match on_each_driver!(&mut connection, c => c.ping().await) {
            Ok(()) => Some(connection),
            Err(e) => {
                tracing::debug!("the wait stage's connection is gone ({e}); connecting again");
                None
            }
        }
    }

    /// A session holding no state: `reused` when it still answers, else a new one on the
    /// URL's first host.
    pub async fn reused_or_opened(
        url: &super::DatabaseUrl,
        reused: Option<Self>,
    ) -> Result<Self, sqlx::Error> {
        if let Some(conn) = Self::if_alive(reused).await {
            return Ok(conn);
        }
        Self::open(&url.connect_options()?).await
    }

    /// Whether the server still answers.
    pub async fn ping(&mut self) -> Result<(), sqlx::Error> {
        on_each_driver!(self, c => c.ping().await)
    }

    /// The server's id for this session, to cancel its statement from another one (SQLite: 0,
    /// nothing to cancel from elsewhere).
    pub async fn backend_id(&mut self) -> Result<i64, sqlx::Error> {
        match self {
            #[cfg(feature = "postgres")]
            Connection::Postgres(c) => postgres::backend_id(c).await,
            #[cfg(feature = "mysql")]
            Connection::MySql(c) => mysql::backend_id(c).await,
            #[cfg(feature = "sqlite")]
            Connection::Sqlite(_) => Ok(0),
        }
    }

    /// Cancels the running statement of session `backend` (its transaction rolls back).
    pub async fn cancel_backend(&mut self, backend: i64) -> Result<(), sqlx::Error> {
        match self {
            #[cfg(feature = "postgres")]
            Connection::Postgres(c) => postgres::cancel(c, backend).await,
            #[cfg(feature = "mysql")]
            Connection::MySql(c) => mysql::cancel(c, backend).await,
            #[cfg(feature = "sqlite")]
            Connection::Sqlite(_) => Ok(()),
        }
    }

    /// Whether session `backend` still holds the advisory lock `key` (PostgreSQL; elsewhere
    /// the lock's own session says, and this is true).
    pub async fn lock_still_held(&mut self, backend: i64, key: i64) -> Result<bool, sqlx::Error> {
        match self {
            #[cfg(feature = "postgres")]
            Connection::Postgres(c) => postgres::still_held(c, backend, key).await,
            #[allow(unreachable_patterns)]
            _ => Ok(true),
        }
    }

    /// The other sessions of this database named `application`, each described (PostgreSQL;
    /// none elsewhere, where the name is not seen).
    pub async fn sessions_named(&mut self, application: &str) -> Result<Vec<String>, sqlx::Error> {
        match self {
            #[cfg(feature = "postgres")]
            Connection::Postgres(c) => postgres::sessions_named(c, application).await,
            #[allow(unreachable_patterns)]
            _ => Ok(Vec::new()),
        }
    }

    /// The server's version number, where it says one roadie uses (PostgreSQL's
    /// `server_version_num`).
    pub async fn server_version(&mut self) -> Option<i32> {
        match self {
            #[cfg(feature = "postgres")]
            Connection::Postgres(c) => postgres::server_version(c).await.ok(),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// Has the server give up on this session soon should roadie's host vanish (PostgreSQL's
    /// keepalives and `tcp_user_timeout`); with `running_statements`, it also checks every
    /// second whether the client of a running statement is still there (PostgreSQL 14+). Other
    /// databases keep their defaults. Session settings: only once the session is known not
    /// to be a transaction pooler's.
    pub async fn bound_against_vanishing(
        &mut self,
        running_statements: bool,
    ) -> Result<(), sqlx::Error> {
        match self {
            #[cfg(feature = "postgres")]
            Connection::Postgres(c) => {
                sqlx::raw_sql(postgres::SERVER_BOUNDS)
                    .execute(&mut *c)
                    .await?;
                if running_statements {
                    sqlx::raw_sql(postgres::CLIENT_CHECK).execute(c).await?;
                }
                Ok(())
            }
            #[allow(unreachable_patterns)]
            _ => Ok(()),
        }
    }

    /// Who blocks `blocked` now, if anyone (PostgreSQL's `pg_blocking_pids`); elsewhere, and
    /// for `Blocked::Nobody`, a ping.
    pub async fn blocker(&mut self, blocked: &Blocked) -> Result<Option<String>, sqlx::Error> {
        match (self, blocked) {
            #[cfg(feature = "postgres")]
            (Connection::Postgres(c), Blocked::Session(backend)) => {
                postgres::blocker_of(c, *backend).await
            }
            #[cfg(feature = "postgres")]
            (Connection::Postgres(c), Blocked::Application(name)) => {
                postgres::blocker_of_application(c, name).await
            }
            (conn, _) => conn.ping().await.map(|()| None),
        }
    }

    /// A digest of the schema and its INVALID indexes, to tell what a failed `--
    /// no-transaction` migration left behind (PostgreSQL; `None` elsewhere).
    pub async fn catalog(&mut self) -> Result<Option<(String, Vec<String>)>, sqlx::Error> {
        match self {
            #[cfg(feature = "postgres")]
            Connection::Postgres(c) => postgres::catalog(c).await.map(Some),
            #[allow(unreachable_patterns)]
            _ => Ok(None),
        }
    }

    /// Why the server cannot take writes, when it cannot (a standby, `read_only`).
    pub async fn read_only(&mut self) -> Result<Option<&'static str>, sqlx::Error> {
        match self {
            #[cfg(feature = "postgres")]
            Connection::Postgres(c) => postgres::read_only(c).await,
            #[cfg(feature = "mysql")]
            Connection::MySql(c) => mysql::read_only(c).await,
            #[cfg(feature = "sqlite")]
            Connection::Sqlite(_) => Ok(None),
        }
    }

    /// Says goodbye to the server (it logs no broken connection); errors are of no use here.
    pub async fn close(self) {
        let _ = on_each_driver!(self, c => c.close().await);
    }
}
