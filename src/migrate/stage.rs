//! The migrate stage as the boot runs it: a standby skipped when `--on-standby skip` says so,
//! the plan carried out (native folder, external command, or only waiting for the schema), the
//! summary line, and the lock kept for `--locked-hooks`. `roadie migrate status` reads the
//! same plan.

use std::time::{Duration, Instant};

use tokio::runtime::Runtime;
use tracing::info;

use super::at_head::Scripts;
use super::lock::MigrationLock;
use super::native::{self, Folder};
use super::{Locking, MigrateError, Plan, Summary};
use crate::config::Config;
use crate::database::standby::{self, OnStandby};
use crate::database::{Connection, DatabaseUrl};
use crate::supervise::Supervision;

/// What the migrate stage did, and how long it took.
pub type Migrated = (Summary, Duration);

/// The migration lock, held on the boot's runtime for the hooks that need it.
pub struct Held<'r> {
    lock: MigrationLock,
    runtime: &'r Runtime,
}

impl Held<'_> {
    pub fn release(self) {
        self.runtime.block_on(self.lock.release());
    }
}

/// Runs the planned migrations under the lock and logs the summary line. Native migrations
/// and the lock go on the wait stage's connection, when it handed one on. With
/// `--locked-hooks`, the lock is handed back held (taken even when nothing migrates).
pub fn run<'r>(
    runtime: &'r Runtime,
    supervision: &mut Supervision,
    config: &Config,
    connection: Option<Connection>,
) -> Result<(Option<Migrated>, Option<Held<'r>>), MigrateError> {
    let Some(url) = config.migrated_database() else {
        return Ok((None, None));
    };
    let connection = match skip_on_standby(runtime, config, url, connection)? {
        Some(connection) => connection,
        None => return Ok((None, None)),
    };
    let keep_lock = config.locked_hooks.is_some();
    let locking = Locking {
        timeout: config.lock_timeout,
        keep: keep_lock,
        ddl: config.ddl,
    };
    let began = Instant::now();
    let (summary, lock, connection) = match &config.migrate {
        Plan::Skip(why) => {
            if let Some(why) = why {
                info!("{why}");
            }
            (None, None, connection)
        }
        plan if config.wait_for_schema => {
            let scripts = alembic_scripts(config)?;
            let wait = super::schema::await_current(
                url,
                plan,
                scripts.as_ref(),
                connection,
                config.wait_timeout,
                supervision,
            );
            let (summary, connection) = runtime.block_on(wait)?;
            (Some(summary), None, Some(connection))
        }
        Plan::Native(dir) => {
            let folder = Folder::read(dir, url.kind())?;
            let (summary, lock) = runtime.block_on(native::run(
                &folder,
                url,
                connection,
                locking,
                config.stop_grace,
                supervision,
            ))?;
            (Some(summary), lock, None)
        }
        Plan::Command(program) => {
            let scripts = match config.alembic.shortcut {
                true => alembic_scripts(config)?,
                false => None,
            };
            let (summary, lock) = super::command::run(
                runtime,
                supervision,
                url,
                program,
                connection,
                locking,
                scripts.as_ref(),
                config.migrate_database.as_ref().map(|d| d.as_given()),
            )?;
            (Some(summary), lock, None)
        }
    };
    if let Some(summary) = &summary {
        info!("{summary}");
    }
    let migrated = summary.map(|summary| (summary, began.elapsed()));
    let lock = match lock {
        Some(lock) => Some(lock),
        // Nothing migrated under the lock (skipped, or awaited), but hooks need it.
        None if keep_lock => {
            let acquire = MigrationLock::acquire(url, connection, config.lock_timeout);
            let (lock, _) = runtime
                .block_on(supervision.until_stopped(acquire))
                .map_err(MigrateError::from)
                .and_then(|acquired| acquired.map_err(MigrateError::from))?;
            Some(lock)
        }
        None => {
            if let Some(connection) = connection {
                runtime.block_on(connection.close());
            }
            None
        }
    };
    Ok((migrated, lock.map(|lock| Held { lock, runtime })))
}

/// `--on-standby skip`: a standby is migrated by nobody; the app starts. `Some` hands the
/// connection back when migrating goes on.
fn skip_on_standby(
    runtime: &Runtime,
    config: &Config,
    url: &DatabaseUrl,
    connection: Option<Connection>,
) -> Result<Option<Option<Connection>>, MigrateError> {
    if config.on_standby != OnStandby::Skip || matches!(config.migrate, Plan::Skip(_)) {
        return Ok(Some(connection));
    }
    let read_only = runtime.block_on(async {
        let mut conn = match Connection::if_alive(connection).await {
            Some(conn) => conn,
            None => url.connect().await?,
        };
        standby::read_only(&mut conn).await.map(|r| (r, conn))
    });
    match read_only {
        Ok((None, conn)) => Ok(Some(Some(conn))),
        Ok((Some(why), conn)) => {
            info!(
                "the {} is {why}: --on-standby skip, not migrating",
                url.whereabouts()
            );
            runtime.block_on(conn.close());
            Ok(None)
        }
        Err(e) => Err(MigrateError::Unavailable(format!(
            "checking for a standby: {e}"
        ))),
    }
}

/// `roadie migrate status`: a table on stdout, or one JSON array with `--json`.
pub fn status(runtime: Option<&Runtime>, config: &Config, json: bool) -> Result<(), MigrateError> {
    let (Some(runtime), Some(url)) = (runtime, config.migrated_database()) else {
        return Err(MigrateError::Unavailable(
            "no database configured: nothing to show".into(),
        ));
    };
    let scripts = alembic_scripts(config)?;
    super::status::show(runtime, url, &config.migrate, scripts.as_ref(), json)
}

/// The alembic project the plan's command works on, when it is `alembic upgrade head` and
/// roadie can read it without Python.
fn alembic_scripts(config: &Config) -> Result<Option<Scripts>, MigrateError> {
    match &config.migrate {
        Plan::Command(program) => {
            Scripts::of_command(program, config.alembic.version_table.as_ref())
        }
        _ => Ok(None),
    }
}
