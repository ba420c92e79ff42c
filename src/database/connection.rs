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

use super::{ConnectOptions, Kind};

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
    pub async fn open(options: &ConnectOptions) -> Result<Self, sqlx::Error> {
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

    pub fn kind(&self) -> Kind {
        match self {
            #[cfg(feature = "postgres")]
            Connection::Postgres(_) => Kind::Postgres,
            #[cfg(feature = "mysql")]
            Connection::MySql(_) => Kind::MySql,
            #[cfg(feature = "sqlite")]
            Connection::Sqlite(_) => Kind::Sqlite,
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

    /// Says goodbye to the server (it logs no broken connection); errors are of no use here.
    pub async fn close(self) {
        let _ = on_each_driver!(self, c => c.close().await);
    }
}
