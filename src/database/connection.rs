//! One open connection, whichever the driver. The wait stage's successful attempt hands its
//! connection on to the migrate stage, so a boot logs in once, not twice.

use sqlx::Connection as _;
#[cfg(feature = "mysql")]
use sqlx::mysql::MySqlConnection;
#[cfg(feature = "postgres")]
use sqlx::postgres::PgConnection;
#[cfg(feature = "sqlite")]
use sqlx::sqlite::SqliteConnection;

use super::ConnectOptions;

pub enum Connection {
    #[cfg(feature = "postgres")]
    Postgres(PgConnection),
    #[cfg(feature = "mysql")]
    MySql(MySqlConnection),
    #[cfg(feature = "sqlite")]
    Sqlite(SqliteConnection),
}

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

    /// Runs statements as one simple query: one round trip, no prepared statement.
    pub async fn execute(&mut self, sql: &'static str) -> Result<(), sqlx::Error> {
        match self {
            #[cfg(feature = "postgres")]
            Connection::Postgres(c) => sqlx::raw_sql(sql).execute(c).await.map(drop),
            #[cfg(feature = "mysql")]
            Connection::MySql(c) => sqlx::raw_sql(sql).execute(c).await.map(drop),
            #[cfg(feature = "sqlite")]
            Connection::Sqlite(c) => sqlx::raw_sql(sql).execute(c).await.map(drop),
        }
    }

    /// A handed-on connection, if it still answers: it may have idled while other targets
    /// were waited for, and the server may have gone since.
    pub async fn if_alive(reused: Option<Self>) -> Option<Self> {
        let mut connection = reused?;
        match connection.ping().await {
            Ok(()) => Some(connection),
            Err(e) => {
                tracing::debug!("the wait stage's connection is gone ({e}); connecting again");
                None
            }
        }
    }

    async fn ping(&mut self) -> Result<(), sqlx::Error> {
        match self {
            #[cfg(feature = "postgres")]
            Connection::Postgres(c) => c.ping().await,
            #[cfg(feature = "mysql")]
            Connection::MySql(c) => c.ping().await,
            #[cfg(feature = "sqlite")]
            Connection::Sqlite(c) => c.ping().await,
        }
    }

    /// Says goodbye to the server (it logs no broken connection); errors are of no use here.
    pub async fn close(self) {
        let _ = match self {
            #[cfg(feature = "postgres")]
            Connection::Postgres(c) => c.close().await,
            #[cfg(feature = "mysql")]
            Connection::MySql(c) => c.close().await,
            #[cfg(feature = "sqlite")]
            Connection::Sqlite(c) => c.close().await,
        };
    }
}
