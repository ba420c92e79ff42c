//! `--wait-for-schema`: instead of migrating, poll the history tables until the database has
//! everything this image's migrations would apply (another process migrates it).

use std::time::{Duration, Instant};

use tracing::info;

use super::at_head::{Reading, Scripts};
use super::native::Folder;
use super::{MigrateError, Plan, Summary};
use crate::database::{Connection, DatabaseUrl};
use crate::supervise::Supervision;

/// Polls are this far apart: the app starts within about this long of the last migration
/// committing, and each poll is one small query.
const POLL: Duration = Duration::from_millis(50);
/// While waiting, one progress line this often.
const REPORT_EVERY: Duration = Duration::from_secs(3);

/// What the database still lacks, for the progress line; empty when it has everything. A
/// state that waiting cannot fix (a changed file, a revision this image does not know) is an
/// error.
pub type Missing = Result<Vec<String>, MigrateError>;

/// Polls `missing` in `url`'s database until it is empty, a stop signal comes, or `timeout`
/// passes (69 naming the database and what it still lacks).
pub async fn wait_until_current(
    url: &DatabaseUrl,
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
                    database: url.to_string(),
                });
            }
            if now >= next_report {
                info!(
                    "waiting for the schema of {url} ({:.1}s of {}): missing {}",
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
    Connection::reused_or_opened(url, reused)
        .await
        .map_err(|e| MigrateError::unavailable("connecting", e))
}

/// The successful native migrations the database has recorded.
async fn native_applied(conn: &mut Connection) -> Result<Vec<(i64, Vec<u8>)>, MigrateError> {
    conn.native_applied()
        .await
        .map_err(|e| MigrateError::unavailable("reading _sqlx_migrations", e))
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
            let folder = Folder::read(dir, url.driver())?;
            let missing =
                async |conn: &mut Connection| folder.missing(&native_applied(conn).await?);
            wait_until_current(url, &mut conn, timeout, supervision, missing).await?
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
            wait_until_current(url, &mut conn, timeout, supervision, missing).await?
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
