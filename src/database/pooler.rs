//! Telling a transaction pooler (PgBouncer's `pool_mode = transaction`, RDS Proxy, Supabase's
//! pooler) from a server: two client connections open at once never share a server connection
//! on a server or behind a session pooler; behind a transaction pooler they do, and one client
//! connection's queries land on different server connections between transactions.

#[cfg(feature = "postgres")]
use sqlx::Row;
#[cfg(feature = "postgres")]
use sqlx::postgres::PgConnection;

use super::Connection;

/// Rounds of four questions (a few hundred microseconds each on a local network).
const SAMPLES: usize = 4;

/// Whether sqlx's error is what a transaction pooler does to prepared statements: one that
/// "does not exist" (26000) or "already exists" (42P05) on the server connection it landed on.
pub fn lost_prepared_statement(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if matches!(d.code().as_deref(), Some("26000" | "42P05")))
}

/// What was seen that only a transaction pooler does, when it was seen: `first` and `second`
/// are two idle connections to the same URL. Postgres only; other drivers say nothing.
// A Postgres-only build has one driver: its `if let` always matches.
#[cfg_attr(
    not(any(feature = "mysql", feature = "sqlite")),
    allow(irrefutable_let_patterns)
)]
pub async fn transaction_pooling(
    first: &mut Connection,
    second: &mut Connection,
) -> Result<Option<String>, sqlx::Error> {
    #[cfg(feature = "postgres")]
    if let (Connection::Postgres(a), Connection::Postgres(b)) = (first, second) {
        // A pooler hands out the server connection it was given back last (PgBouncer's
        // default, LIFO): asked in turn, the two clients usually get the same one; when other
        // clients are busy, one client's server connection changes. Neither is certain under
        // load: ask a few times.
        for _ in 0..SAMPLES {
            let a1 = backend_pid(a).await?;
            let b1 = backend_pid(b).await?;
            let a2 = backend_pid(a).await?;
            let b2 = backend_pid(b).await?;
            if let Some(seen) = seen(a1, b1, a2, b2) {
                return Ok(Some(seen));
            }
        }
        return Ok(None);
    }
    Ok(None)
}

/// The decision, from the server process ids each connection reported, in turn.
fn seen(a1: i32, b1: i32, a2: i32, b2: i32) -> Option<String> {
    if a1 == b1 || a2 == b2 || a2 == b1 || a1 == b2 {
        let shared = if a1 == b1 || a1 == b2 { a1 } else { a2 };
        Some(format!(
            "two of roadie's connections were served by the same server process (pid {shared})"
        ))
    } else if a1 != a2 || b1 != b2 {
        Some(format!(
            "one of roadie's connections was served by server process {} and then {}",
            if a1 != a2 { a1 } else { b1 },
            if a1 != a2 { a2 } else { b2 }
        ))
    } else {
        None
    }
}

/// `pg_backend_pid()`, as a simple query (a transaction pooler loses prepared statements).
#[cfg(feature = "postgres")]
async fn backend_pid(conn: &mut PgConnection) -> Result<i32, sqlx::Error> {
    let row = sqlx::raw_sql("SELECT pg_backend_pid()::text")
        .fetch_one(conn)
        .await?;
    let pid: String = row.try_get(0)?;
    pid.parse()
        .map_err(|_| sqlx::Error::Protocol(format!("pg_backend_pid() gave {pid:?}")))
}

#[cfg(test)]
mod tests {
    use super::seen;
    use rstest::rstest;

    #[rstest]
    #[case::server(1, 2, 1, 2, false)]
    #[case::lifo_pooler(7, 7, 7, 7, true)]
    #[case::crossed(7, 8, 8, 7, true)]
    #[case::moved(7, 8, 9, 8, true)]
    fn a_shared_or_moving_server_process_is_a_transaction_pooler(
        #[case] a1: i32,
        #[case] b1: i32,
        #[case] a2: i32,
        #[case] b2: i32,
        #[case] pooled: bool,
    ) {
        assert_eq!(seen(a1, b1, a2, b2).is_some(), pooled);
    }
}
