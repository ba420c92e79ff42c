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

/// Takes the lock (on `reused` when it still answers), runs `program` to its end, releases.
/// With `--migrate-database-url`, `url` is that direct URL, and the command finds it in its
/// environment as `DATABASE_URL` (what alembic's env.py and most frameworks read) and as
/// `ROADIE_MIGRATE_DATABASE_URL`: it migrates the database roadie locks, not the pooler.
pub fn run(
    runtime: &Runtime,
    supervision: &mut Supervision,
    url: &DatabaseUrl,
    program: &Program,
    reused: Option<Connection>,
    lock_timeout: std::time::Duration,
    direct: Option<&str>,
) -> Result<Summary, MigrateError> {
    let (lock, waited) = runtime.block_on(supervision.until_stopped(MigrationLock::acquire(
        url,
        reused,
        lock_timeout,
    )))??;
    let started = Instant::now();
    let env: Vec<(&'static str, String)> = match direct {
        Some(text) => vec![
            ("DATABASE_URL", text.to_string()),
            ("ROADIE_MIGRATE_DATABASE_URL", text.to_string()),
        ],
        None => Vec::new(),
    };
    let ended = supervision.run(program, Child::Migrator { env: &env });
    runtime.block_on(lock.release());
    let ended = ended.map_err(|e| match e {
        RunError::Spawn(source) => MigrateError::Internal {
            about: "starting the migration command",
            source,
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
        ChildExit::Exited(0) => Ok(Summary::Command {
            took: started.elapsed(),
            lock_waited: waited,
        }),
        exit => Err(MigrateError::CommandFailed {
            command: program.command_line(),
            exit,
        }),
    }
}
