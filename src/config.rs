//! What the user typed, resolved into what roadie will do: durations parsed, signals named,
//! the user looked up and the command found on PATH. Everything here is fast, so a typo fails
//! in milliseconds, before any slow stage starts.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::unistd::{AccessFlags, access};

use crate::children::Program;
use crate::cli::{DatabaseArgs, MigrateArgs, Options, SuperviseArgs};
use crate::database::history::VersionTable;
use crate::database::standby::OnStandby;
use crate::database::{self, DatabaseUrl};
use crate::migrate::{self, AlembicSettings, DdlLimits, Plan, PlanDecision, PlanInputs};
use crate::signals::{self, ForwardPolicy};
use crate::supervise;
use crate::user;
use crate::wait::{self, Target};

/// PATH when the environment has none (what a shell would use).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where uv and poetry (with `virtualenvs.in-project`) put a project's scripts, relative to
/// the working directory: the auto-detected migrator is looked for there after PATH.
const VENV_BIN: &str = ".venv/bin";

/// Everything the boot will do, one settings value per stage, each defined by the stage that
/// reads it: settings flow down the pipeline, never back up.
#[derive(Debug)]
pub struct Config {
    /// The app; `None` for `roadie wait` and `roadie migrate`.
    pub app: Option<Program>,
    pub wait: wait::Settings,
    pub migrate: migrate::Settings,
    pub hooks: HookDirs,
    pub supervise: supervise::Settings,
}

/// `--hooks DIR` and `--locked-hooks DIR`.
#[derive(Debug, Default)]
pub struct HookDirs {
    /// Executables run before the app.
    pub unlocked: Option<PathBuf>,
    /// Executables run under the migration lock, after the migrations.
    pub locked: Option<PathBuf>,
}

/// The stages an invocation has besides waiting (`roadie wait` has none, `migrate status` no
/// hooks).
#[derive(Debug, Clone, Copy)]
pub struct StagesWanted {
    pub migrate: bool,
    /// The migration command may run (`run`, `migrate`); `migrate status` and
    /// `--wait-for-schema` only read what it would apply, and need it nowhere on PATH.
    pub runs_migrator: bool,
    pub hooks: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// A value that cannot be used, with the option named (exit 78).
    Invalid(String),
    /// COMMAND is nowhere on PATH (exit 127).
    NotFound { command: String, searched: String },
    /// The migrator roadie chose itself (`alembic upgrade head`, because alembic's
    /// configuration is here) is neither on PATH nor in `./.venv/bin` (exit 127).
    MigratorNotFound {
        command: String,
        searched: String,
        because: String,
    },
    /// COMMAND exists but cannot be executed (exit 126).
    NotExecutable { command: String, path: PathBuf },
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::Invalid(message) => f.write_str(message),
            ConfigError::NotFound { command, searched } => {
                write!(
                    f,
                    "command not found: {command:?} (searched PATH={searched})"
                )
            }
            ConfigError::MigratorNotFound {
                command,
                searched,
                because,
            } => write!(
                f,
                "command not found: \"alembic\" (searched PATH={searched} and {VENV_BIN}); roadie \
                 runs {command:?} because it found {because} in the working directory: put the \
                 image's virtual environment on PATH (ENV PATH=\"/app/.venv/bin:$PATH\"), or \
                 say how to run it (--migrate-command \"uv run alembic upgrade head\")"
            ),
            ConfigError::NotExecutable { command, path } => write!(
                f,
                "command not executable: {command:?} ({} is not an executable file)",
                path.display()
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Resolves the options (and COMMAND, for a run) into what the boot will do, for an
    /// invocation with the `stages` given: what a stage the invocation lacks would read (from
    /// the container's environment) is not read at all.
    pub fn resolve(
        options: Options,
        command: Option<Vec<OsString>>,
        stages: StagesWanted,
    ) -> Result<Self, ConfigError> {
        Self::resolve_with_env(options, command, stages, &|name| std::env::var(name).ok())
    }

    fn resolve_with_env(
        options: Options,
        command: Option<Vec<OsString>>,
        stages: StagesWanted,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let (database, migrate_database) = databases(&options.database, env)?;
        let wait = wait::Settings {
            on_standby: OnStandby::parse(&options.database.on_standby)
                .map_err(ConfigError::Invalid)?,
            timeout: duration("--wait-timeout", &options.database.wait_timeout)?,
            wait_for: wait_targets(&options.database.wait_for)?,
            database,
            migrate_database,
        };
        let hooks = match stages.hooks {
            true => hook_dirs(&options, wait.database.is_some())?,
            false => HookDirs::default(),
        };
        let m = &options.migrate;
        let lock_timeout = duration("--lock-timeout", &m.lock_timeout)?;
        let alembic = AlembicSettings {
            version_table: m
                .alembic_version_table
                .as_deref()
                .map(VersionTable::parse)
                .transpose()
                .map_err(ConfigError::Invalid)?,
            shortcut: !m.no_alembic_shortcut,
        };
        let ddl = ddl_limits(m)?;
        let supervise = supervise_settings(&options.supervise)?;
        let path_var = std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into());
        let app = command
            .map(|argv| resolve_command(argv, &path_var))
            .transpose()?;
        // A debug shell skips every stage, so what it would have migrated does not matter.
        let plan = if !stages.migrate || app.as_ref().is_some_and(Program::is_debug_shell) {
            Plan::Skip(None)
        } else {
            let runs = stages.runs_migrator && !m.wait_for_schema;
            migration_plan(m, wait.database.is_some(), app.as_ref(), (&path_var, runs))?
        };
        if m.wait_for_schema && stages.migrate {
            schema_to_wait_for(&plan)?;
        }
        let migrate = migrate::Settings {
            database: wait.migrate_database.clone().or(wait.database.clone()),
            direct_url: wait
                .migrate_database
                .as_ref()
                .map(|d| d.as_given().to_string()),
            on_standby: wait.on_standby,
            plan,
            lock_timeout,
            keep_lock: hooks.locked.is_some(),
            wait_for_schema: m.wait_for_schema,
            wait_timeout: wait.timeout,
            alembic,
            ddl,
            stop_grace: supervise.stop_grace,
        };
        Ok(Config {
            app,
            wait,
            migrate,
            hooks,
            supervise,
        })
    }
}

/// The app's database and the direct one it is migrated through, if any; a different database
/// name on the two is allowed (a pooler may alias it), with a warning.
type Databases = (Option<DatabaseUrl>, Option<DatabaseUrl>);

fn databases(
    d: &DatabaseArgs,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Databases, ConfigError> {
    let database =
        database::resolve(d.database_url.as_deref(), env).map_err(ConfigError::Invalid)?;
    if let Some(url) = &database {
        database::check_sqlite_directory(url).map_err(ConfigError::Invalid)?;
    }
    let migrate_database =
        database::resolve_migrate(d.migrate_database_url.as_deref(), env, database.as_ref())
            .map_err(ConfigError::Invalid)?;
    if let (Some(direct), Some(app)) = (&migrate_database, &database)
        && direct.database_name() != app.database_name()
    {
        tracing::warn!(
            "{} names database {:?}, the app's URL ({}) {:?}: fine when the pooler aliases \
             it, else the app will not see what is migrated",
            direct.source,
            direct.database_name(),
            app.source,
            app.database_name()
        );
    }
    Ok((database, migrate_database))
}

/// `--wait-for` targets; blank ones (an empty `ROADIE_WAIT_FOR` item) are none.
fn wait_targets(texts: &[String]) -> Result<Vec<Target>, ConfigError> {
    texts
        .iter()
        .filter(|t| !t.trim().is_empty())
        .map(|t| Target::parse(t))
        .collect::<Result<_, _>>()
        .map_err(ConfigError::Invalid)
}

/// `--hooks` and `--locked-hooks`: directories; locked hooks need a database to lock.
fn hook_dirs(options: &Options, database: bool) -> Result<HookDirs, ConfigError> {
    for (flag, dir) in [
        ("--hooks", &options.hooks),
        ("--locked-hooks", &options.locked_hooks),
    ] {
        if let Some(dir) = dir
            && !dir.is_dir()
        {
            return Err(ConfigError::Invalid(format!(
                "{flag} {}: not a directory",
                dir.display()
            )));
        }
    }
    if options.locked_hooks.is_some() && !database {
        return Err(ConfigError::Invalid(
            "--locked-hooks need a database to lock; none is configured (--database-url, \
             ROADIE_DATABASE_URL, DATABASE_URL, POSTGRES_HOST or POSTGRES_SERVER)"
                .into(),
        ));
    }
    Ok(HookDirs {
        unlocked: options.hooks.clone(),
        locked: options.locked_hooks.clone(),
    })
}

/// `--stop-grace`, `--rewrite-signal`, `--signal-group`, `--success-exit-code`, `--user`.
fn supervise_settings(s: &SuperviseArgs) -> Result<supervise::Settings, ConfigError> {
    let rewrites = s
        .rewrite_signal
        .iter()
        .map(|r| signals::parse_rewrite(r))
        .collect::<Result<_, _>>()
        .map_err(ConfigError::Invalid)?;
    Ok(supervise::Settings {
        stop_grace: duration("--stop-grace", &s.stop_grace)?,
        forward: ForwardPolicy {
            rewrites,
            group: s.signal_group,
        },
        success_codes: s
            .success_exit_code
            .iter()
            .map(|c| success_code(c))
            .collect::<Result<_, _>>()?,
        run_as: s
            .user
            .as_deref()
            .map(user::resolve)
            .transpose()
            .map_err(ConfigError::Invalid)?,
    })
}

/// `--ddl-lock-timeout` (off unless set; at least 1ms, as PostgreSQL's 0 would mean "off")
/// and `--ddl-retries`.
fn ddl_limits(m: &MigrateArgs) -> Result<DdlLimits, ConfigError> {
    let lock_timeout = m
        .ddl_lock_timeout
        .as_deref()
        .filter(|t| !t.trim().is_empty())
        .map(|t| duration("--ddl-lock-timeout", t))
        .transpose()?;
    if lock_timeout.is_some_and(|t| t < Duration::from_millis(1)) {
        return Err(ConfigError::Invalid(
            "--ddl-lock-timeout: at least 1ms (leave it unset for no timeout)".into(),
        ));
    }
    let retries = m.ddl_retries.trim().parse::<u32>().map_err(|_| {
        ConfigError::Invalid(format!(
            "--ddl-retries {:?}: expected a number of retries, e.g. 10",
            m.ddl_retries
        ))
    })?;
    Ok(DdlLimits {
        lock_timeout,
        retries,
    })
}

/// Decides which migrations run (migrate.rs has the rules), resolving the commands involved.
fn migration_plan(
    m: &MigrateArgs,
    database: bool,
    app: Option<&Program>,
    (path_var, runs): (&OsStr, bool),
) -> Result<Plan, ConfigError> {
    // What is only read (status, --wait-for-schema) needs its argv, never its file.
    let resolve = |argv: Vec<OsString>| match resolve_command(argv.clone(), path_var) {
        Err(ConfigError::NotFound { .. } | ConfigError::NotExecutable { .. }) if !runs => {
            Ok(Program::never_run(argv))
        }
        resolved => resolved,
    };
    let command = match m.migrate_command.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => {
            let words = shell_words::split(text)
                .map_err(|e| ConfigError::Invalid(format!("--migrate-command {text:?}: {e}")))?;
            if words.is_empty() {
                return Err(ConfigError::Invalid("--migrate-command is empty".into()));
            }
            Some(resolve(words.into_iter().map(OsString::from).collect())?)
        }
    };
    if let Some(dir) = &m.migrations
        && !dir.is_dir()
    {
        return Err(ConfigError::Invalid(format!(
            "--migrations {}: not a directory",
            dir.display()
        )));
    }
    let asked = PlanInputs {
        database,
        skip: m.skip_migrations,
        migrations: m.migrations.as_deref(),
        command: command.as_ref(),
        app: app.map(|a| a.argv.as_slice()),
        alembic_config: crate::alembic::found_here(
            Path::new(""),
            std::env::var_os("ALEMBIC_CONFIG").as_deref().map(Path::new),
        ),
        migrations_dir: migrate::has_sqlx_migrations(Path::new("migrations")),
    };
    match migrate::decide(&asked) {
        PlanDecision::Plan(plan) => Ok(plan),
        PlanDecision::Invalid(message) => Err(ConfigError::Invalid(message)),
        PlanDecision::Alembic => {
            let because = asked.alembic_config.unwrap_or_default();
            let argv = ["alembic", "upgrade", "head"].map(OsString::from).to_vec();
            match resolve(argv.clone()) {
                Err(ConfigError::NotFound { searched, .. }) => {
                    found_in_venv(argv, Path::new(VENV_BIN), &because).ok_or_else(|| {
                        ConfigError::MigratorNotFound {
                            command: "alembic upgrade head".into(),
                            searched,
                            because,
                        }
                    })
                }
                resolved => resolved,
            }
            .map(Plan::Command)
        }
    }
}

/// The auto-detected migrator in the project's virtual environment (`venv`, relative to the
/// working directory), said in one line when it is found there.
fn found_in_venv(argv: Vec<OsString>, venv: &Path, because: &str) -> Option<Program> {
    let path = venv.join(&argv[0]);
    if !is_executable_file(&path) {
        return None;
    }
    let path = std::path::absolute(&path).unwrap_or(path);
    tracing::info!(
        "{} is not on PATH: running {} (the project's virtual environment, as uv and poetry \
         make it), because {because} is here",
        argv[0].to_string_lossy(),
        path.display()
    );
    Some(Program { path, argv })
}

/// `--wait-for-schema` needs something whose state roadie can read: a native folder, or
/// `alembic upgrade head`. Nothing to migrate (the migrator itself as the app, a debug shell,
/// `--skip-migrations`) means nothing to wait for: the boot says so.
fn schema_to_wait_for(plan: &Plan) -> Result<(), ConfigError> {
    match plan {
        Plan::Native(_) | Plan::Skip(_) => Ok(()),
        Plan::Command(program) if migrate::alembic_upgrade_head(&program.argv).is_some() => Ok(()),
        Plan::Command(program) => Err(ConfigError::Invalid(format!(
            "--wait-for-schema: roadie cannot read what {:?} applies; it waits for native \
             migrations (--migrations) or for alembic upgrade head[s] / flask db upgrade",
            program.command_line()
        ))),
    }
}

/// Reads `500ms`, `30s`, `10m`, `1h 30m`.
pub fn duration(option: &str, text: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        ConfigError::Invalid(format!(
            "{option} {text:?}: {e} (expected a duration like 500ms, 30s or 10m)"
        ))
    })
}

/// Reads one `--success-exit-code` value: an exit code from 0 to 255.
pub(crate) fn success_code(text: &str) -> Result<u8, ConfigError> {
    text.trim().parse::<u8>().map_err(|_| {
        ConfigError::Invalid(format!(
            "--success-exit-code {text:?}: expected a number from 0 to 255"
        ))
    })
}

/// Finds COMMAND as execvp would: a name with a `/` is a path, any other is looked up on PATH.
fn resolve_command(argv: Vec<OsString>, path_var: &OsStr) -> Result<Program, ConfigError> {
    let name = argv.first().expect("UNWRAP: clap requires COMMAND").clone();
    let shown = name.to_string_lossy().into_owned();
    let path = if Path::new(&name).components().count() > 1 || shown.contains('/') {
        let path = PathBuf::from(&name);
        if !path.exists() {
            return Err(ConfigError::NotFound {
                command: shown,
                searched: "(not searched: COMMAND is a path)".into(),
            });
        }
        if !is_executable_file(&path) {
            return Err(ConfigError::NotExecutable {
                command: shown,
                path,
            });
        }
        path
    } else {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        match which::which_in(&name, Some(path_var), cwd) {
            Ok(path) => path,
            Err(_) => {
                // which only returns executables: look again for one that is there but
                // cannot run, so the user hears 126 (fix the mode) and not 127 (fix the name).
                let present = std::env::split_paths(path_var)
                    .map(|dir| dir.join(&name))
                    .find(|p| p.exists());
                return Err(match present {
                    Some(path) => ConfigError::NotExecutable {
                        command: shown,
                        path,
                    },
                    None => ConfigError::NotFound {
                        searched: match shown.as_str() {
                            // `roadie --log-level warn migrate` reads `migrate` as the app.
                            "run" | "wait" | "migrate" => format!(
                                "{}; to use the subcommand, put the options after it: roadie {shown} [OPTIONS]",
                                path_var.to_string_lossy()
                            ),
                            _ => path_var.to_string_lossy().into_owned(),
                        },
                        command: shown,
                    },
                });
            }
        }
    };
    Ok(Program { path, argv })
}

fn is_executable_file(path: &Path) -> bool {
    path.is_file() && access(path, AccessFlags::X_OK).is_ok()
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use std::os::unix::fs::PermissionsExt;

    #[rstest]
    #[case("500ms", Duration::from_millis(500))]
    #[case("30s", Duration::from_secs(30))]
    #[case("10m", Duration::from_secs(600))]
    #[case(" 1h 30m ", Duration::from_secs(5400))]
    fn reads_durations(#[case] text: &str, #[case] expected: Duration) {
        assert_eq!(duration("--stop-grace", text), Ok(expected));
    }

    #[rstest]
    #[case("")]
    #[case("10")]
    #[case("ten seconds")]
    #[case("-5s")]
    fn a_bad_duration_names_the_option(#[case] text: &str) {
        let Err(ConfigError::Invalid(message)) = duration("--stop-grace", text) else {
            panic!("{text:?} accepted");
        };
        assert!(message.starts_with("--stop-grace"), "{message}");
    }

    fn ddl_of(args: &[&str]) -> Result<DdlLimits, ConfigError> {
        let mut argv = vec!["roadie"];
        argv.extend(args);
        argv.push("true");
        let args = <crate::cli::Args as clap::Parser>::try_parse_from(argv).expect("parses");
        ddl_limits(&args.options.migrate)
    }

    #[rstest]
    #[case(&[], None, 10)]
    #[case(&["--ddl-lock-timeout", "2s"], Some(Duration::from_secs(2)), 10)]
    #[case(&["--ddl-lock-timeout", "200ms", "--ddl-retries", "0"], Some(Duration::from_millis(200)), 0)]
    #[case(&["--ddl-retries", " 3 "], None, 3)]
    fn the_ddl_lock_timeout_is_off_unless_set_and_retries_default_to_ten(
        #[case] args: &[&str],
        #[case] timeout: Option<Duration>,
        #[case] retries: u32,
    ) {
        assert_eq!(
            ddl_of(args),
            Ok(DdlLimits {
                lock_timeout: timeout,
                retries
            })
        );
    }

    #[rstest]
    #[case(&["--ddl-lock-timeout", "2"], "--ddl-lock-timeout \"2\"")]
    #[case(&["--ddl-lock-timeout", "0s"], "--ddl-lock-timeout: at least 1ms")]
    #[case(&["--ddl-retries=-1"], "--ddl-retries \"-1\"")]
    #[case(&["--ddl-retries", "many"], "--ddl-retries \"many\"")]
    fn a_bad_ddl_setting_names_its_option(#[case] args: &[&str], #[case] says: &str) {
        let Err(ConfigError::Invalid(message)) = ddl_of(args) else {
            panic!("{args:?} accepted");
        };
        assert!(message.starts_with(says), "{message}");
    }

    #[test]
    fn finds_commands_on_path_and_tells_missing_from_not_executable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runnable = dir.path().join("runnable");
        let plain = dir.path().join("plain");
        std::fs::write(&runnable, "#!/bin/sh\n").expect("write");
        std::fs::write(&plain, "").expect("write");
        std::fs::set_permissions(&runnable, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let path_var = dir.path().as_os_str();

        let found = resolve_command(vec!["runnable".into(), "x".into()], path_var).expect("found");
        assert_eq!(found.path, runnable);
        assert_eq!(found.argv, ["runnable", "x"]);

        assert!(matches!(
            resolve_command(vec!["plain".into()], path_var),
            Err(ConfigError::NotExecutable { .. })
        ));
        assert!(matches!(
            resolve_command(vec!["absent".into()], path_var),
            Err(ConfigError::NotFound { .. })
        ));
        assert!(matches!(
            resolve_command(vec![dir.path().as_os_str().to_owned()], path_var),
            Err(ConfigError::NotExecutable { .. })
        ));
        assert!(matches!(
            resolve_command(vec![dir.path().join("absent").into()], path_var),
            Err(ConfigError::NotFound { .. })
        ));
    }
}
