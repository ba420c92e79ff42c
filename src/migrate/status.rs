//! `roadie migrate status`: each migration of the folder and of the history table, as a table
//! on stdout or, with `--json`, one JSON array for scripts.

use std::io::Write as _;

use sqlx::Row;
use tokio::runtime::Runtime;

use super::native::Folder;
use super::{MigrateError, Plan};
use crate::database::{Connection, DatabaseUrl, Kind, on_each_driver};

/// Prints the status of `plan`'s migrations.
pub fn show(
    runtime: &Runtime,
    url: &DatabaseUrl,
    plan: &Plan,
    json: bool,
) -> Result<(), MigrateError> {
    let dir = match plan {
        Plan::Native(dir) => dir,
        Plan::Command(program) => {
            println!(
                "migrations run by {:?}: their status belongs to that tool (e.g. `alembic current`)",
                program.display_name()
            );
            return Ok(());
        }
        Plan::Skip(why) => {
            println!(
                "no native migrations to show: {}",
                why.as_deref().unwrap_or("none configured")
            );
            return Ok(());
        }
    };
    let folder = Folder::read(dir, url.kind())?;
    let rows = runtime.block_on(status(&folder, url))?;
    let mut out = std::io::stdout().lock();
    // stdout closed early (`| head`) is the reader's choice, not an error of roadie's.
    let _ = if json {
        writeln!(out, "{}", as_json(&rows))
    } else {
        write!(out, "{}", as_table(&rows))
    };
    Ok(())
}

fn as_json(rows: &[Status]) -> serde_json::Value {
    rows.iter()
        .map(|r| {
            serde_json::json!({
                "version": r.version,
                "description": r.description,
                "status": r.state,
                "installed_on": r.installed_on,
                "execution_ms": r.execution_ms,
                "file": r.file,
            })
        })
        .collect()
}

fn as_table(rows: &[Status]) -> String {
    let mut text = format!(
        "{:<16} {:<18} {:<30} {:>12}  description\n",
        "version", "status", "installed on", "took"
    );
    for r in rows {
        text.push_str(&format!(
            "{:<16} {:<18} {:<30} {:>12}  {}\n",
            r.version,
            r.state,
            r.installed_on.as_deref().unwrap_or("-"),
            r.execution_ms
                .map_or("-".into(), |ms| format!("{ms:.1} ms")),
            r.description
        ));
    }
    text
}

/// One row of `_sqlx_migrations`.
struct Recorded {
    version: i64,
    description: String,
    installed_on: String,
    success: bool,
    checksum: Vec<u8>,
    execution_ns: i64,
}

/// What `roadie migrate status` shows for one migration.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub version: i64,
    pub description: String,
    /// applied, pending, checksum mismatch, missing (applied, file gone), partially applied
    pub state: &'static str,
    pub installed_on: Option<String>,
    pub execution_ms: Option<f64>,
    pub file: Option<String>,
}

/// Every migration of the folder and of the history table, merged.
async fn status(folder: &Folder, url: &DatabaseUrl) -> Result<Vec<Status>, MigrateError> {
    // A plain session: nothing set on it that a pooler's server connection would keep.
    let mut conn = url
        .connect()
        .await
        .map_err(|e| MigrateError::Unavailable(format!("connecting: {e}")))?;
    // No table yet: everything is pending.
    let recorded = history(&mut conn).await.unwrap_or_default();
    conn.close().await;
    let mut rows: Vec<Status> = folder
        .ups()
        .map(|m| {
            let r = recorded.iter().find(|r| r.version == m.version);
            Status {
                version: m.version,
                description: m.description.to_string(),
                state: match r {
                    None => "pending",
                    Some(r) if !r.success => "partially applied",
                    Some(r) if r.checksum != *m.checksum => "checksum mismatch",
                    Some(_) => "applied",
                },
                installed_on: r.map(|r| r.installed_on.clone()),
                execution_ms: r
                    .filter(|r| r.execution_ns >= 0)
                    .map(|r| r.execution_ns as f64 / 1e6),
                file: Some(folder.file_of(m.version)),
            }
        })
        .collect();
    for r in recorded
        .iter()
        .filter(|r| !folder.ups().any(|m| m.version == r.version))
    {
        rows.push(Status {
            version: r.version,
            description: r.description.clone(),
            state: "missing",
            installed_on: Some(r.installed_on.clone()),
            execution_ms: (r.execution_ns >= 0).then(|| r.execution_ns as f64 / 1e6),
            file: None,
        });
    }
    rows.sort_by_key(|s| s.version);
    Ok(rows)
}

/// Every row of the history table. Postgres: as one simple query, which a transaction pooler
/// carries like any other (sqlx would name a prepared statement and leave it on the server
/// connection); its rows come as text.
#[cfg(feature = "postgres")]
async fn history_simply(
    c: &mut sqlx::postgres::PgConnection,
) -> Result<Vec<Recorded>, sqlx::Error> {
    let rows = sqlx::raw_sql(
        "SELECT version::text, description, installed_on::text, success::text, \
                encode(checksum, 'hex'), execution_time::text \
         FROM _sqlx_migrations ORDER BY version",
    )
    .fetch_all(c)
    .await?;
    let number = |text: String| {
        text.parse::<i64>()
            .map_err(|_| sqlx::Error::Protocol(format!("_sqlx_migrations holds {text:?}")))
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

/// Every row of the history table.
// A Postgres-only build has one driver: its `if let` always matches.
#[cfg_attr(
    not(any(feature = "mysql", feature = "sqlite")),
    allow(irrefutable_let_patterns)
)]
async fn history(conn: &mut Connection) -> Result<Vec<Recorded>, sqlx::Error> {
    #[cfg(feature = "postgres")]
    if let Connection::Postgres(c) = conn {
        return history_simply(c).await;
    }
    // Each database spells "the timestamp as text" its own way.
    let installed_on = match conn.kind() {
        Kind::Postgres => "installed_on::text",
        Kind::MySql => "CAST(installed_on AS CHAR)",
        Kind::Sqlite => "CAST(installed_on AS TEXT)",
    };
    let sql = format!(
        "SELECT version, description, {installed_on}, success, checksum, execution_time \
         FROM _sqlx_migrations ORDER BY version"
    );
    let sql = sqlx::AssertSqlSafe(sql);
    let rows = on_each_driver!(conn, c => {
        sqlx::query(sql)
            .fetch_all(c)
            .await?
            .into_iter()
            .map(|r| Recorded {
                version: r.get(0),
                description: r.get(1),
                installed_on: r.get(2),
                success: r.get(3),
                checksum: r.get(4),
                execution_ns: r.get(5),
            })
            .collect()
    });
    Ok(rows)
}
