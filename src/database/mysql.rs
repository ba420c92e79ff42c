//! MySQL's and MariaDB's SQL and decisions, written once: the session id, cancelling a query,
//! `GET_LOCK` with sqlx's name, its holder from the processlist, `@@read_only`.

use sqlx::Row;
use sqlx::mysql::MySqlConnection;

use super::sqlx_shared::sqlx_key;

/// The server's id for this session (`CONNECTION_ID()`).
pub async fn backend_id(conn: &mut MySqlConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar::<_, u64>("SELECT CONNECTION_ID()")
        .fetch_one(conn)
        .await
        .map(|id| id as i64)
}

/// Cancels the running statement of session `backend`.
pub async fn cancel(conn: &mut MySqlConnection, backend: i64) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("KILL QUERY {backend}")))
        .execute(conn)
        .await
        .map(drop)
}

/// Why the server cannot take writes, when it cannot (`super_read_only` implies `read_only`).
pub async fn read_only(conn: &mut MySqlConnection) -> Result<Option<&'static str>, sqlx::Error> {
    let read_only: i64 = sqlx::raw_sql("SELECT CAST(@@global.read_only AS SIGNED)")
        .fetch_one(conn)
        .await?
        .try_get(0)?;
    Ok((read_only != 0).then_some("read-only (@@read_only is ON)"))
}

/// The lock's name in this session's database: sqlx's key, in hex.
pub async fn lock_name(conn: &mut MySqlConnection) -> Result<String, sqlx::Error> {
    let database: String = sqlx::query_scalar("SELECT DATABASE()")
        .fetch_one(conn)
        .await?;
    Ok(format!("{:x}", sqlx_key(&database)))
}

/// Tries `GET_LOCK(name)` once, without waiting.
pub async fn try_lock(conn: &mut MySqlConnection, name: &str) -> Result<bool, sqlx::Error> {
    let got: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, 0)")
        .bind(name)
        .fetch_one(conn)
        .await?;
    Ok(got == Some(1))
}

/// Who holds lock `name`: the connection id, and with the PROCESS privilege (another user's
/// session shows in the processlist only then) user, host and how long in its state.
pub async fn lock_holder(conn: &mut MySqlConnection, name: &str) -> Option<String> {
    let id: Option<i64> = sqlx::query_scalar("SELECT IS_USED_LOCK(?)")
        .bind(name)
        .fetch_one(&mut *conn)
        .await
        .ok()?;
    let id = id?;
    let row =
        sqlx::query("SELECT USER, HOST, TIME FROM information_schema.PROCESSLIST WHERE ID = ?")
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

/// Releases lock `name`.
pub async fn unlock(conn: &mut MySqlConnection, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT RELEASE_LOCK(?)")
        .bind(name)
        .execute(conn)
        .await
        .map(drop)
}
