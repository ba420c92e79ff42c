//! What the database has of the migrations this image knows, read without a session state (one
//! simple query each, so it works through a transaction pooler): the native folder's history
//! table and alembic's version table. `--wait-for-schema` polls it instead of migrating.

use std::fmt;
use std::time::{Duration, Instant};

use sqlx::Row;
use tracing::info;

use super::at_head::{Reading, Scripts};
use super::native::Folder;
use super::{MigrateError, Plan, Summary};
use crate::database::{Connection, DatabaseUrl, on_each_driver};
use crate::supervise::Supervision;

/// Polls are this far apart: the app starts within about this long of the last migration
/// committing, and each poll is one small query.
const POLL: Duration = Duration::from_millis(50);
/// While waiting, one progress line this often.
const REPORT_EVERY: Duration = Duration::from_secs(3);

/// `[SCHEMA.]NAME` of alembic's version table (`--alembic-version-table`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionTable {
    schema: Option<String>,
    name: String,
}

impl VersionTable {
    /// Reads `[SCHEMA.]NAME`; each part a plain SQL identifier (letters, digits, `_`, not
    /// starting with a digit), since it goes into a query as it is.
    pub fn parse(text: &str) -> Result<Self, String> {
        let plain = |part: &str| {
            !part.is_empty()
                && !part.starts_with(|c: char| c.is_ascii_digit())
                && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        let (schema, name) = match text.trim().split_once('.') {
            Some((schema, name)) => (Some(schema), name),
            None => (None, text.trim()),
        };
        if !plain(name) || !schema.is_none_or(plain) {
            return Err(format!(
                "--alembic-version-table {text:?}: expected [SCHEMA.]NAME, each a plain SQL \
                 identifier (letters, digits and _)"
            ));
        }
        Ok(VersionTable {
            schema: schema.map(str::to_string),
            name: name.to_string(),
        })
    }
}

impl Default for VersionTable {
    fn default() -> Self {
        VersionTable {
            schema: None,
            name: "alembic_version".into(),
        }
    }
}

impl fmt::Display for VersionTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// The revisions in alembic's version table; none when it does not exist yet.
pub async fn alembic_revisions(
    conn: &mut Connection,
    table: &VersionTable,
) -> Result<Vec<String>, MigrateError> {
    let sql = sqlx::AssertSqlSafe(format!("SELECT version_num FROM {table}"));
    let rows: Result<Vec<String>, sqlx::Error> = on_each_driver!(conn, c => {
        sqlx::raw_sql(sql)
            .fetch_all(c)
            .await
            .map(|rows| rows.iter().filter_map(|r| r.try_get(0).ok()).collect())
    });
    match rows {
        Ok(rows) => Ok(rows),
        Err(e) if is_missing_table(&e) => Ok(Vec::new()),
        Err(e) => Err(MigrateError::Unavailable(format!("reading {table}: {e}"))),
    }
}

/// The versions and checksums in sqlx's history table, successful ones only; none when it
/// does not exist yet.
pub async fn native_applied(conn: &mut Connection) -> Result<Vec<(i64, Vec<u8>)>, MigrateError> {
    let sql = "SELECT version, checksum FROM _sqlx_migrations WHERE success ORDER BY version";
    let rows: Result<Vec<(i64, Vec<u8>)>, sqlx::Error> = on_each_driver!(conn, c => {
        sqlx::raw_sql(sql).fetch_all(c).await.map(|rows| {
            rows.iter()
                .filter_map(|r| Some((r.try_get(0).ok()?, r.try_get(1).ok()?)))
                .collect()
        })
    });
    match rows {
        Ok(rows) => Ok(rows),
        Err(e) if is_missing_table(&e) => Ok(Vec::new()),
        Err(e) => Err(MigrateError::Unavailable(format!(
            "reading _sqlx_migrations: {e}"
        ))),
    }
}

/// PostgreSQL's undefined_table, MySQL's 1146, SQLite's "no such table".
fn is_missing_table(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(d) = e else {
        return false;
    };
    matches!(d.code().as_deref(), Some("42P01") | Some("42S02"))
        || d.message().starts_with("no such table")
}

/// What the database still lacks, for the progress line; empty when it has everything. A
/// state that waiting cannot fix (a changed file, a revision this image does not know) is an
/// error.
pub type Missing = Result<Vec<String>, MigrateError>;

/// Polls `missing` until it is empty, a stop signal comes, or `timeout` passes (69 naming what
/// is still missing).
pub async fn wait_until_current(
    conn: &mut Connection,
    timeout: Duration,
    supervision: &Supervision,
    mut missing: impl AsyncFnMut(&mut Connection) -> Missing,
) -> Result<Duration, MigrateError> {
    let started = Instant::now();
    let mut next_report = started + REPORT_EVERY;
    let poll = async {
        loop {
            let lacking = missing(conn).await?;
            if lacking.is_empty() {
                return Ok(started.elapsed());
            }
            let now = Instant::now();
            if now >= started + timeout {
                return Err(MigrateError::SchemaNotCurrent {
                    timeout,
                    missing: lacking,
                });
            }
            if now >= next_report {
                info!(
                    "waiting for the schema ({:.1}s of {}): missing {}",
                    started.elapsed().as_secs_f64(),
                    humantime::format_duration(timeout),
                    lacking.join(", ")
                );
                next_report = now + REPORT_EVERY;
            }
            tokio::time::sleep(POLL).await;
        }
    };
    supervision.until_stopped(poll).await?
}

/// A session to read with, holding no state: the handed-on one when it still answers.
pub async fn session(
    url: &DatabaseUrl,
    reused: Option<Connection>,
) -> Result<Connection, MigrateError> {
    if let Some(conn) = Connection::if_alive(reused).await {
        return Ok(conn);
    }
    let options = url
        .connect_options()
        .map_err(|e| MigrateError::Unavailable(e.to_string()))?;
    Connection::open(&options)
        .await
        .map_err(|e| MigrateError::Unavailable(format!("connecting: {e}")))
}

/// `--wait-for-schema`: waits until the database has everything `plan` would apply; hands the
/// connection back for the lock of `--locked-hooks`.
pub async fn await_current(
    url: &DatabaseUrl,
    plan: &Plan,
    scripts: Option<&Scripts>,
    reused: Option<Connection>,
    timeout: Duration,
    supervision: &Supervision,
) -> Result<(Summary, Connection), MigrateError> {
    let mut conn = session(url, reused).await?;
    let waited = match plan {
        Plan::Native(dir) => {
            let folder = Folder::read(dir, url.kind())?;
            let missing =
                async |conn: &mut Connection| folder.missing(&native_applied(conn).await?);
            wait_until_current(&mut conn, timeout, supervision, missing).await?
        }
        Plan::Command(_) if scripts.is_some() => {
            let scripts = scripts.expect("UNWRAP: matched on is_some");
            let missing = async |conn: &mut Connection| match scripts.reading(conn).await? {
                Reading::AtHead(_) => Ok(Vec::new()),
                Reading::Pending(revisions) if revisions.is_empty() => {
                    Ok(vec![format!("the rows of {} to settle", scripts.table())])
                }
                Reading::Pending(revisions) => Ok(revisions
                    .iter()
                    .map(|r| format!("alembic revision {r}"))
                    .collect()),
            };
            wait_until_current(&mut conn, timeout, supervision, missing).await?
        }
        // Config accepts a command only when it is alembic upgrade head.
        _ => {
            return Err(MigrateError::Misconfigured(
                "--wait-for-schema: roadie cannot read the alembic project of the migration \
                 command without Python (the line above says why)"
                    .into(),
            ));
        }
    };
    Ok((Summary::Awaited { waited }, conn))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("alembic_version", "alembic_version")]
    #[case("tenant.alembic_version", "tenant.alembic_version")]
    #[case(" app_versions ", "app_versions")]
    fn reads_version_tables(#[case] text: &str, #[case] shown: &str) {
        assert_eq!(VersionTable::parse(text).unwrap().to_string(), shown);
    }

    #[rstest]
    #[case("")]
    #[case("a.b.c")]
    #[case("1table")]
    #[case("alembic_version; DROP TABLE users")]
    #[case("\"quoted\"")]
    #[case(".name")]
    fn refuses_what_is_not_a_plain_table_name(#[case] text: &str) {
        let err = VersionTable::parse(text).unwrap_err();
        assert!(err.starts_with("--alembic-version-table"), "{err}");
    }
}
