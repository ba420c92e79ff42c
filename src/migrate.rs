//! The migrate stage: which migrations run (the plan: skip, native folder or external command),
//! and the summary line. Both kinds run under the cluster-wide lock (`lock.rs`); the native kind
//! is `native.rs`, the command kind `command.rs` (a supervised child like the app), and
//! `roadie migrate status` is `status.rs`.

pub mod command;
pub mod lock;
pub mod native;
pub mod status;

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use libc::c_int;

use crate::children::{ChildExit, Program};
use crate::signals;
use crate::supervise::Stop;
use lock::LockError;

/// What the migrate stage will do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Nothing, and why (one log line); `None` when the "no database" line already said it.
    Skip(Option<String>),
    /// A sqlx-format folder, run natively.
    Native(PathBuf),
    /// Any migrator, run as a supervised child (`alembic upgrade head`).
    Command(Program),
}

/// The inputs of the plan: what the user asked for and what the working directory holds.
#[derive(Debug, Default)]
pub struct Asked<'a> {
    pub database: bool,
    pub skip: bool,
    pub migrations: Option<&'a Path>,
    pub command: Option<&'a Program>,
    /// The app's argv, when there is one.
    pub app: Option<&'a [OsString]>,
    pub alembic_ini: bool,
    pub migrations_dir: bool,
}

/// What the plan needs resolved: the auto-detected alembic command.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Plan(Plan),
    /// alembic.ini is here: run `alembic upgrade head` (to be found on PATH).
    Alembic,
    Invalid(String),
}

/// PRODUCT.md's rules: `--skip-migrations`; the migrator as COMMAND waits but does not migrate;
/// `--migrations DIR` or `--migrate-command CMD`; else alembic.ini means `alembic upgrade head`,
/// else a `migrations/` folder of sqlx files means native; else nothing.
pub fn decide(asked: &Asked<'_>) -> Decision {
    if !asked.database {
        return match (asked.migrations, asked.command) {
            (None, None) => Decision::Plan(Plan::Skip(None)),
            _ => Decision::Invalid(
                "--migrations and --migrate-command need a database to lock (--database-url, \
                 ROADIE_DATABASE_URL, DATABASE_URL or POSTGRES_HOST)"
                    .into(),
            ),
        };
    }
    if asked.migrations.is_some() && asked.command.is_some() {
        return Decision::Invalid("--migrations and --migrate-command exclude each other".into());
    }
    if asked.skip {
        return Decision::Plan(Plan::Skip(Some("--skip-migrations: not migrating".into())));
    }
    if let Some(app) = asked.app
        && is_the_migrator(app, asked.command)
    {
        return Decision::Plan(Plan::Skip(Some(format!(
            "{} is the migrator itself: waiting, but not migrating first",
            program_name(&app[0]).to_string_lossy()
        ))));
    }
    if let Some(dir) = asked.migrations {
        return Decision::Plan(Plan::Native(dir.to_path_buf()));
    }
    if let Some(command) = asked.command {
        return Decision::Plan(Plan::Command(command.clone()));
    }
    if asked.alembic_ini {
        return Decision::Alembic;
    }
    if asked.migrations_dir {
        return Decision::Plan(Plan::Native(PathBuf::from("migrations")));
    }
    Decision::Plan(Plan::Skip(Some(
        "no migrations: no --migrations, --migrate-command, alembic.ini or migrations/ here".into(),
    )))
}

/// Programs that run someone else's code: sharing one with the migrator says nothing
/// (`python manage.py migrate` vs `python app.py`).
const LAUNCHERS: &[&str] = &[
    "sh", "bash", "dash", "ash", "zsh", "env", "python", "python3", "node", "npx", "npm", "yarn",
    "pnpm", "bun", "deno", "ruby", "bundle", "rails", "rake", "php", "java", "uv", "uvx", "poetry",
    "pipenv", "pdm", "hatch", "dotnet", "go", "cargo", "perl", "exec",
];

fn program_name(argv0: &OsStr) -> &OsStr {
    Path::new(argv0).file_name().unwrap_or(argv0)
}

/// Whether the app is the migrator itself, so `alembic downgrade -1` as COMMAND is not preceded
/// by an upgrade: alembic; the migrate command exactly; or the migrate command's program when
/// that program is the migrator (`dbmate status` for `dbmate up`), not a launcher.
fn is_the_migrator(app: &[OsString], command: Option<&Program>) -> bool {
    let name = program_name(&app[0]);
    if name == "alembic" {
        return true;
    }
    let Some(command) = command else {
        return false;
    };
    if command.argv == app {
        return true;
    }
    let launcher = name
        .to_str()
        .is_some_and(|n| LAUNCHERS.contains(&n) || n.starts_with("python"));
    !launcher && name == program_name(&command.argv[0])
}

/// Whether `dir` holds at least one sqlx-format migration (`<version>_<description>.sql`).
pub fn has_sqlx_migrations(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        name.ends_with(".sql")
            && name
                .split_once('_')
                .is_some_and(|(v, _)| !v.is_empty() && v.parse::<i64>().is_ok())
    })
}

/// How a migrate stage ended well.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Summary {
    UpToDate {
        lock_waited: Option<Duration>,
    },
    Applied {
        count: usize,
        took: Duration,
        lock_waited: Duration,
    },
    Command {
        took: Duration,
        lock_waited: Duration,
    },
}

impl Summary {
    /// How long the stage waited for the lock, when it took it.
    pub fn lock_waited(&self) -> Option<Duration> {
        match *self {
            Summary::UpToDate { lock_waited } => lock_waited,
            Summary::Applied { lock_waited, .. } | Summary::Command { lock_waited, .. } => {
                Some(lock_waited)
            }
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Summary::UpToDate { lock_waited: None } => f.write_str("schema up to date"),
            Summary::UpToDate {
                lock_waited: Some(w),
            } => write!(
                f,
                "schema up to date (another replica migrated it; lock waited {:.2}s)",
                w.as_secs_f64()
            ),
            Summary::Applied {
                count,
                took,
                lock_waited,
            } => write!(
                f,
                "{count} migration{} applied in {:.2}s, after {:.2}s waiting for the lock",
                if *count == 1 { "" } else { "s" },
                took.as_secs_f64(),
                lock_waited.as_secs_f64()
            ),
            Summary::Command { took, lock_waited } => write!(
                f,
                "migration command done in {:.2}s, after {:.2}s waiting for the lock",
                took.as_secs_f64(),
                lock_waited.as_secs_f64()
            ),
        }
    }
}

#[derive(Debug)]
pub enum MigrateError {
    /// A migration failed: SQL error, checksum mismatch, missing file (exit 65).
    Failed { what: String, message: String },
    /// The migration command exited non-zero (exit 65).
    CommandFailed { command: String, exit: ChildExit },
    /// The lock was not acquired before --lock-timeout (exit 75).
    LockTimedOut {
        timeout: Duration,
        holder: Option<String>,
    },
    /// The database went away (exit 69).
    Unavailable(String),
    /// What roadie was pointed at cannot work, whatever the wait: native migrations through a
    /// transaction pooler (exit 78).
    Misconfigured(String),
    /// A stop signal arrived: the app is not started (exit 128+S).
    Stopped(c_int),
    Internal {
        about: &'static str,
        source: io::Error,
    },
}

impl From<Stop> for MigrateError {
    fn from(stop: Stop) -> Self {
        match stop {
            Stop::Signal(signal) => MigrateError::Stopped(signal),
            Stop::Unreadable(source) => MigrateError::Internal {
                about: "reading signals",
                source,
            },
        }
    }
}

impl From<LockError> for MigrateError {
    fn from(e: LockError) -> Self {
        match e {
            LockError::TimedOut { timeout, holder } => {
                MigrateError::LockTimedOut { timeout, holder }
            }
            LockError::Database(e) => {
                MigrateError::Unavailable(format!("taking the migration lock: {e}"))
            }
            LockError::File { path, source } => MigrateError::Internal {
                about: "opening the SQLite lock file",
                source: io::Error::new(source.kind(), format!("{}: {source}", path.display())),
            },
        }
    }
}

impl fmt::Display for MigrateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MigrateError::Failed { what, message } => write!(f, "{what} failed: {message}"),
            MigrateError::CommandFailed { command, exit } => {
                write!(
                    f,
                    "migration command {command:?} {exit}; the app is not started"
                )
            }
            MigrateError::LockTimedOut { timeout, holder } => write!(
                f,
                "the migration lock was not acquired within --lock-timeout {}; held by {}",
                humantime::format_duration(*timeout),
                holder.as_deref().unwrap_or("another process")
            ),
            MigrateError::Unavailable(message) => {
                write!(f, "the database is unavailable: {message}")
            }
            MigrateError::Misconfigured(message) => f.write_str(message),
            MigrateError::Stopped(s) => write!(
                f,
                "stopped by SIG{} while migrating: lock released, the app is not started",
                signals::name(*s)
            ),
            MigrateError::Internal { about, .. } => write!(f, "internal error while {about}"),
        }
    }
}

impl std::error::Error for MigrateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MigrateError::Internal { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn program(argv0: &str) -> Program {
        Program {
            path: PathBuf::from(format!("/usr/bin/{argv0}")),
            argv: vec![argv0.into(), "upgrade".into()],
        }
    }

    #[rstest]
    #[case::no_database(Asked { ..Default::default() }, Decision::Plan(Plan::Skip(None)))]
    #[case::skip(Asked { database: true, skip: true, alembic_ini: true, ..Default::default() }, Decision::Plan(Plan::Skip(Some("--skip-migrations: not migrating".into()))))]
    #[case::alembic_ini(Asked { database: true, alembic_ini: true, migrations_dir: true, ..Default::default() }, Decision::Alembic)]
    #[case::migrations_dir(Asked { database: true, migrations_dir: true, ..Default::default() }, Decision::Plan(Plan::Native("migrations".into())))]
    #[case::nothing(Asked { database: true, ..Default::default() }, Decision::Plan(Plan::Skip(Some("no migrations: no --migrations, --migrate-command, alembic.ini or migrations/ here".into()))))]
    #[case::explicit_folder(Asked { database: true, migrations: Some(Path::new("db")), alembic_ini: true, ..Default::default() }, Decision::Plan(Plan::Native("db".into())))]
    fn the_plan_follows_product_md(#[case] asked: Asked<'_>, #[case] expected: Decision) {
        assert_eq!(decide(&asked), expected);
    }

    fn argv(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[rstest]
    #[case(&["alembic", "downgrade", "-1"], &["alembic", "upgrade", "head"], true)]
    #[case(&["/venv/bin/alembic", "current"], &["dbmate", "up"], true)]
    #[case(&["dbmate", "status"], &["dbmate", "up"], true)]
    #[case(&["python3", "manage.py", "migrate"], &["python3", "manage.py", "migrate"], true)]
    #[case(&["python3", "app.py"], &["python3", "-c", "migrate()"], false)]
    #[case(&["python", "manage.py", "runserver"], &["python", "manage.py", "migrate"], false)]
    #[case(&["bundle", "exec", "puma"], &["bundle", "exec", "rake", "db:migrate"], false)]
    #[case(&["sh", "-c", "uvicorn app:app"], &["sh", "-c", "./migrate.sh"], false)]
    #[case(&["uvicorn", "app:app"], &["dbmate", "up"], false)]
    fn the_migrator_as_command_waits_but_does_not_migrate(
        #[case] app: &[&str],
        #[case] migrate_command: &[&str],
        #[case] is_migrator: bool,
    ) {
        let command = Program {
            path: PathBuf::from(migrate_command[0]),
            argv: argv(migrate_command),
        };
        let app = argv(app);
        let asked = Asked {
            database: true,
            command: Some(&command),
            app: Some(&app),
            ..Default::default()
        };
        let skipped = matches!(decide(&asked), Decision::Plan(Plan::Skip(Some(_))));
        assert_eq!(
            skipped, is_migrator,
            "{app:?} with --migrate-command {migrate_command:?}"
        );
    }

    #[test]
    fn explicit_migrations_without_a_database_or_both_kinds_are_invalid() {
        let command = program("alembic");
        let no_db = Asked {
            command: Some(&command),
            ..Default::default()
        };
        assert!(matches!(decide(&no_db), Decision::Invalid(_)));
        let both = Asked {
            database: true,
            command: Some(&command),
            migrations: Some(Path::new("m")),
            ..Default::default()
        };
        assert!(matches!(decide(&both), Decision::Invalid(_)));
    }

    #[test]
    fn summaries_read_as_the_issue_writes_them() {
        let applied = Summary::Applied {
            count: 2,
            took: Duration::from_millis(310),
            lock_waited: Duration::ZERO,
        };
        assert_eq!(
            applied.to_string(),
            "2 migrations applied in 0.31s, after 0.00s waiting for the lock"
        );
        assert_eq!(
            Summary::UpToDate { lock_waited: None }.to_string(),
            "schema up to date"
        );
    }

    #[test]
    fn a_folder_counts_when_it_holds_sqlx_files() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!has_sqlx_migrations(dir.path()));
        std::fs::write(dir.path().join("README.md"), "").unwrap();
        std::fs::write(dir.path().join("init.sql"), "").unwrap();
        assert!(!has_sqlx_migrations(dir.path()));
        std::fs::write(dir.path().join("20240101_create.sql"), "").unwrap();
        assert!(has_sqlx_migrations(dir.path()));
    }
}
