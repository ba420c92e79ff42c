//! Every way a boot can fail, one variant per stage, and the one place that turns them into
//! exit codes (PRODUCT.md's table). Every error is a `std::error::Error` whose `Display` says
//! what was being done and whose `source()` says why; `report` prints the chain on one line.

use std::io;

use crate::children::ExecError;
use crate::config::ConfigError;
use crate::hooks::HookError;
use crate::migrate::MigrateError;
use crate::supervise::RunError;
use crate::wait::WaitError;

#[derive(Debug)]
pub enum BootError {
    /// The command line itself is wrong: unknown flag, missing COMMAND.
    Usage(String),
    Config(ConfigError),
    Wait(WaitError),
    Migrate(MigrateError),
    Hook(HookError),
    /// The app could not be started although config found it: its interpreter is missing,
    /// or it changed in between.
    Spawn {
        command: String,
        source: ExecError,
    },
    /// Something that cannot fail did: a bug in roadie or a broken system.
    Internal {
        about: &'static str,
        source: io::Error,
    },
}

impl BootError {
    /// The app could not be run to its end by the supervisor.
    pub fn from_run(e: RunError, command: &str) -> Self {
        match e {
            RunError::Spawn(source) => BootError::Spawn {
                command: command.to_string(),
                source,
            },
            RunError::Signals(source) => BootError::Internal {
                about: "waiting for signals",
                source,
            },
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            BootError::Usage(_) => 64,
            BootError::Config(ConfigError::Invalid(_)) => 78,
            BootError::Config(ConfigError::NotExecutable { .. }) => 126,
            BootError::Config(
                ConfigError::NotFound { .. } | ConfigError::MigratorNotFound { .. },
            ) => 127,
            BootError::Wait(WaitError::Unavailable { .. } | WaitError::TimedOut { .. }) => 69,
            BootError::Wait(WaitError::Stopped(stopped)) => stopped.exit_code(),
            BootError::Wait(WaitError::Internal { .. }) => 70,
            BootError::Migrate(e) => match e {
                MigrateError::Failed { .. } | MigrateError::CommandFailed { .. } => 65,
                MigrateError::Exec { error, .. } => error.exit_code(),
                MigrateError::LockTimedOut { .. } => 75,
                MigrateError::Unavailable { .. } | MigrateError::SchemaNotCurrent { .. } => 69,
                MigrateError::Misconfigured(_) => 78,
                MigrateError::Stopped(stopped) => stopped.exit_code(),
                MigrateError::Internal { .. } => 70,
            },
            BootError::Hook(HookError::Failed { .. }) => 65,
            BootError::Hook(HookError::Stopped(stopped)) => stopped.exit_code(),
            BootError::Hook(HookError::Exec(e)) => e.exit_code(),
            BootError::Hook(HookError::Io { .. }) => 70,
            BootError::Spawn { source, .. } => source.exit_code(),
            BootError::Internal { .. } => 70,
        }
    }
}

impl std::fmt::Display for BootError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BootError::Usage(message) => f.write_str(message),
            BootError::Config(e) => e.fmt(f),
            BootError::Wait(e) => e.fmt(f),
            BootError::Migrate(e) => e.fmt(f),
            BootError::Hook(e) => e.fmt(f),
            BootError::Spawn { command, .. } => write!(f, "starting {command:?}"),
            BootError::Internal { about, .. } => write!(f, "internal error while {about}"),
        }
    }
}

impl std::error::Error for BootError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BootError::Usage(_) => None,
            // The stage errors are the message itself: transparent, like thiserror's
            // `#[error(transparent)]`.
            BootError::Config(e) => e.source(),
            BootError::Wait(e) => e.source(),
            BootError::Migrate(e) => e.source(),
            BootError::Hook(e) => e.source(),
            BootError::Spawn { source, .. } => Some(source),
            BootError::Internal { source, .. } => Some(source),
        }
    }
}

/// The error and its causes on one line (see `logging::one_line`).
pub fn report(error: &dyn std::error::Error) -> String {
    crate::logging::one_line(error)
}

impl From<ConfigError> for BootError {
    fn from(e: ConfigError) -> Self {
        BootError::Config(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervise::{Stage, Stopped};
    use rstest::rstest;

    #[rstest]
    #[case(BootError::Usage("missing COMMAND".into()), 64)]
    #[case(BootError::Config(ConfigError::Invalid("--stop-grace".into())), 78)]
    #[case(BootError::Config(ConfigError::NotExecutable { command: "x".into(), path: "/x".into() }), 126)]
    #[case(BootError::Config(ConfigError::NotFound { command: "x".into(), searched: "/bin".into() }), 127)]
    #[case(BootError::Spawn { command: "x".into(), source: ExecError::NotFound { path: "/x".into() } }, 127)]
    #[case(BootError::Spawn { command: "x".into(), source: ExecError::Refused { path: "/x".into(), source: io::ErrorKind::PermissionDenied.into() } }, 126)]
    #[case(BootError::Hook(HookError::Exec(ExecError::BadInterpreter { path: "/h".into(), interpreter: "/bin/sh\r".into() })), 126)]
    #[case(BootError::Migrate(MigrateError::Exec { command: "alembic".into(), error: ExecError::BadInterpreter { path: "/a".into(), interpreter: "/nope".into() } }), 126)]
    #[case(BootError::Internal { about: "reading signals", source: io::ErrorKind::Other.into() }, 70)]
    #[case(BootError::Wait(WaitError::Unavailable { target: "database".into(), cause: "c".into(), hint: "h".into() }), 69)]
    #[case(BootError::Wait(WaitError::TimedOut { timeout: std::time::Duration::from_secs(1), pending: vec![] }), 69)]
    #[case(BootError::Wait(WaitError::Stopped(Stopped { signal: libc::SIGTERM, during: Stage::Wait })), 143)]
    #[case(BootError::Wait(WaitError::Stopped(Stopped { signal: libc::SIGINT, during: Stage::Wait })), 130)]
    #[case(BootError::Migrate(MigrateError::Failed { what: "m".into(), message: "x".into() }), 65)]
    #[case(BootError::Migrate(MigrateError::CommandFailed { command: "alembic".into(), exit: crate::children::ChildExit::Exited(1), note: None }), 65)]
    #[case(BootError::Migrate(MigrateError::LockTimedOut { timeout: std::time::Duration::ZERO, holder: None }), 75)]
    #[case(BootError::Migrate(MigrateError::gone("gone")), 69)]
    #[case(BootError::Migrate(MigrateError::Misconfigured("pooler".into())), 78)]
    #[case(BootError::Migrate(MigrateError::Stopped(Stopped { signal: libc::SIGTERM, during: Stage::Migrate })), 143)]
    #[case(BootError::Hook(HookError::Stopped(Stopped { signal: libc::SIGINT, during: Stage::Hooks })), 130)]
    fn exit_codes_follow_product_md(#[case] error: BootError, #[case] code: u8) {
        assert_eq!(error.exit_code(), code);
    }

    #[test]
    fn a_report_reads_the_whole_chain_once() {
        let error = BootError::Migrate(MigrateError::Internal {
            about: "running the migration command",
            source: io::Error::other("no such thing"),
        });
        assert_eq!(
            report(&error),
            "internal error while running the migration command: no such thing"
        );
        let spawn = BootError::Spawn {
            command: "app".into(),
            source: ExecError::NotFound {
                path: "/bin/app".into(),
            },
        };
        assert_eq!(report(&spawn), "starting \"app\": /bin/app: not found");
    }
}
