//! PostgreSQL's SQL and decisions, written once. Everything is a simple query (`raw_sql`): a
//! transaction pooler may sit in front of the server before roadie knows, and sqlx names
//! every prepared statement it makes and never closes it, so one would stay on the pooler's
//! server connection after roadie is gone. A simple query's row comes back as text.

use sqlx::Row;
use sqlx::migrate::AppliedMigration;
use sqlx::postgres::PgConnection;

use super::sqlx_shared::{MIGRATIONS_TABLE, Recorded, sqlx_key};

/// How soon the server gives up on a session of roadie's whose host vanished: keepalives on
/// an idle socket (5 s, then 3 probes 2 s apart), and `tcp_user_timeout` (PostgreSQL 12+) for
/// a socket with a reply in flight, which keepalives never probe (the kernel would retransmit
/// it for 15 minutes). The last setting an old server refuses costs only itself and the next.
pub const SERVER_BOUNDS: &str = "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; \
     SET tcp_keepalives_count = 3; SET tcp_user_timeout = 11000";

/// The server checks every second whether the client of a running statement is still there
/// (PostgreSQL 14+): if roadie dies mid-statement, the server would otherwise notice only when
/// it next writes to the socket, and a long statement would keep its transaction (and the
/// next replica waiting) until then.
pub const CLIENT_CHECK: &str = "SET client_connection_check_interval = '1s'";

/// The first column (as text) of the last row a simple query returns: one message, one round
/// trip, no prepared statement.
pub async fn simple_scalar(
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

/// A number a simple query returned as text.
fn number<T: std::str::FromStr>(text: Option<String>, what: &str) -> Result<T, sqlx::Error> {
    text.as_deref()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| sqlx::Error::Protocol(format!("{what} gave {text:?}")))
}

/// The server's id for this session (`pg_backend_pid()`).
pub async fn backend_id(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    let pid = simple_scalar(conn, "SELECT pg_backend_pid()::text").await?;
    number(pid, "pg_backend_pid()")
}

/// `server_version_num` (150010 for 15.10).
pub async fn server_version(conn: &mut PgConnection) -> Result<i32, sqlx::Error> {
    let version = simple_scalar(conn, "SELECT current_setting('server_version_num')").await?;
    number(version, "server_version_num")
}

/// Cancels the running statement of session `backend` (its transaction rolls back).
pub async fn cancel(conn: &mut PgConnection, backend: i64) -> Result<(), sqlx::Error> {
    simple_scalar(conn, &format!("SELECT pg_cancel_backend({backend})::text"))
        .await
        .map(drop)
}

/// The columns `pg_stat_activity` says of a blocker, in [`describe_blocker`]'s order.
const BLOCKER_COLUMNS: &str = "b.pid::text, b.application_name, b.state, \
     to_char(b.query_start, 'YYYY-MM-DD HH24:MI:SS TZ'), left(b.query, 200)";

/// Who blocks session `backend` now, if anyone.
pub async fn blocker_of(
    conn: &mut PgConnection,
    backend: i64,
) -> Result<Option<String>, sqlx::Error> {
    blocker(
        conn,
        &format!(
            "SELECT {BLOCKER_COLUMNS} FROM pg_stat_activity b \
             WHERE b.pid = ANY(pg_blocking_pids({backend}::int)) \
             ORDER BY b.query_start NULLS LAST LIMIT 1"
        ),
    )
    .await
}

/// Who blocks a session named `application` that waits for a lock, if anyone.
pub async fn blocker_of_application(
    conn: &mut PgConnection,
    application: &str,
) -> Result<Option<String>, sqlx::Error> {
    let name = application.replace('\'', "''");
    blocker(
        conn,
        &format!(
            "SELECT {BLOCKER_COLUMNS} FROM pg_stat_activity w \
             JOIN pg_stat_activity b ON b.pid = ANY(pg_blocking_pids(w.pid)) \
             WHERE w.application_name = '{name}' AND w.wait_event_type = 'Lock' \
             ORDER BY b.query_start NULLS LAST LIMIT 1"
        ),
    )
    .await
}

async fn blocker(conn: &mut PgConnection, sql: &str) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_optional(conn)
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let text = |i: usize| row.try_get::<Option<String>, _>(i).ok().flatten();
    let pid: i32 = number(text(0), "pg_stat_activity.pid")?;
    Ok(Some(describe_blocker(
        pid,
        text(1),
        text(2),
        text(3),
        text(4),
    )))
}

/// `pid 4242 (application "psql", idle in transaction, query started 2026-...: "SELECT * FROM
/// orders ...")`: the query's first words only, as the rest may hold secrets.
pub fn describe_blocker(
    pid: i32,
    application: Option<String>,
    state: Option<String>,
    since: Option<String>,
    query: Option<String>,
) -> String {
    let mut details = Vec::new();
    if let Some(app) = application.filter(|a| !a.is_empty()) {
        details.push(format!("application {app:?}"));
    }
    if let Some(state) = state {
        details.push(state);
    }
    if let Some(since) = since {
        details.push(format!("query started {since}"));
    }
    let mut text = format!("pid {pid}");
    if !details.is_empty() {
        text.push_str(&format!(" ({}", details.join(", ")));
        // Another role's session shows this instead of its query, unless roadie's role may
        // read all statistics (pg_read_all_stats).
        let visible = query.filter(|q| !q.starts_with("<insufficient privilege>"));
        if let Some(words) = visible.as_deref().and_then(first_words) {
            text.push_str(&format!(": {words:?}"));
        }
        text.push(')');
    }
    text
}

/// The first three words of a query, at most 40 characters, with `...` when there is more.
fn first_words(query: &str) -> Option<String> {
    let words: Vec<&str> = query.split_whitespace().collect();
    if words.is_empty() {
        return None;
    }
    let mut shown: String = words[..words.len().min(3)].join(" ");
    let mut cut = words.len() > 3;
    if shown.chars().count() > 40 {
        shown = shown.chars().take(40).collect();
        cut = true;
    }
    if cut {
        shown.push_str(" ...");
    }
    Some(shown)
}

/// What a `-- no-transaction` migration could leave behind: a digest of the schema's
/// relations, column counts, index validity and constraints; and the indexes already INVALID.
pub async fn catalog(conn: &mut PgConnection) -> Result<(String, Vec<String>), sqlx::Error> {
    let row = sqlx::raw_sql(
        "SELECT md5(coalesce(string_agg(c.oid::text || ':' || c.relkind::text || ':' || c.relnatts::text \
                    || ':' || coalesce(i.indisvalid::text, '-'), ',' ORDER BY c.oid), '') \
                    || ':' || (SELECT count(*) FROM pg_constraint)), \
                coalesce(string_agg(c.oid::regclass::text, E'\\n' ORDER BY c.oid) \
                         FILTER (WHERE NOT i.indisvalid), '') \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         LEFT JOIN pg_index i ON i.indexrelid = c.oid \
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') \
           AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'",
    )
    .fetch_one(conn)
    .await?;
    let digest: String = row.try_get(0)?;
    let invalid: String = row.try_get(1)?;
    let invalid = invalid
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    Ok((digest, invalid))
}

/// What sqlx's `list_applied_migrations` reads, as one simple query.
pub async fn applied(conn: &mut PgConnection) -> Result<Vec<AppliedMigration>, sqlx::Error> {
    let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SELECT version::text, encode(checksum, 'hex') FROM {MIGRATIONS_TABLE} ORDER BY version"
    )))
    .fetch_all(conn)
    .await?;
    let bad = |what: &str| sqlx::Error::Protocol(format!("{MIGRATIONS_TABLE} holds {what}"));
    rows.iter()
        .map(|row| {
            let version: String = row.try_get(0)?;
            let checksum: String = row.try_get(1)?;
            let bytes = (0..checksum.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(checksum.get(i..i + 2).unwrap_or("x"), 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| bad("a checksum that is not hex"))?;
            Ok(AppliedMigration {
                version: version
                    .parse()
                    .map_err(|_| bad("a version that is not a number"))?,
                checksum: bytes.into(),
            })
        })
        .collect()
}

/// Every row of the history table, for `migrate status`.
pub async fn history(conn: &mut PgConnection) -> Result<Vec<Recorded>, sqlx::Error> {
    let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SELECT version::text, description, installed_on::text, success::text, \
                encode(checksum, 'hex'), execution_time::text \
         FROM {MIGRATIONS_TABLE} ORDER BY version"
    )))
    .fetch_all(conn)
    .await?;
    let number = |text: String| {
        text.parse::<i64>()
            .map_err(|_| sqlx::Error::Protocol(format!("{MIGRATIONS_TABLE} holds {text:?}")))
    };
    rows.into_iter()
        .map(|r| {
            let hex: String = r.try_get(4)?;
            Ok(Recorded {
                version: number(r.try_get(0)?)?,
                description: r.try_get(1)?,
                installed_on: r.try_get(2)?,
                success: r.try_get::<String, _>(3)? == "true",
                checksum: (0..hex.len())
                    .step_by(2)
                    .filter_map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                    .collect(),
                execution_ns: number(r.try_get(5)?)?,
            })
        })
        .collect()
}

/// Whether the server is in recovery (a standby) and whether it is read-only.
pub async fn recovery_state(conn: &mut PgConnection) -> Result<(bool, bool), sqlx::Error> {
    let row =
        sqlx::raw_sql("SELECT pg_is_in_recovery()::text, current_setting('transaction_read_only')")
            .fetch_one(conn)
            .await?;
    let (recovery, read_only): (String, String) = (row.try_get(0)?, row.try_get(1)?);
    Ok((recovery == "true", read_only == "on"))
}

/// Why the server cannot take writes, when it cannot.
pub async fn read_only(conn: &mut PgConnection) -> Result<Option<&'static str>, sqlx::Error> {
    Ok(match recovery_state(conn).await? {
        (true, _) => Some("a read-only standby (pg_is_in_recovery() is true)"),
        (false, true) => Some("read-only (transaction_read_only is on)"),
        (false, false) => None,
    })
}

/// The lock's key in this session's database: sqlx's.
pub async fn lock_key(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    let database = simple_scalar(conn, "SELECT current_database()::text").await?;
    Ok(sqlx_key(&database.unwrap_or_default()))
}

/// Tries the transaction-scoped advisory lock `key` once.
///
/// One simple query, so one round trip and one server connection even through a transaction
/// pooler. READ COMMITTED explicitly: a role or server whose default_transaction_isolation is
/// repeatable read would keep a snapshot for the whole migration, and a CREATE INDEX
/// CONCURRENTLY would wait for it. SET LOCAL: the name (for the holder report) and the
/// keepalives (a lock held by a host that vanished is freed within about 5 + 2 * 3 s) end with
/// the transaction; no idle_in_transaction_session_timeout may end it under a long migration.
pub async fn try_lock(conn: &mut PgConnection, key: i64) -> Result<bool, sqlx::Error> {
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
            // Not taken (or failed): end the transaction, so a waiting replica pins no
            // server connection between polls.
            let ended = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
            got?;
            ended?;
            Ok(false)
        }
    }
}

/// Who holds advisory lock `key`: pid, user, application, address and since when. Another
/// role's session shows only pid, user and application_name unless roadie's role may read all
/// statistics: the rest is NULL then.
pub async fn lock_holder(conn: &mut PgConnection, key: i64) -> Option<String> {
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

/// Tries the session-level advisory lock `key` once (a native run: its migrations run on this
/// session, so the lock ends with it). Named for the holder report and bounded by keepalives
/// like the transaction-scoped one.
pub async fn try_session_lock(conn: &mut PgConnection, key: i64) -> Result<bool, sqlx::Error> {
    let got = simple_scalar(
        conn,
        &format!(
            "SET application_name = 'roadie (migration lock)'; \
             SELECT pg_try_advisory_lock({key})::text"
        ),
    )
    .await?;
    Ok(got.as_deref() == Some("true"))
}

/// Releases the session-level lock `key`: false when this session did not hold it.
pub async fn session_unlock(conn: &mut PgConnection, key: i64) -> Result<(), sqlx::Error> {
    let released = simple_scalar(conn, &format!("SELECT pg_advisory_unlock({key})::text")).await?;
    match released.as_deref() {
        Some("true") => Ok(()),
        _ => Err(sqlx::Error::Protocol(
            "the session no longer held the migration lock".into(),
        )),
    }
}

/// Whether session `backend` still holds advisory lock `key` (granted): the watch's check that
/// a migration command still runs under the lock.
pub async fn still_held(
    conn: &mut PgConnection,
    backend: i64,
    key: i64,
) -> Result<bool, sqlx::Error> {
    let held = simple_scalar(
        conn,
        &format!(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted \
               AND pid = {backend} AND classid = ({key}::bigint >> 32)::oid \
               AND objid = ({key}::bigint & 4294967295)::oid AND objsubid = 1)::text"
        ),
    )
    .await?;
    Ok(held.as_deref() == Some("true"))
}

/// The sessions of this database named `application` (a migration command's, by
/// `PGAPPNAME`) that are running a statement or hold a transaction, other than this one:
/// `pid N (state, connected since ...)` each. An idle one holds nothing that could land beside
/// the next command (and a pooler's server connection keeps the last client's name while it
/// idles in the pool).
pub async fn sessions_named(
    conn: &mut PgConnection,
    application: &str,
) -> Result<Vec<String>, sqlx::Error> {
    let name = application.replace('\'', "''");
    // Inside the lock's transaction, pg_stat_activity would show the snapshot taken at its
    // first read: clear it, so every poll sees the sessions as they are now.
    let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SELECT pg_stat_clear_snapshot(); \
         SELECT pid::text, coalesce(state, '') || coalesce(', waiting for ' || wait_event, ''), \
                to_char(backend_start, 'YYYY-MM-DD HH24:MI:SS TZ') \
         FROM pg_stat_activity \
         WHERE application_name = '{name}' AND pid <> pg_backend_pid() \
           AND datname = current_database() AND state <> 'idle'"
    )))
    .fetch_all(conn)
    .await?;
    Ok(rows
        .iter()
        .filter(|r| r.len() == 3)
        .map(|r| {
            let text = |i: usize| r.try_get::<String, _>(i).unwrap_or_default();
            format!("pid {} ({}, connected since {})", text(0), text(1), text(2))
        })
        .collect())
}

/// Releases the transaction-scoped lock: it goes with the transaction.
pub async fn unlock(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::raw_sql("COMMIT").execute(conn).await.map(drop)
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::{describe_blocker, first_words};

    #[rstest]
    #[case("SELECT * FROM orders WHERE id = 1", Some("SELECT * FROM ..."))]
    #[case("  LOCK   TABLE\norders ", Some("LOCK TABLE orders"))]
    #[case("ALTER ROLE app PASSWORD 'secret'", Some("ALTER ROLE app ..."))]
    #[case(
        "SELECT pg_sleep_for_a_very_long_function_name_indeed(3600)",
        Some("SELECT pg_sleep_for_a_very_long_function ...")
    )]
    #[case("   ", None)]
    fn a_blockers_query_shows_only_its_first_words(
        #[case] query: &str,
        #[case] shown: Option<&str>,
    ) {
        assert_eq!(first_words(query).as_deref(), shown);
    }

    #[test]
    fn a_blocker_is_named_by_pid_application_state_and_query_start() {
        let text = describe_blocker(
            42,
            Some("psql".into()),
            Some("idle in transaction".into()),
            Some("2026-12-05 14:00:00 UTC".into()),
            Some("LOCK TABLE orders IN ACCESS SHARE MODE".into()),
        );
        assert_eq!(
            text,
            "pid 42 (application \"psql\", idle in transaction, query started 2026-12-05 14:00:00 UTC: \"LOCK TABLE orders ...\")"
        );
        assert_eq!(describe_blocker(7, None, None, None, None), "pid 7");
    }
}
