//! How a migrate stage fails: one variant per exit code's reason (error.rs maps them), each
//! keeping the error that caused it as its `source()`.

use std::error::Error;
use std::fmt;
use std::io;
use std::time::Duration;

use crate::children::{ChildExit, ExecError, Program};
use crate::database::lock::LockError;
use crate::database::silence;
use crate::supervise::{RunError, Stage, Stop, Stopped};

#[derive(Debug)]
pub enum MigrateError {
    /// A migration failed: SQL error, checksum mismatch, missing file (exit 65).
    Failed { what: String, message: String },
    /// The migration command exited non-zero (exit 65).
    CommandFailed {
        command: String,
        exit: ChildExit,
        /// What roadie saw of it meanwhile, e.g. that it waited for a table lock.
        note: Option<String>,
    },
    /// The migration command could not be started (exit 126 or 127).
    Exec { command: String, error: ExecError },
    /// The lock was not acquired before --lock-timeout (exit 75).
    LockTimedOut {
        timeout: Duration,
        holder: Option<String>,
    },
    /// The database went away (exit 69): what roadie was doing, and why when it is known.
    Unavailable {
        doing: String,
        cause: Option<Box<dyn Error + Send + Sync>>,
    },
    /// What roadie was pointed at cannot work, whatever the wait (exit 78): native migrations
    /// through a transaction pooler, alembic's own configuration.
    Misconfigured(String),
    /// `--wait-for-schema`: still missing these after `--wait-timeout` (exit 69).
    SchemaNotCurrent {
        timeout: Duration,
        missing: Vec<String>,
        /// The database polled, URL masked.
        database: String,
    },
    /// A stop signal arrived: the app is not started (exit 128+S).
    Stopped(Stopped),
    Internal {
        about: &'static str,
        source: io::Error,
    },
}

impl From<Stop> for MigrateError {
    fn from(stop: Stop) -> Self {
        match stop.during(Stage::Migrate) {
            Ok(stopped) => MigrateError::Stopped(stopped),
            Err(source) => MigrateError::Internal {
                about: "reading signals",
                source,
            },
        }
    }
}

impl From<LockError> for MigrateError {
    fn from(e: LockError) -> Self {
        match e {
            LockError::Database(e) => MigrateError::unavailable("taking the migration lock", e),
            LockError::File { path, source } => MigrateError::Internal {
                about: "opening the SQLite lock file",
                source: io::Error::new(source.kind(), format!("{}: {source}", path.display())),
            },
        }
    }
}

impl MigrateError {
    /// A migration command that could not be run to its end by the supervisor.
    pub fn from_run(e: RunError, program: &Program) -> Self {
        match e {
            RunError::Spawn(error) => MigrateError::Exec {
                command: program.command_line(),
                error,
            },
            RunError::Signals(source) => MigrateError::Internal {
                about: "running the migration command",
                source,
            },
        }
    }

    /// The database went away while roadie was `doing` something, because of `cause`. A
    /// socket that gave up on a silent network is said as the silence it was.
    pub fn unavailable(
        doing: impl Into<String>,
        cause: impl Into<Box<dyn Error + Send + Sync>>,
    ) -> Self {
        let cause = cause.into();
        let silent = cause
            .downcast_ref::<sqlx::Error>()
            .is_some_and(silence::gave_up);
        MigrateError::Unavailable {
            doing: doing.into(),
            cause: Some(match silent {
                true => Box::new(Unanswered(silence::CLIENT_SILENCE)),
                false => cause,
            }),
        }
    }

    /// A loss of the database seen while roadie was `doing` something bigger: said as part
    /// of it (`while running migration 1 (...): watching the migration: <cause>`).
    pub fn during(self, doing: impl std::fmt::Display) -> Self {
        match self {
            MigrateError::Unavailable {
                doing: inner,
                cause,
            } => MigrateError::Unavailable {
                doing: format!("{doing}: {inner}"),
                cause,
            },
            other => MigrateError::unavailable(doing.to_string(), other),
        }
    }

    /// The database went away; `doing` says all there is to say.
    pub fn gone(doing: impl Into<String>) -> Self {
        MigrateError::Unavailable {
            doing: doing.into(),
            cause: None,
        }
    }
}

/// The database gave no answer within a bound of roadie's: its own queries'
/// (`QUERY_TIMEOUT`), or its sockets' silence bound (`database::silence`).
#[derive(Debug, Clone, Copy)]
pub struct Unanswered(pub Duration);

impl fmt::Display for Unanswered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the database did not answer within {}s (the network to it may be gone)",
            self.0.as_secs()
        )
    }
}

impl Error for Unanswered {}

impl fmt::Display for MigrateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MigrateError::Failed { what, message } => write!(f, "{what} failed: {message}"),
            MigrateError::CommandFailed {
                command,
                exit,
                note,
            } => {
                write!(f, "migration command {command:?} {exit}")?;
                if let Some(note) = note {
                    write!(f, "; {note}")?;
                }
                f.write_str("; the app is not started")
            }
            MigrateError::LockTimedOut { timeout, holder } => write!(
                f,
                "the migration lock was not acquired within --lock-timeout {}; held by {}",
                humantime::format_duration(*timeout),
                holder.as_deref().unwrap_or("another process")
            ),
            MigrateError::Exec { command, error } => write!(
                f,
                "the migration command {command:?} cannot start: {error}; the app is not started"
            ),
            MigrateError::SchemaNotCurrent {
                timeout,
                missing,
                database,
            } => write!(
                f,
                "the schema of {database} is not current after --wait-timeout {} \
                 (--wait-for-schema): missing {}; the app is not started",
                humantime::format_duration(*timeout),
                missing.join(", ")
            ),
            MigrateError::Misconfigured(message) => f.write_str(message),
            MigrateError::Unavailable { doing, .. } => {
                write!(f, "the database is unavailable: {doing}")
            }
            MigrateError::Stopped(stopped) => stopped.fmt(f),
            MigrateError::Internal { about, .. } => write!(f, "internal error while {about}"),
        }
    }
}

impl Error for MigrateError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            MigrateError::Internal { source, .. } => Some(source),
            MigrateError::Exec { error, .. } => Some(error),
            MigrateError::Unavailable {
                cause: Some(cause), ..
            } => Some(cause.as_ref()),
            _ => None,
        }
    }
}
