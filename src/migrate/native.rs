//! Native migrations: a sqlx-format folder run by sqlx's own `Migrator` (same table, SHA-384
//! checksums, file names, `-- no-transaction`, dirty/missing/mismatch checks), so a service
//! running `sqlx::migrate!()` on the same database and roadie agree in both directions. roadie
//! adds what the library lacks: its lock is taken before the table is created and released on
//! every path, a stop cancels the running statement, and failures name the file and line
//! (`native/folder.rs`); a migration that times out on a table lock is retried
//! (`native/attempt.rs`); the watch beside the run ends it (69) when the database stops
//! answering. It never waits on the database without a bound of its own.

mod attempt;
mod folder;
mod session;

use std::time::{Duration, Instant};

use attempt::Attempt;
pub use folder::Folder;

use super::lock::{self, Acquired};
use super::watch::{Watch, Watched};
use super::{DdlLimits, Locking, MigrateError, Summary, bounded};
use crate::database::lock::{MigrationLock, Scope};
use tracing::debug;

use crate::database::{Connection, DatabaseUrl};
use crate::supervise::Supervision;

/// Runs the folder's pending migrations under the lock; a stop signal cancels the running
/// statement (its transaction rolls back) and waits up to `grace` for it to end. With
/// `ddl.lock_timeout`, a migration that times out waiting for a table lock is rolled back and
/// retried from its start (see `run_one`). With `keep_lock` (hooks must run under it next) the
/// lock is taken even when nothing is pending, and handed back held.
pub async fn run(
    folder: &Folder,
    url: &DatabaseUrl,
    reused: Option<Connection>,
    locking: Locking,
    grace: Duration,
    supervision: &Supervision,
) -> Result<(Summary, Option<MigrationLock>), MigrateError> {
    let (keep_lock, ddl) = (locking.keep, locking.ddl);
    let mut conn = session::migration_session(url, reused, ddl.lock_timeout).await?;
    // Fast path, without the lock: nothing pending means nothing to serialise. No table yet
    // is an error here, and means "pending".
    if !keep_lock {
        match bounded(READING, conn.applied_migrations()).await? {
            Ok(applied) if folder.pending(&applied)?.is_empty() => {
                let _ = bounded("closing the migration session", conn.close()).await;
                let summary = Summary::UpToDate {
                    lock_waited: None,
                    for_hooks: false,
                };
                return Ok((summary, None));
            }
            Ok(_) => {}
            Err(e) => debug!("{e}; on to the lock"),
        }
    }
    session::ready_for_the_lock(url, &mut conn).await?;
    // The lock goes on the migration session itself (session-scoped): its loss ends the run.
    let done_elsewhere = async |lock: &mut MigrationLock| {
        let Some(conn) = lock.connection().filter(|_| !keep_lock) else {
            return false;
        };
        matches!(bounded(READING, conn.applied_migrations()).await, Ok(Ok(applied)) if folder.pending(&applied).is_ok_and(|p| p.is_empty()))
    };
    let acquired = supervision
        .until_stopped(lock::acquire_unless_done(
            url,
            Some(conn),
            Scope::Session,
            locking.timeout,
            done_elsewhere,
        ))
        .await??;
    let (mut lock, waited) = match acquired {
        Acquired::Held(lock, waited) => (lock, waited),
        Acquired::NotNeeded(waited) => {
            let summary = Summary::UpToDate {
                lock_waited: Some(waited),
                for_hooks: false,
            };
            return Ok((summary, None));
        }
    };
    let run = LockedRun {
        folder,
        url,
        waited,
        for_hooks: keep_lock,
        ddl,
        grace,
        supervision,
    };
    let outcome = run.migrate(&mut lock).await;
    if let Err(MigrateError::Unavailable { .. } | MigrateError::Stopped(_)) = &outcome {
        // The database stopped answering: a goodbye would wait for it too. Dropped, the
        // socket closes here; the server frees the lock and rolls back once its keepalives
        // give up on it (5 s + 3 x 2 s), or at once when the socket's end reaches it.
        drop(lock);
        return outcome.map(|summary| (summary, None));
    }
    match outcome {
        Ok(summary) if keep_lock => Ok((summary, Some(lock))),
        outcome => {
            let _ = bounded("releasing the migration lock", lock.release()).await;
            outcome.map(|summary| (summary, None))
        }
    }
}

const READING: &str = "reading _sqlx_migrations";

/// What a run under the lock needs besides its sessions.
struct LockedRun<'a> {
    folder: &'a Folder,
    url: &'a DatabaseUrl,
    /// How long the lock was waited for, for the summary.
    waited: Duration,
    /// `--locked-hooks`: the lock was taken without reading the history table first.
    for_hooks: bool,
    ddl: DdlLimits,
    grace: Duration,
    supervision: &'a Supervision,
}

impl LockedRun<'_> {
    /// Applies what is pending, one migration at a time, watched.
    async fn migrate(&self, lock: &mut MigrationLock) -> Result<Summary, MigrateError> {
        let (folder, waited) = (self.folder, self.waited);
        let conn = lock
            .connection()
            .expect("UNWRAP: a native run holds its lock on its migration session");
        // Again, under the lock: the replica that waited usually finds the work done.
        let created = bounded("creating _sqlx_migrations", conn.ensure_migrations_table()).await?;
        created.map_err(|e| MigrateError::unavailable("creating _sqlx_migrations", e))?;
        let applied = bounded(READING, conn.applied_migrations()).await?;
        let pending =
            folder.pending(&applied.map_err(|e| MigrateError::unavailable(READING, e))?)?;
        if pending.is_empty() {
            // With --locked-hooks the lock was taken without looking first: say why it was.
            return Ok(Summary::UpToDate {
                lock_waited: Some(waited),
                for_hooks: self.for_hooks,
            });
        }
        const ASKING: &str = "asking for the session's id";
        let backend = bounded(ASKING, conn.backend_id()).await?;
        let backend = backend.map_err(|e| MigrateError::unavailable(ASKING, e))?;
        let mut watch = self.watch(backend).await;
        let started = Instant::now();
        // One migration at a time (sqlx's Migrator over the folder up to it), so that what the
        // server says during it (a NOTICE) names the migration it came from, and a lock timeout
        // retries that migration alone.
        let mut attempt = Attempt {
            folder,
            pending: &pending,
            lock,
            backend,
            watch: &mut watch,
            grace: self.grace,
            supervision: self.supervision,
        };
        let mut outcome = Ok(());
        for &version in &pending {
            outcome = attempt.run_one(version, self.ddl).await;
            if outcome.is_err() {
                break;
            }
        }
        // A database that stopped answering gets no goodbye: it would wait for the network.
        let gone = matches!(outcome, Err(MigrateError::Unavailable { .. }));
        if let (Some(watch), false) = (watch, gone) {
            watch.close().await;
        }
        outcome?;
        Ok(Summary::Applied {
            count: pending.len(),
            took: started.elapsed(),
            lock_waited: waited,
        })
    }

    /// The watch beside the run: it names a blocker of the migration and cancels its
    /// statement on a stop. Not needed for safety (the lock is the migration session's, and
    /// that session's socket notices silence by itself), so it is had only when a session can
    /// be had at once: behind a session pool that waiting replicas fill, asking for a second
    /// session while holding the lock would deadlock until a bound broke it.
    async fn watch(&self, backend: i64) -> Option<Watch> {
        let opened = tokio::time::timeout(
            WATCH_CONNECT,
            Watch::open(self.url, Watched::Native { backend }, self.ddl.lock_timeout),
        )
        .await;
        match opened {
            Ok(Ok(Some(Ok(watch)))) => Some(watch),
            Ok(Ok(None)) => None,
            Ok(Ok(Some(Err(e)))) => {
                debug!("no watch session beside the migration: {e}");
                None
            }
            Ok(Err(e)) => {
                debug!(
                    "no watch session beside the migration: {}",
                    crate::logging::one_line(&e)
                );
                None
            }
            Err(_) => {
                debug!(
                    "no watch session beside the migration within {}s (a full pool?)",
                    WATCH_CONNECT.as_secs()
                );
                None
            }
        }
    }
}

/// How long the optional watch session may take to open.
const WATCH_CONNECT: Duration = Duration::from_secs(2);
