//! The one watch beside a running migration, native or command: on a session of its own it asks
//! the database every so often whether it still answers (a partition shows as silence, not as
//! an error) and, with `--ddl-lock-timeout`, who blocks the migration. Every look is bounded;
//! it never waits on the database without a bound of its own.

use std::time::Duration;

use tracing::debug;

use super::{MigrateError, bounded};
use crate::database::{Blocked, Connection, DatabaseUrl, sqlstate};

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
    Command,
}

/// A watch session on a server database.
pub struct Watch {
    conn: Connection,
    blocked: Blocked,
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
        let (opened, blocked) = match watched {
            Watched::Native { backend } => {
                let named = [("application_name", "roadie (migration watch)".to_string())];
                let opened = bounded(CONNECTING, url.connect_with_settings(&named)).await?;
                (opened, Blocked::Session(backend))
            }
            Watched::Command => {
                let opened = bounded(CONNECTING, url.connect()).await?;
                let blocked = match ddl_lock_timeout {
                    Some(_) => Blocked::Application(COMMAND_APPLICATION),
                    None => Blocked::Nobody,
                };
                (opened, blocked)
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
            every,
        })))
    }

    /// The server's version, when it says one roadie uses (bounded; `None` on silence).
    pub async fn server_version(&mut self) -> Option<i32> {
        bounded("", self.conn.server_version()).await.ok().flatten()
    }

    /// Returns only when the database stops answering; meanwhile notes the migration's
    /// blocker in `blocker`.
    pub async fn until_lost(&mut self, blocker: &mut Option<String>) -> MigrateError {
        loop {
            tokio::time::sleep(self.every).await;
            match bounded("watching the migration", self.conn.blocker(&self.blocked)).await {
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

    /// The catalog before a `-- no-transaction` migration runs (PostgreSQL only).
    pub async fn catalog(&mut self) -> Result<Option<Catalog>, MigrateError> {
        const READING: &str = "reading the catalog";
        let read = bounded(READING, self.conn.catalog()).await?;
        let read = read.map_err(|e| MigrateError::unavailable(READING, e))?;
        Ok(read.map(|(digest, invalid)| Catalog { digest, invalid }))
    }

    /// What a failed `-- no-transaction` migration left behind, said with the fix; `None`
    /// when the catalog is as it was, so running it again is safe.
    pub async fn left_behind(&mut self, before: &Catalog) -> Result<Option<String>, MigrateError> {
        let Some(after) = self.catalog().await? else {
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
            "it changed the schema before it failed, so roadie does not run it again; \
             check the schema"
                .to_string()
        }))
    }

    /// Says goodbye, bounded: only to a database that still answers.
    pub async fn close(self) {
        let _ = bounded("closing the watch session", self.conn.close()).await;
    }
}

/// What a `-- no-transaction` migration could leave behind, before it runs.
pub struct Catalog {
    /// A digest of the schema's relations, column counts, index validity and constraints.
    digest: String,
    /// Indexes already INVALID.
    invalid: Vec<String>,
}

/// `watch`'s [`Watch::until_lost`], or never when there is no watch (SQLite).
pub async fn until_lost(watch: Option<&mut Watch>, blocker: &mut Option<String>) -> MigrateError {
    match watch {
        Some(watch) => watch.until_lost(blocker).await,
        None => std::future::pending().await,
    }
}
