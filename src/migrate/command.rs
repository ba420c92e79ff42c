//! Any migrator (`alembic upgrade head`, `dbmate up`, ...) run under the lock as a supervised
//! child: signals forwarded, reaped by the one reaper, `--user` applied. The lock's connection
//! (the wait stage's, when it handed one on) idles meanwhile, holding no snapshot.

use std::time::Instant;

use tokio::runtime::Runtime;

use super::lock::MigrationLock;
use super::{MigrateError, Summary};
use crate::children::{ChildExit, Program};
use crate::database::{Connection, DatabaseUrl};
use crate::supervise::{Child, RunError, Supervision};

/// Takes the lock (on `reused` when it still answers), runs `program` to its end, releases
/// the lock, or with `keep_lock` (hooks must run under it next) hands it back held.
pub fn run(
    runtime: &Runtime,
    supervision: &mut Supervision,
    url: &DatabaseUrl,
    program: &Program,
    reused: Option<Connection>,
    lock_timeout: std::time::Duration,
    keep_lock: bool,
) -> Result<(Summary, Option<MigrationLock>), MigrateError> {
    let acquire = MigrationLock::acquire(url, reused, lock_timeout);
    let (lock, waited) = runtime.block_on(supervision.until_stopped(acquire))??;
    let started = Instant::now();
    let ended = supervision.run(program, Child::Migrator);
    let succeeded = matches!(
        &ended,
        Ok(ended) if ended.stopped_by.is_none() && ended.exit == ChildExit::Exited(0)
    );
    let lock = if keep_lock && succeeded {
        Some(lock)
    } else {
        runtime.block_on(lock.release());
        None
    };
    let ended = ended.map_err(|e| match e {
        RunError::Spawn(e) => MigrateError::Exec {
            command: program.command_line(),
            error: e,
        },
        RunError::Signals(source) => MigrateError::Internal {
            about: "running the migration command",
            source,
        },
    })?;
    if let Some(signal) = ended.stopped_by {
        return Err(MigrateError::Stopped(signal));
    }
    match ended.exit {
        ChildExit::Exited(0) => Ok((
            Summary::Command {
                took: started.elapsed(),
                lock_waited: waited,
            },
            lock,
        )),
        exit => Err(MigrateError::CommandFailed {
            command: program.command_line(),
            exit,
        }),
    }
}
