//! The sessions of a native run: the migration's (the wait stage's connection when it still
//! answers; `--ddl-lock-timeout` as a startup option), and the lock's, opened beside it, which
//! shows a transaction pooler that native migrations cannot go through.

use std::time::Duration;

use crate::database::{Connection, DatabaseUrl, pooler};
use crate::migrate::{MigrateError, bounded};

/// Checks the migration session before the lock goes on it: no transaction pooler in
/// between, and the server told to check that its client is there.
pub async fn ready_for_the_lock(
    url: &DatabaseUrl,
    conn: &mut Connection,
) -> Result<(), MigrateError> {
    if let PoolerCheck::NoSecondSession = refuse_transaction_pooling(url, conn).await? {
        // Waiting for it while holding a session would deadlock a full session pool; a
        // transaction pooler serves a new session's query as soon as any transaction ends.
        // Should it be one all the same, the first prepared statement it loses is refused
        // with the same 78 (folder.rs).
        tracing::info!(
            "no second session to be had beside the migration session within 2s: taking this \
             for a full session pool, not a transaction pooler"
        );
    }
    keep_checking_the_client(conn).await;
    Ok(())
}

/// How long the pooler check waits for its second session. A session pool whose sessions are
/// all taken (by replicas that each hold one while they wait) queues the request: waiting
/// longer while holding a session would deadlock them until a bound broke it.
const SECOND_SESSION: Duration = Duration::from_secs(2);

/// What the pooler check found.
pub enum PoolerCheck {
    /// A session of its own, as native migrations need.
    SessionOfItsOwn,
    /// No second session within [`SECOND_SESSION`]: a full session pool (a transaction
    /// pooler serves a new session's query as soon as any transaction ends).
    NoSecondSession,
}

/// A second session, opened beside the migration session and closed at once: with both, a
/// transaction pooler shows (see `pooler.rs`); the lock then goes on the migration session.
/// sqlx's migrator prepares each statement in one round trip and runs it in the next, outside
/// any transaction, and a transaction pooler may hand those two round trips to two server
/// connections: refuse (78) and name the fix, rather than fail by chance.
pub async fn refuse_transaction_pooling(
    url: &DatabaseUrl,
    conn: &mut Connection,
) -> Result<PoolerCheck, MigrateError> {
    if !url.driver().has_transaction_poolers() {
        return Ok(PoolerCheck::SessionOfItsOwn);
    }
    // A session pooler hands out a client session at once and queues its first query for a
    // server connection: the second session counts as had once it has answered.
    const CONNECTING: &str = "connecting beside the migration session";
    let second = async {
        let mut conn = url.connect().await?;
        conn.backend_id().await?;
        Ok::<_, sqlx::Error>(conn)
    };
    let Ok(connected) = tokio::time::timeout(SECOND_SESSION, second).await else {
        return Ok(PoolerCheck::NoSecondSession);
    };
    let mut lock_session = connected.map_err(|e| MigrateError::unavailable(CONNECTING, e))?;
    const CHECKING: &str = "checking for a pooler";
    let seen = bounded(
        CHECKING,
        pooler::transaction_pooling(conn, &mut lock_session),
    )
    .await?
    .map_err(|e| MigrateError::unavailable(CHECKING, e))?;
    let _ = bounded("closing the pooler check's session", lock_session.close()).await;
    let Some(seen) = seen else {
        return Ok(PoolerCheck::SessionOfItsOwn);
    };
    Err(MigrateError::Misconfigured(format!(
        "{} goes through a transaction pooler ({seen}): native migrations need a session of \
         their own, so roadie does not migrate through it; give the direct URL with \
         --migrate-database-url (ROADIE_MIGRATE_DATABASE_URL), or use session pooling",
        url.whereabouts()
    )))
}

/// The migration session: the wait stage's connection when it still answers, else a new one.
/// With `ddl_lock_timeout`, `lock_timeout` is a startup option of a new session (never the
/// handed-on one): a migration's own `RESET lock_timeout` or `RESET ALL` returns to the
/// session's default, which a startup option sets, where a `SET` would be wiped.
pub async fn migration_session(
    url: &DatabaseUrl,
    reused: Option<Connection>,
    ddl_lock_timeout: Option<Duration>,
) -> Result<Connection, MigrateError> {
    let startup_lock_timeout = ddl_lock_timeout.filter(|_| url.driver().has_lock_timeout());
    let reused = match (reused, startup_lock_timeout) {
        (Some(conn), Some(_)) => {
            let _ = bounded("closing the wait stage's session", conn.close()).await;
            None
        }
        (reused, _) => reused,
    };
    let alive = bounded(
        "checking the wait stage's session",
        Connection::if_alive(reused),
    )
    .await
    .ok()
    .flatten();
    let conn = match alive {
        Some(conn) => conn,
        None => {
            let settings: Vec<(&str, String)> = startup_lock_timeout
                .map(|t| ("lock_timeout", format!("{}ms", t.as_millis().max(1))))
                .into_iter()
                .collect();
            bounded(
                "connecting to migrate",
                url.connect_with_settings(&settings),
            )
            .await?
            .map_err(|e| MigrateError::unavailable("connecting to migrate", e))?
        }
    };
    Ok(conn)
}

/// Has the server give up on the migration session should roadie's host vanish, and check
/// every second whether the client of a running statement is still there: if roadie dies
/// mid-statement, the server would otherwise notice only when it next writes to the socket,
/// and a long statement would keep its transaction (and the next replica waiting) until then
/// (PostgreSQL 14+; an older server refuses the setting, which costs only that). Session
/// settings: only once the session is known not to be a transaction pooler's.
pub async fn keep_checking_the_client(conn: &mut Connection) {
    if let Ok(Err(e)) = bounded(
        "setting up the migration session",
        conn.bound_against_vanishing(true),
    )
    .await
    {
        tracing::debug!("the migration session keeps the server's defaults: {e}");
    }
}
