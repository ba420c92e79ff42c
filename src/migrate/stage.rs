//! The migrate stage as the boot runs it: a standby skipped when `--on-standby skip` says so,
//! the plan carried out (native folder, external command, or only waiting for the schema), the
//! summary line, and the lock kept for `--locked-hooks`. `roadie migrate status` reads the
//! same plan.

use std::time::{Duration, Instant};

use tokio::runtime::Runtime;
use tracing::info;

use super::at_head::Scripts;
use super::lock;
use super::native::{self, Folder};
use super::{Locking, MigrateError, Plan, Settings, Summary};
use crate::database::lock::MigrationLock;
use crate::database::standby::{self, OnStandby};
use crate::database::{Connection, DatabaseUrl};
use crate::supervise::Supervision;

/// What the migrate stage did, and how long it took.
pub type Migrated = (Summary, Duration);

/// The migration lock, held on the boot's runtime for the hooks that need it.
pub struct HeldLock<'r> {
    lock: MigrationLock,
    runtime: &'r Runtime,
}

impl HeldLock<'_> {
    /// Releases the lock; an error says it was not held to the end of the hooks.
    pub fn release(self) -> Result<(), MigrateError> {
        let released = self.runtime.block_on(super::bounded(
            "releasing the migration lock",
            self.lock.release(),
        ))?;
        released.map_err(|e| {
            MigrateError::unavailable(
                "the migration lock was not held to the end of the locked hooks; another \
                 replica may have run them beside these",
                e,
            )
        })
    }
}

/// Runs the planned migrations under the lock and logs the summary line. Native migrations
/// and the lock go on the wait stage's connection, when it handed one on. With
/// `--locked-hooks`, the lock is handed back held (taken even when nothing migrates).
pub fn run<'r>(
    runtime: &'r Runtime,
    supervision: &mut Supervision,
    config: &Settings,
    connection: Option<Connection>,
) -> Result<(Option<Migrated>, Option<HeldLock<'r>>), MigrateError> {
    let Some(url) = config.database.as_ref() else {
        return Ok((None, None));
    };
    let connection = match skip_on_standby(runtime, config, url, connection)? {
        Some(connection) => connection,
        None => return Ok((None, None)),
    };
    let began = Instant::now();
    let (summary, lock, connection) = carry_out(runtime, supervision, config, url, connection)?;
    if let Some(summary) = &summary {
        info!("{summary}");
    }
    let migrated = summary.map(|summary| (summary, began.elapsed()));
    let lock = match lock {
        Some(lock) => Some(lock),
        // Nothing migrated under the lock (skipped, or awaited), but hooks need it.
        None if config.keep_lock => {
            let acquire = lock::acquire(url, connection, config.lock_timeout);
            let (lock, _) = runtime.block_on(supervision.until_stopped(acquire))??;
            Some(lock)
        }
        None => {
            if let Some(connection) = connection {
                runtime.block_on(connection.close());
            }
            None
        }
    };
    Ok((migrated, lock.map(|lock| HeldLock { lock, runtime })))
}

/// What carrying out the plan leaves: its summary, the lock when hooks need it, and the
/// connection when the plan did not take it.
type CarriedOut = (Option<Summary>, Option<MigrationLock>, Option<Connection>);

/// Carries out the plan: nothing, waiting for the schema, a native folder or a command.
fn carry_out(
    runtime: &Runtime,
    supervision: &mut Supervision,
    config: &Settings,
    url: &DatabaseUrl,
    connection: Option<Connection>,
) -> Result<CarriedOut, MigrateError> {
    let locking = Locking {
        timeout: config.lock_timeout,
        keep: config.keep_lock,
        ddl: config.ddl,
    };
    Ok(match &config.plan {
        Plan::Skip(why) => {
            if let Some(why) = why {
                info!("{why}");
            }
            (None, None, connection)
        }
        plan if config.wait_for_schema => {
            let scripts = alembic_scripts(config)?;
            let wait = super::schema_wait::await_current(
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
            let folder = Folder::read(dir, url.driver())?;
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
            if super::alembic_upgrade_head(&program.argv).is_none() {
                info!(
                    "{:?} runs on every boot, at head too: roadie cannot read what it applies \
                     (it reads alembic upgrade head[s] and flask db upgrade)",
                    program.command_line()
                );
            }
            let run = super::command::CommandRun {
                url,
                program,
                locking,
                scripts: scripts.as_ref(),
                direct: config.direct_url.as_deref(),
            };
            let (summary, lock) = run.run(runtime, supervision, connection)?;
            (Some(summary), lock, None)
        }
    })
}

/// `--on-standby skip`: a standby is migrated by nobody; the app starts. `Some` hands the
/// connection back when migrating goes on.
fn skip_on_standby(
    runtime: &Runtime,
    config: &Settings,
    url: &DatabaseUrl,
    connection: Option<Connection>,
) -> Result<Option<Option<Connection>>, MigrateError> {
    if config.on_standby != OnStandby::Skip || matches!(config.plan, Plan::Skip(_)) {
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
        Err(e) => Err(MigrateError::unavailable("checking for a standby", e)),
    }
}

/// `roadie migrate status`: a table on stdout, or one JSON array with `--json`.
pub fn status(
    runtime: Option<&Runtime>,
    config: &Settings,
    json: bool,
) -> Result<(), MigrateError> {
    let (Some(runtime), Some(url)) = (runtime, config.database.as_ref()) else {
        return Err(MigrateError::gone(
            "no database configured: nothing to show",
        ));
    };
    let scripts = alembic_scripts(config)?;
    super::status::show(runtime, url, &config.plan, scripts.as_ref(), json)
}

/// The alembic project the plan's command works on, when it is `alembic upgrade head` and
/// roadie can read it without Python.
fn alembic_scripts(config: &Settings) -> Result<Option<Scripts>, MigrateError> {
    match &config.plan {
        Plan::Command(program) => {
            Scripts::of_command(program, config.alembic.version_table.as_ref())
        }
        _ => Ok(None),
    }
}
