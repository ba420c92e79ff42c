//! The one watch beside a running migration, native or command: on a session of its own it asks
//! the database every so often whether it still answers (a partition shows as silence, not as
//! an error) and, with `--ddl-lock-timeout`, who blocks the migration. Every look is bounded;
//! it never waits on the database without a bound of its own.

use std::time::Duration;

use tracing::debug;

use super::{MigrateError, Unanswered, bounded};
use crate::database::{Blocked, Connection, DatabaseUrl, silence, sqlstate};

/// How often the watch looks (more often with `--ddl-lock-timeout`: the blocker must be seen
/// before the timeout ends the wait).
pub const WATCH_EVERY: Duration = Duration::from_secs(2);

/// The application name a migration command's libpq sessions get (through `PGAPPNAME`, unless
/// the container sets one), so the watch can tell them from the app's.
pub const COMMAND_APPLICATION: &str = "roadie (migration command)";

/// What the watch stands beside.
#[derive(Debug, Clone, Copy)]
pub enum Watched {
    /// A native migration on the session with this server-side id: its blockers are looked
    /// for, and the watch's own session is named (no pooler is in between: checked before).
    Native { backend: i64 },
    /// A migration command: unnamed (behind a transaction pooler a name would stay on the
    /// server connection); its sessions' blockers looked for with `--ddl-lock-timeout` only.
    /// `lock`: the lock's session (server-side id) and key, checked to be still held: the
    /// command's sessions are its own, so the lock's loss would not end them by itself.
    Command { lock: Option<(i64, i64)> },
}

/// A watch session on a server database.
pub struct Watch {
    conn: Connection,
    blocked: Blocked,
    /// The lock's session and key, when the lock must be checked to be still held.
    lock: Option<(i64, i64)>,
    every: Duration,
}

impl Watch {
    /// Opens the watch's session (each host of a multi-host URL in turn, as the migration's
    /// own driver would), bounded: `Err` when the database did not answer within the bound,
    /// `Ok(Err)` when it refused. `None` for SQLite: no network, nothing to watch.
    pub async fn open(
        url: &DatabaseUrl,
        watched: Watched,
        ddl_lock_timeout: Option<Duration>,
    ) -> Result<Option<Result<Self, sqlx::Error>>, MigrateError> {
        if !url.driver().has_server() {
            return Ok(None);
        }
        const CONNECTING: &str = "connecting the watch session";
        let (opened, blocked, lock) = match watched {
            Watched::Native { backend } => {
                let named = [("application_name", "roadie (migration watch)".to_string())];
                let opened = bounded(CONNECTING, url.connect_with_settings(&named)).await?;
                (opened, Blocked::Session(backend), None)
            }
            Watched::Command { lock } => {
                let opened = bounded(CONNECTING, url.connect()).await?;
                let blocked = match ddl_lock_timeout {
                    Some(_) => Blocked::Application(COMMAND_APPLICATION),
                    None => Blocked::Nobody,
                };
                (opened, blocked, lock)
            }
        };
        let mut conn = match opened {
            Ok(conn) => conn,
            Err(e) => return Ok(Some(Err(e))),
        };
        // Should roadie's host vanish, the server ends this session too within the bound.
        if let Err(e) = bounded(
            "setting up the watch session",
            conn.bound_against_vanishing(false),
        )
        .await?
        {
            debug!("the watch session keeps the server's defaults: {e}");
        }
        let every = match ddl_lock_timeout {
            Some(t) => (t / 4).clamp(Duration::from_millis(20), WATCH_EVERY),
            None => WATCH_EVERY,
        };
        Ok(Some(Ok(Watch {
            conn,
            blocked,
            lock,
            every,
        })))
    }

    /// The server's version, when it says one roadie uses (bounded; `None` on silence).
    pub async fn server_version(&mut self) -> Option<i32> {
        bounded("", self.conn.server_version()).await.ok().flatten()
    }

    /// Returns only when the database stops answering, or the lock is no longer held;
    /// meanwhile notes the migration's blocker in `blocker`.
    pub async fn until_lost(&mut self, blocker: &mut Option<String>) -> MigrateError {
        loop {
            if let Some((backend, key)) = self.lock {
                const CHECKING: &str = "checking that the migration lock is still held";
                match looked(CHECKING, self.conn.lock_still_held(backend, key)).await {
                    Err(silence) => return silence,
                    Ok(Ok(false)) => {
                        return MigrateError::gone(format!(
                            "the migration lock's session (pid {backend}) is gone, so another \
                             replica may take the lock"
                        ));
                    }
                    Ok(Err(e)) if sqlstate::is_connection_loss(&e) => {
                        return MigrateError::unavailable("the watch session was lost", e);
                    }
                    Ok(_) => {}
                }
            }
            tokio::time::sleep(self.every).await;
            match looked("watching the migration", self.conn.blocker(&self.blocked)).await {
                Err(silence) => return silence,
                Ok(Err(e)) if sqlstate::is_connection_loss(&e) => {
                    return MigrateError::unavailable("the watch session was lost", e);
                }
                Ok(Err(e)) => debug!("watching the migration: {e}"),
                Ok(Ok(Some(seen))) => *blocker = Some(seen),
                Ok(Ok(None)) => {}
            }
        }
    }

    /// Cancels the running statement of session `backend` (a native migration's).
    pub async fn cancel(&mut self, backend: i64) {
        if let Err(e) = self.conn.cancel_backend(backend).await {
            debug!("cancelling the migration's query: {e}");
        }
    }

    /// Says goodbye, bounded: only to a database that still answers.
    pub async fn close(self) {
        let _ = bounded("closing the watch session", self.conn.close()).await;
    }
}

/// One look of the watch, bounded by the client's silence bound rather than the 10 s of
/// roadie's other queries: a look is a tiny query, and the watch must see a silent network
/// (`2 s + 5 s`) before the server frees the lock (11 s), even where the socket's own bounds
/// cannot (a look sent after the network went, which the kernel never got out).
async fn looked<T>(doing: &str, look: impl Future<Output = T>) -> Result<T, MigrateError> {
    tokio::time::timeout(silence::CLIENT_SILENCE, look)
        .await
        .map_err(|_| MigrateError::unavailable(doing, Unanswered(silence::CLIENT_SILENCE)))
}

/// `watch`'s [`Watch::until_lost`], or never when there is no watch (SQLite).
pub async fn until_lost(watch: Option<&mut Watch>, blocker: &mut Option<String>) -> MigrateError {
    match watch {
        Some(watch) => watch.until_lost(blocker).await,
        None => std::future::pending().await,
    }
}
