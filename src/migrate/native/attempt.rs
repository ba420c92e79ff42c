//! One migration of a native run, watched: a stop cancels it, a database that stops answering
//! ends it, and with `--ddl-lock-timeout` a migration that gave up waiting for a table lock is
//! rolled back and retried from its start (backoff with jitter), naming its blocker.

use std::time::Duration;

use sqlx::migrate::MigrateError as SqlxMigrateError;
use tracing::warn;

use super::folder::{Folder, committed_before};
use crate::database::lock::MigrationLock;
use crate::database::{Connection, sqlstate};
use crate::logging;
use crate::migrate::watch::{self, Watch};
use crate::migrate::{DdlLimits, MigrateError, bounded};
use crate::supervise::Supervision;

/// What running one migration needs, borrowed for the run.
pub struct Attempt<'a> {
    pub folder: &'a Folder,
    pub pending: &'a [i64],
    /// The lock, held by the session the migrations run on.
    pub lock: &'a mut MigrationLock,
    /// The migration session's server-side id, to cancel its statement or find its blockers.
    pub backend: i64,
    pub watch: &'a mut Option<Watch>,
    pub grace: Duration,
    pub supervision: &'a Supervision,
}

/// How one attempt at a migration ended, when it ended by itself.
enum AttemptEnd {
    Applied,
    /// It failed; the blocker last seen while it ran, if any.
    Failed(SqlxMigrateError, Option<String>),
}

impl Attempt<'_> {
    /// The session the migrations run on.
    fn session(&mut self) -> &mut Connection {
        self.lock
            .connection()
            .expect("UNWRAP: a native run holds its lock on its migration session")
    }

    /// Runs migration `version`; after a lock timeout (55P03), rolled back, it waits (backoff
    /// with jitter) and runs it again from its start, up to `ddl.retries` times. A `--
    /// no-transaction` migration is retried only if the catalog shows it left nothing behind.
    pub async fn run_one(&mut self, version: i64, ddl: DdlLimits) -> Result<(), MigrateError> {
        let folder = self.folder;
        let file = folder.file_of(version);
        let no_tx = folder.is_no_tx(version);
        let attempts = ddl.retries.saturating_add(1);
        for attempt in 1..=attempts {
            let before = match no_tx {
                true => catalog(self.session()).await?,
                false => None,
            };
            let (error, blocker) = match self.try_once(version, &file).await? {
                AttemptEnd::Applied => return Ok(()),
                AttemptEnd::Failed(error, blocker) => (error, blocker),
            };
            // A session that is gone says nothing more of the catalog: explain the loss.
            let lost = matches!(&error, SqlxMigrateError::ExecuteMigration(e, _) | SqlxMigrateError::Execute(e) if sqlstate::is_connection_loss(e));
            let left = match before {
                Some(before) if !lost => left_behind(self.session(), &before).await?,
                _ => None,
            };
            let timed_out = ddl.lock_timeout.filter(|_| is_lock_timeout(&error));
            let (Some(timeout), None) = (timed_out, &left) else {
                let mut error = folder.explain_run(error, self.pending);
                if let (Some(left), MigrateError::Failed { message, .. }) = (left, &mut error) {
                    message.push_str(&format!("; {left}"));
                }
                return Err(error);
            };
            let blocker = blocker.unwrap_or_else(|| "a session roadie could not see".into());
            let timeout = humantime::format_duration(timeout);
            if attempt == attempts {
                return Err(MigrateError::Failed {
                    what: format!("migration {version} ({file})"),
                    message: format!(
                        "still waiting for a table lock after {attempts} attempts of \
                         --ddl-lock-timeout {timeout} each; blocked by {blocker}; rolled back, \
                         nothing recorded{}; deploy again when the blocker is done, or end it",
                        committed_before(self.pending, version)
                    ),
                });
            }
            let pause = backoff(attempt, fastrand::f64());
            warn!(
                migration = version,
                attempt,
                "migration {version} ({file}) gave up waiting for a table lock after \
                 --ddl-lock-timeout {timeout} (attempt {attempt} of {attempts}); blocked by \
                 {blocker}; rolled back, retrying in {:.2}s",
                pause.as_secs_f64()
            );
            self.supervision
                .until_stopped(tokio::time::sleep(pause))
                .await?;
        }
        unreachable!("UNWRAP: the last attempt returns")
    }

    /// One run of the migration, watched: a stop cancels it, a database that stops answering
    /// ends it (`Unavailable`), and who blocks it is noted while it waits.
    async fn try_once(&mut self, version: i64, file: &str) -> Result<AttemptEnd, MigrateError> {
        logging::on_behalf_of(Some(format!("migration {version} ({file})")));
        let migrator = self.folder.migrator_through(version);
        let mut blocker = None;
        let conn = self
            .lock
            .connection()
            .expect("UNWRAP: a native run holds its lock on its migration session");
        let run = conn.run_migrator(&migrator);
        tokio::pin!(run);
        let outcome = tokio::select! {
            done = self.supervision.until_stopped(&mut run) => done,
            lost = watch::until_lost(self.watch.as_mut(), &mut blocker) => {
                logging::on_behalf_of(None);
                return Err(lost.during(format_args!(
                    "while running migration {version} ({file}), which is not recorded (the \
                     server rolls it back once it notices this session is gone)"
                )));
            }
        };
        logging::on_behalf_of(None);
        match outcome {
            Ok(Ok(())) => Ok(AttemptEnd::Applied),
            Ok(Err(e)) => Ok(AttemptEnd::Failed(e, blocker)),
            Err(stop) => {
                // Cancel the running statement through the watch (its transaction rolls back),
                // let it end. Without a watch the session is dropped with the stage: the server
                // checks every second that its client is there and rolls the statement back.
                if let Some(watch) = self.watch.as_mut() {
                    let _ = bounded("cancelling the migration", watch.cancel(self.backend)).await;
                    let _ = tokio::time::timeout(self.grace, &mut run).await;
                }
                Err(stop.into())
            }
        }
    }
}

/// What a `-- no-transaction` migration could leave behind, read before it runs.
pub struct Catalog {
    /// A digest of the schema's relations, column counts, index validity and constraints.
    digest: String,
    /// Indexes already INVALID.
    invalid: Vec<String>,
}

/// The catalog on the migration's own session, between attempts (PostgreSQL only).
async fn catalog(conn: &mut Connection) -> Result<Option<Catalog>, MigrateError> {
    const READING: &str = "reading the catalog";
    let read = bounded(READING, conn.catalog()).await?;
    let read = read.map_err(|e| MigrateError::unavailable(READING, e))?;
    Ok(read.map(|(digest, invalid)| Catalog { digest, invalid }))
}

/// What a failed `-- no-transaction` migration left behind, said with the fix; `None` when the
/// catalog is as it was, so running it again is safe.
async fn left_behind(
    conn: &mut Connection,
    before: &Catalog,
) -> Result<Option<String>, MigrateError> {
    let Some(after) = catalog(conn).await? else {
        return Ok(None);
    };
    let invalid: Vec<&String> = after
        .invalid
        .iter()
        .filter(|i| !before.invalid.contains(i))
        .collect();
    if let Some(first) = invalid.first() {
        let names = invalid
            .iter()
            .map(|i| i.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        return Ok(Some(format!(
            "it left index {names} INVALID (a CREATE INDEX CONCURRENTLY that did not finish): \
             drop it with `DROP INDEX CONCURRENTLY {first};` and deploy again"
        )));
    }
    Ok((after.digest != before.digest).then(|| {
        "it changed the schema before it failed, so roadie does not run it again; check the \
         schema"
            .to_string()
    }))
}

/// A migration that gave up waiting for a table lock (`lock_timeout`).
fn is_lock_timeout(error: &SqlxMigrateError) -> bool {
    matches!(error, SqlxMigrateError::ExecuteMigration(e, _) if sqlstate::is_lock_timeout(e))
}

/// The pause after attempt `attempt` (1-based) timed out: 200 ms, doubling, capped at 10 s,
/// scaled by `jitter` (0..1) into its upper half, so that retries of several replicas or
/// several blockers do not line up.
fn backoff(attempt: u32, jitter: f64) -> Duration {
    const FIRST: Duration = Duration::from_millis(200);
    const CAP: Duration = Duration::from_secs(10);
    let full = FIRST
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(16)))
        .min(CAP);
    full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use std::time::Duration;

    use super::backoff;

    #[rstest]
    #[case(1, 0.0, 100)]
    #[case(1, 1.0, 200)]
    #[case(2, 1.0, 400)]
    #[case(3, 0.5, 600)]
    #[case(6, 1.0, 6400)]
    #[case(7, 1.0, 10_000)]
    #[case(7, 0.0, 5_000)]
    #[case(40, 1.0, 10_000)]
    #[case(u32::MAX, 1.0, 10_000)]
    fn retries_back_off_doubling_to_a_cap_with_jitter_in_the_upper_half(
        #[case] attempt: u32,
        #[case] jitter: f64,
        #[case] millis: u64,
    ) {
        assert_eq!(backoff(attempt, jitter), Duration::from_millis(millis));
    }
}
