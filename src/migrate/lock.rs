//! Taking the cluster-wide migration lock (`database::lock::MigrationLock`): polls until it is
//! held, the work is found done by another replica, or `--lock-timeout` passes; says who holds
//! it meanwhile. Every query is bounded: a poll that gets no answer is a database gone (a
//! partition), not a busy lock.

use std::time::{Duration, Instant};

use tracing::info;

use super::{MigrateError, bounded};
use crate::database::lock::{MigrationLock, Scope};
use crate::database::{Connection, DatabaseUrl};

/// Polls are this far apart (plus jitter): a waiting replica notices soon after the holder is
/// done, and each poll is one or two tiny queries on idle connections.
const POLL: Duration = Duration::from_millis(50);
const POLL_JITTER: Duration = Duration::from_millis(25);
/// While waiting, say who holds the lock this often.
const REPORT_EVERY: Duration = Duration::from_secs(3);

const TAKING: &str = "taking the migration lock";

/// How waiting for the lock ended well.
pub enum Acquired {
    /// Held, after waiting this long.
    Held(MigrationLock, Duration),
    /// Another replica did the work while this one waited this long.
    NotNeeded(Duration),
}

/// Waits for the transaction-scoped lock up to `timeout`, for work only the lock holder can
/// judge (a migration command's state is its own; hooks). Returns the lock and how long it
/// waited.
pub async fn acquire(
    url: &DatabaseUrl,
    reused: Option<Connection>,
    timeout: Duration,
) -> Result<(MigrationLock, Duration), MigrateError> {
    let done_elsewhere = async |_: &mut MigrationLock| false;
    let scope = Scope::Transaction;
    match acquire_unless_done(url, reused, scope, timeout, done_elsewhere).await? {
        Acquired::Held(lock, waited) => Ok((lock, waited)),
        Acquired::NotNeeded(_) => unreachable!("UNWRAP: never done elsewhere"),
    }
}

/// Waits for the lock up to `timeout`. Between polls it asks `done_elsewhere` whether the
/// holder has already done the work (nothing pending any more): then the lock is not
/// needed, and ten replicas do not queue up to find that out one by one. The lock goes on
/// `session` (the wait stage's connection, or a native run's migration session) when it
/// still answers.
pub async fn acquire_unless_done(
    url: &DatabaseUrl,
    session: Option<Connection>,
    scope: Scope,
    timeout: Duration,
    mut done_elsewhere: impl AsyncFnMut(&mut MigrationLock) -> bool,
) -> Result<Acquired, MigrateError> {
    let started = Instant::now();
    let deadline = started + timeout;
    // (issue 13) Every query here is bounded: a poll that gets no answer is a database
    // gone (a partition), not a busy lock.
    let mut lock = bounded(TAKING, MigrationLock::prepare(url, session, scope)).await??;
    let mut next_report = started + REPORT_EVERY;
    let mut holder = None;
    loop {
        let taken = bounded(TAKING, lock.try_lock()).await?;
        if taken.map_err(|e| MigrateError::unavailable(TAKING, e))? {
            return Ok(Acquired::Held(lock, started.elapsed()));
        }
        if done_elsewhere(&mut lock).await {
            lock.close().await;
            return Ok(Acquired::NotNeeded(started.elapsed()));
        }
        let now = Instant::now();
        if now >= next_report || holder.is_none() {
            holder = bounded(TAKING, lock.holder()).await.ok().flatten();
        }
        if now >= deadline {
            return Err(MigrateError::LockTimedOut { timeout, holder });
        }
        if now >= next_report {
            info!(
                "waiting for the migration lock ({:.1}s of {}): held by {}",
                started.elapsed().as_secs_f64(),
                humantime::format_duration(timeout),
                holder.as_deref().unwrap_or("another process")
            );
            next_report = now + REPORT_EVERY;
        }
        let pause = POLL + POLL_JITTER.mul_f64(fastrand::f64());
        tokio::time::sleep(pause.min(deadline.saturating_duration_since(now))).await;
    }
}
