//! The migrate stage. Its rooms: `stage.rs` (the stage as the boot runs it), `plan.rs` (which
//! migrations run: skip, native folder or external command), `lock.rs` (taking the
//! cluster-wide lock), `native.rs` (a sqlx folder: `native/folder.rs`, `native/attempt.rs`
//! for DDL retries), `command.rs` (any migrator as a supervised child), `watch.rs` (the one
//! watch beside a running migration), `at_head.rs` (alembic without Python at head),
//! `schema_wait.rs` (`--wait-for-schema`), `status.rs` (`roadie migrate status`), and the
//! stage's `summary.rs` and `error.rs`. SQL and per-driver decisions live in `database/`.

pub mod at_head;
pub mod command;
mod error;
pub mod lock;
pub mod native;
pub mod plan;
pub mod schema_wait;
pub mod stage;
pub mod status;
mod summary;
mod watch;

use std::time::Duration;

use crate::database::DatabaseUrl;
use crate::database::history::VersionTable;
use crate::database::standby::OnStandby;
pub use error::{MigrateError, Unanswered};
pub use plan::{
    AlembicUpgradeHead, Plan, PlanDecision, PlanInputs, alembic_upgrade_head, decide,
    has_sqlx_migrations,
};
pub use summary::Summary;

/// What the migrate stage needs, resolved by `config.rs`.
#[derive(Debug)]
pub struct Settings {
    /// The database the lock and migrations go to: `--migrate-database-url`, else the app's.
    pub database: Option<DatabaseUrl>,
    /// `--migrate-database-url` as given (password and all): a migration command gets it as
    /// `DATABASE_URL`, so it migrates the database roadie locks, not the pooler.
    pub direct_url: Option<String>,
    /// `--on-standby`: `skip` starts the app on a standby without migrating.
    pub on_standby: OnStandby,
    /// Which migrations run.
    pub plan: Plan,
    /// `--lock-timeout`: how long a replica waits for another's migration.
    pub lock_timeout: Duration,
    /// `--locked-hooks` follow: the lock is taken even with nothing to migrate, and kept.
    pub keep_lock: bool,
    /// `--wait-for-schema`: wait for another process's migrations instead of running them.
    pub wait_for_schema: bool,
    /// `--wait-timeout`, which bounds `--wait-for-schema` too.
    pub wait_timeout: Duration,
    /// alembic's version table, and whether roadie may skip starting alembic at head.
    pub alembic: AlembicSettings,
    /// `--ddl-lock-timeout` and `--ddl-retries`.
    pub ddl: DdlLimits,
    /// `--stop-grace`: how long a cancelled migration may take to end.
    pub stop_grace: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlembicSettings {
    /// `--alembic-version-table`, when given (it wins over what env.py names).
    pub version_table: Option<VersionTable>,
    /// Not `--no-alembic-shortcut`: at head, alembic is not started.
    pub shortcut: bool,
}

/// How the migrate stage deals with locks: how long a replica waits for another's migration
/// (`--lock-timeout`), whether it keeps the migration lock afterwards for `--locked-hooks`,
/// and how its migrations wait for table locks (`--ddl-*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locking {
    pub timeout: Duration,
    pub keep: bool,
    pub ddl: DdlLimits,
}

/// How migrations treat the table locks they need (`--ddl-lock-timeout`, `--ddl-retries`):
/// without a timeout, an `ALTER TABLE` queued behind one long query stalls every query behind
/// it; with one, it gives up after that long and a native migration is retried from its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DdlLimits {
    /// PostgreSQL `lock_timeout`, set at connection start; `None`: the server's (none).
    pub lock_timeout: Option<Duration>,
    /// Retries of a native migration after a lock timeout (55P03), beyond its first attempt.
    pub retries: u32,
}

/// Every query roadie makes itself (connecting, the lock's poll, reading the history table,
/// `migrate status`, the probe beside a running migration) answers within this, or the
/// database counts as unreachable (exit 69): a network that vanished never hangs a boot. Long
/// enough for a loaded server to answer a catalog query; short beside the server's own bound
/// for noticing a vanished roadie (5 s + 3 x 2 s of keepalives).
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// `work` (a query of roadie's own), or `Unavailable` when the database does not answer
/// within [`QUERY_TIMEOUT`]; `doing` names it for that line. The one bound of the stage.
pub(crate) async fn bounded<T>(
    doing: &str,
    work: impl Future<Output = T>,
) -> Result<T, MigrateError> {
    tokio::time::timeout(QUERY_TIMEOUT, work)
        .await
        .map_err(|_| MigrateError::unavailable(doing, Unanswered(QUERY_TIMEOUT)))
}
