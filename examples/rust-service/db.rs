//! The database side: one small sqlx pool, PostgreSQL or SQLite by `DATABASE_URL`'s scheme, and
//! the two queries the service runs. No migrations here: roadie applied them before the service
//! started, and the queries only read the tables they created.

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};

/// At most this many connections per replica.
pub const MAX_CONNECTIONS: u32 = 5;
/// A request waits at most this long for a free connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Each customer with the count and total of their orders. Portable SQL: the casts give both
/// databases the same column types (BIGINT, text), so one row type decodes either.
const CUSTOMERS: &str = "\
    SELECT CAST(c.id AS BIGINT), c.name, CAST(c.created_at AS TEXT), \
           COUNT(o.id), COALESCE(SUM(o.total_cents), 0) \
    FROM customers c LEFT JOIN orders o ON o.customer_id = c.id \
    GROUP BY c.id, c.name, c.created_at \
    ORDER BY c.id";

type CustomerRow = (i64, String, String, i64, i64);

/// The pool; cheap to clone (every handler gets one).
#[derive(Clone)]
pub enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl Db {
    /// Connects to `url` (`postgres://`, `postgresql://`, `sqlite:path.db`, `sqlite:/abs.db`).
    /// Eagerly: under roadie the database already answered, so a failure here is a real one.
    pub async fn connect(url: &str) -> Result<Db, String> {
        let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
        match scheme {
            "postgres" | "postgresql" => PgPoolOptions::new()
                .max_connections(MAX_CONNECTIONS)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect(url)
                .await
                .map(Db::Postgres)
                .map_err(|e| format!("connecting to PostgreSQL: {e}")),
            // sqlx does not create a missing file: no database means roadie did not migrate.
            "sqlite" => SqlitePoolOptions::new()
                .max_connections(MAX_CONNECTIONS)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect(url)
                .await
                .map(Db::Sqlite)
                .map_err(|e| format!("opening SQLite: {e}")),
            // Only the scheme: the URL may hold a password.
            _ => Err(format!(
                "DATABASE_URL: unsupported scheme {scheme:?} (expected postgres://, \
                 postgresql:// or sqlite:)"
            )),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Db::Postgres(_) => "PostgreSQL",
            Db::Sqlite(_) => "SQLite",
        }
    }

    /// `SELECT 1`.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        let one: i32 = match self {
            Db::Postgres(pool) => sqlx::query_scalar("SELECT 1").fetch_one(pool).await?,
            Db::Sqlite(pool) => sqlx::query_scalar("SELECT 1").fetch_one(pool).await?,
        };
        debug_assert_eq!(one, 1);
        Ok(())
    }

    /// The customers as JSON objects, in id order.
    pub async fn customers(&self) -> Result<Vec<Value>, sqlx::Error> {
        let rows: Vec<CustomerRow> = match self {
            Db::Postgres(pool) => sqlx::query_as(CUSTOMERS).fetch_all(pool).await?,
            Db::Sqlite(pool) => sqlx::query_as(CUSTOMERS).fetch_all(pool).await?,
        };
        Ok(rows
            .into_iter()
            .map(|(id, name, created_at, orders, total_cents)| {
                json!({
                    "id": id,
                    "name": name,
                    "created_at": created_at,
                    "orders": orders,
                    "total_cents": total_cents,
                })
            })
            .collect())
    }

    /// Waits for the connections in use to come back, then closes them all.
    pub async fn close(&self) {
        match self {
            Db::Postgres(pool) => pool.close().await,
            Db::Sqlite(pool) => pool.close().await,
        }
    }
}
