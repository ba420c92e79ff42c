//! What the user typed: flags and their environment variables, as PRODUCT.md names them.
//! Values stay text here; `config.rs` checks them, so a bad one is a configuration error (78).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Parser;
use clap::builder::FalseyValueParser;

const AFTER_HELP: &str = "\
Phases of a boot, each timed in the line that starts the app:
  1. config   flags and env, the command found on PATH (a typo fails in milliseconds)
  2. wait     the database ready (login + SELECT 1), and every --wait-for target
  3. migrate  under a cluster-wide lock: a sqlx-format folder natively, or any command
  4. hooks    each executable in --locked-hooks DIR under the migration lock, then in
              --hooks DIR, in name order
  5. run      the app as a child: signals forwarded, zombies reaped, its exit code passed on

Exit codes:
  the app's   the app exited with that code
  128+S       the app was killed by signal S, or roadie was stopped by S before the app started
  64          usage error: unknown flag, missing command
  65          a boot step failed: SQL error, checksum mismatch, applied migration missing,
              migration command or --hooks executable exited non-zero (the message names it),
              several alembic heads or a recorded revision the scripts do not have, alembic
              exited 0 but its version table (read back) is not at head
  69          a dependency is unavailable (not ready in time, or refused for good)
  70          internal error (a bug in roadie)
  75          the migration lock was not acquired before --lock-timeout
  78          configuration error: malformed URL, unreadable *_FILE, bad duration, signal,
              exit code or user, missing migrations folder or directory of a SQLite file,
              native migrations through a transaction pooler without --migrate-database-url,
              migrations found (alembic.ini, ./migrations) but no database named, an alembic
              configuration roadie cannot read
  126 / 127   COMMAND (or a hook, or the migration command) not executable or its #!
              interpreter missing / not found

Signals: everything a process can catch is forwarded to the app (after --rewrite-signal),
except CHLD and the synchronous faults SEGV BUS FPE ILL TRAP SYS. TERM or INT also start
--stop-grace: then the app and all it left behind are SIGKILLed; a second TERM/INT kills at once.";

/// The one wording of a missing COMMAND, with or without `run`.
pub const MISSING_COMMAND: &str = "missing COMMAND: roadie [OPTIONS] [--] COMMAND [ARG...], or \
     roadie run [OPTIONS] -- COMMAND [ARG...] (see roadie --help)";

#[derive(Debug, Parser)]
#[command(
    name = "roadie",
    version,
    about = "The ENTRYPOINT of a database-backed container: waits for the database, then runs \
             COMMAND as its child, forwards signals, reaps zombies and exits with the app's code.",
    after_help = AFTER_HELP,
    args_conflicts_with_subcommands = true,
    // An app named `help` runs as `roadie help`, like any other; `roadie --help` is the help.
    disable_help_subcommand = true
)]
pub struct Args {
    #[command(subcommand)]
    pub subcommand: Option<Subcommand>,

    #[command(flatten)]
    pub options: Options,

    /// The app to run, with its arguments. Put `--` before it when it starts with `-`.
    #[arg(value_name = "COMMAND", trailing_var_arg = true)]
    pub command: Vec<OsString>,
}

// Parsed once, at start-up: boxing the larger variants would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, clap::Subcommand)]
pub enum Subcommand {
    /// Boot, then run COMMAND supervised: the explicit form, for an app named like a subcommand.
    Run {
        #[command(flatten)]
        options: Options,
        /// The app to run, with its arguments.
        #[arg(value_name = "COMMAND", trailing_var_arg = true, required = true)]
        command: Vec<OsString>,
    },
    /// Wait for the database and every --wait-for target; exit 0 once all are ready.
    Wait {
        #[command(flatten)]
        options: Options,
    },
    /// Wait, migrate under the lock, exit (a one-shot service, a Kubernetes Job or initContainer).
    #[command(args_conflicts_with_subcommands = true, disable_help_subcommand = true)]
    Migrate {
        #[command(flatten)]
        options: Options,
        #[command(subcommand)]
        subcommand: Option<MigrateSubcommand>,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum MigrateSubcommand {
    /// Each migration: applied, pending, checksum mismatch or missing (native folders).
    Status {
        #[command(flatten)]
        options: Options,
        /// One JSON array on stdout, for scripts.
        #[arg(long)]
        json: bool,
    },
}

/// What roadie was asked to do, once the command line is read.
#[derive(Debug)]
pub enum Invocation {
    Run {
        options: Options,
        command: Vec<OsString>,
    },
    Wait {
        options: Options,
    },
    Migrate {
        options: Options,
    },
    MigrateStatus {
        options: Options,
        json: bool,
    },
}

impl Args {
    /// Reads roadie's own command line: clap's error (help and version included), or the
    /// invocation, or a usage error: a missing COMMAND, or a flag typed for a subcommand that
    /// does not use it (`roadie wait --hooks DIR`). A variable set for the whole container is
    /// not typed for a subcommand: that one is simply not used.
    pub fn parse_invocation() -> Result<Result<Invocation, String>, clap::Error> {
        use clap::{CommandFactory, FromArgMatches};
        let matches = Args::command().try_get_matches()?;
        let invocation = Args::from_arg_matches(&matches)?.invocation();
        Ok(invocation.and_then(|invocation| {
            unused_flag(&matches).map_or(Ok(invocation), |(flag, subcommand)| {
                Err(format!(
                    "--{flag} is not used by `roadie {subcommand}` (see roadie {subcommand} --help)"
                ))
            })
        }))
    }

    /// The invocation, or the usage error of a missing COMMAND.
    pub fn invocation(self) -> Result<Invocation, String> {
        match self.subcommand {
            Some(Subcommand::Run { options, command }) => Ok(Invocation::Run { options, command }),
            Some(Subcommand::Wait { options }) => Ok(Invocation::Wait { options }),
            Some(Subcommand::Migrate {
                subcommand: Some(MigrateSubcommand::Status { options, json }),
                ..
            }) => Ok(Invocation::MigrateStatus { options, json }),
            Some(Subcommand::Migrate { options, .. }) => Ok(Invocation::Migrate { options }),
            None if self.command.is_empty() => Err(MISSING_COMMAND.into()),
            None => Ok(Invocation::Run {
                options: self.options,
                command: self.command,
            }),
        }
    }
}

/// Options for running children (hooks, the migration command, the app).
const CHILDREN: &[&str] = &[
    "hooks",
    "locked_hooks",
    "stop_grace",
    "rewrite_signal",
    "signal_group",
    "success_exit_code",
    "user",
];

/// Options for taking the lock and migrating.
const MIGRATING: &[&str] = &["skip_migrations", "lock_timeout", "no_alembic_shortcut"];

/// The options each subcommand accepts (they share one set) but has no use for.
const UNUSED: &[(&str, &[&[&str]])] = &[
    // The plan (--migrations, --migrate-command, the version table) says what
    // --wait-for-schema waits for.
    ("wait", &[CHILDREN, MIGRATING]),
    // No app: nothing's exit code to report as 0, and nothing to wait for the schema.
    ("migrate", &[&["success_exit_code", "wait_for_schema"]]),
    // The plan says what to show.
    (
        "migrate status",
        &[CHILDREN, MIGRATING, &["wait_for_schema"]],
    ),
];

/// The first option typed on the command line for a subcommand that does not use it, with
/// the subcommand's name.
fn unused_flag(matches: &clap::ArgMatches) -> Option<(String, &'static str)> {
    let (name, sub) = match matches.subcommand()? {
        ("migrate", migrate) => match migrate.subcommand() {
            Some(("status", status)) => ("migrate status", status),
            _ => ("migrate", migrate),
        },
        (name, sub) => (name, sub),
    };
    let (subcommand, unused) = UNUSED.iter().find(|(n, _)| *n == name)?;
    // `roadie wait` reads the migrations only to wait for the schema.
    let schema: &[&str] = if name == "wait" && !sub.get_flag("wait_for_schema") {
        &["migrations", "migrate_command", "alembic_version_table"]
    } else {
        &[]
    };
    unused
        .iter()
        .copied()
        .chain([schema])
        .flat_map(|ids| ids.iter())
        .find(|id| sub.value_source(id) == Some(clap::parser::ValueSource::CommandLine))
        .map(|id| (id.replace('_', "-"), *subcommand))
}

impl Invocation {
    pub fn options(&self) -> &Options {
        match self {
            Invocation::Run { options, .. }
            | Invocation::Wait { options }
            | Invocation::Migrate { options }
            | Invocation::MigrateStatus { options, .. } => options,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct Options {
    #[command(flatten)]
    pub database: DatabaseArgs,

    #[command(flatten)]
    pub migrate: MigrateArgs,

    /// Before the app, run each executable file in DIR, in name order, as a supervised child
    /// (a failing one stops the boot: exit 65).
    #[arg(long, env = "ROADIE_HOOKS", hide_env_values = true, value_name = "DIR")]
    pub hooks: Option<PathBuf>,

    /// Like --hooks, but run once cluster-wide: under the migration lock, right after the
    /// migrations (seed data such as the first user). Needs a database to lock.
    #[arg(
        long,
        env = "ROADIE_LOCKED_HOOKS",
        hide_env_values = true,
        value_name = "DIR"
    )]
    pub locked_hooks: Option<PathBuf>,

    #[command(flatten)]
    pub supervise: SuperviseArgs,

    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// Native migrations: a folder in sqlx's format. Default: ./migrations when it holds any
    /// (after alembic.ini, which means `alembic upgrade head`, with alembic from PATH, else
    /// from ./.venv/bin).
    #[arg(
        long,
        env = "ROADIE_MIGRATIONS",
        hide_env_values = true,
        value_name = "DIR"
    )]
    pub migrations: Option<PathBuf>,

    /// Any migrator, run under the lock as a supervised child, e.g. "alembic upgrade head"
    /// (split like a shell would, never run through one).
    #[arg(
        long,
        env = "ROADIE_MIGRATE_COMMAND",
        hide_env_values = true,
        value_name = "CMD"
    )]
    pub migrate_command: Option<String>,

    /// The escape hatch: wait, but do not migrate.
    #[arg(
        long,
        env = "ROADIE_SKIP_MIGRATIONS",
        hide_env_values = true,
        value_parser = FalseyValueParser::new()
    )]
    pub skip_migrations: bool,

    /// Instead of migrating, wait (up to --wait-timeout, exit 69) until the database has every
    /// migration this image knows of: the native folder applied with matching checksums, or
    /// alembic at head. For replicas and workers when a Job or a one-shot service migrates.
    #[arg(
        long,
        env = "ROADIE_WAIT_FOR_SCHEMA",
        hide_env_values = true,
        value_parser = FalseyValueParser::new()
    )]
    pub wait_for_schema: bool,

    /// Where alembic records the applied revisions, when env.py renames it [default: the
    /// `version_table` env.py gives `context.configure` as a literal, else alembic_version].
    #[arg(
        long,
        env = "ROADIE_ALEMBIC_VERSION_TABLE",
        hide_env_values = true,
        value_name = "[SCHEMA.]NAME"
    )]
    pub alembic_version_table: Option<String>,

    /// Always start alembic, even when the database is already at head (for an env.py that
    /// does work on every run).
    #[arg(
        long,
        env = "ROADIE_NO_ALEMBIC_SHORTCUT",
        hide_env_values = true,
        value_parser = FalseyValueParser::new()
    )]
    pub no_alembic_shortcut: bool,

    /// How long a replica waits for another's migration before giving up (exit 75).
    #[arg(
        long,
        env = "ROADIE_LOCK_TIMEOUT",
        hide_env_values = true,
        default_value = "10m",
        value_name = "DUR"
    )]
    pub lock_timeout: String,

    /// PostgreSQL `lock_timeout` for the migrations' statements (e.g. 2s): a migration that
    /// would queue behind a long query, and stall every query behind it, gives up and retries.
    /// Native: a connection option; a command: PGOPTIONS. Off unless set.
    #[arg(
        long,
        env = "ROADIE_DDL_LOCK_TIMEOUT",
        hide_env_values = true,
        value_name = "DUR"
    )]
    pub ddl_lock_timeout: Option<String>,

    /// How often a native migration that hit --ddl-lock-timeout is retried from its start
    /// (with backoff and jitter) before roadie gives up (exit 65).
    #[arg(
        long,
        env = "ROADIE_DDL_RETRIES",
        hide_env_values = true,
        default_value = "10",
        value_name = "N"
    )]
    pub ddl_retries: String,
}

#[derive(Debug, clap::Args)]
pub struct DatabaseArgs {
    /// The database to wait for. Without it: ROADIE_DATABASE_URL, then DATABASE_URL, then the
    /// official images' variables: POSTGRES_HOST (or POSTGRES_SERVER), POSTGRES_PORT,
    /// POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB; or MARIADB_HOST, MARIADB_PORT,
    /// MARIADB_USER, MARIADB_PASSWORD (MARIADB_ROOT_PASSWORD for root), MARIADB_DATABASE, each
    /// MARIADB_* falling back to its MYSQL_*. Each also from the file named by its *_FILE. A
    /// URL variable wins over both kinds; both hosts set is an error. With none, roadie is a
    /// plain init.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,

    /// The direct URL for the lock and the migrations when the app's URL goes through a pooler
    /// (like Prisma's directUrl); waited for too. Without it: ROADIE_MIGRATE_DATABASE_URL (or
    /// the file named by ROADIE_MIGRATE_DATABASE_URL_FILE), else the app's URL. A migration
    /// command gets it as DATABASE_URL and ROADIE_MIGRATE_DATABASE_URL.
    #[arg(long, value_name = "URL")]
    pub migrate_database_url: Option<String>,

    /// When the database to migrate is a read-only standby: wait (for a failover, until
    /// --wait-timeout), fail (exit 69 at once), or skip (start the app without migrating).
    #[arg(
        long,
        env = "ROADIE_ON_STANDBY",
        hide_env_values = true,
        default_value = "wait",
        value_name = "wait|fail|skip"
    )]
    pub on_standby: String,

    /// Give up waiting for the database and --wait-for targets after this long (exit 69).
    #[arg(
        long,
        env = "ROADIE_WAIT_TIMEOUT",
        hide_env_values = true,
        default_value = "60s",
        value_name = "DUR"
    )]
    pub wait_timeout: String,

    /// Another dependency to wait for, in parallel: tcp://host:port, http(s)://... (2xx), or a
    /// database URL. Repeatable.
    #[arg(
        long,
        env = "ROADIE_WAIT_FOR",
        hide_env_values = true,
        value_name = "TARGET",
        value_delimiter = ','
    )]
    pub wait_for: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct SuperviseArgs {
    /// After forwarding a stop signal (or after the app exits with processes left), SIGKILL
    /// what is left after this long.
    #[arg(
        long,
        env = "ROADIE_STOP_GRACE",
        hide_env_values = true,
        default_value = "10s",
        value_name = "DUR"
    )]
    pub stop_grace: String,

    /// Rewrite a forwarded signal, e.g. TERM:QUIT for nginx; TO = 0 drops it. Repeatable.
    #[arg(
        long,
        env = "ROADIE_REWRITE_SIGNALS",
        hide_env_values = true,
        value_name = "FROM:TO",
        value_delimiter = ','
    )]
    pub rewrite_signal: Vec<String>,

    /// Forward signals to the app's whole process group, not only the app.
    #[arg(long, env = "ROADIE_SIGNAL_GROUP", hide_env_values = true, value_parser = FalseyValueParser::new())]
    pub signal_group: bool,

    /// Report exit code N as 0 (e.g. 143 after a clean SIGTERM). Repeatable.
    #[arg(
        long,
        env = "ROADIE_SUCCESS_EXIT_CODES",
        hide_env_values = true,
        value_name = "N",
        value_delimiter = ','
    )]
    pub success_exit_code: Vec<String>,

    /// Run hooks, the migration command and the app as this user (name or uid), with its
    /// groups and HOME, like gosu.
    #[arg(
        long,
        env = "ROADIE_USER",
        hide_env_values = true,
        value_name = "USER[:GROUP]"
    )]
    pub user: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct LogArgs {
    /// roadie's own log lines on stderr: `text` (prefixed `[roadie]`) or `json` (one object a line).
    #[arg(
        long,
        env = "ROADIE_LOG_FORMAT",
        hide_env_values = true,
        default_value = "text",
        value_name = "text|json"
    )]
    pub log_format: String,

    /// error, warn, info, debug or trace.
    #[arg(
        long,
        env = "ROADIE_LOG",
        hide_env_values = true,
        default_value = "info",
        value_name = "LEVEL"
    )]
    pub log_level: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn everything_after_the_command_belongs_to_the_command() {
        let args =
            Args::try_parse_from(["roadie", "--signal-group", "sh", "-c", "exit 3", "--user"])
                .expect("parses");
        let Invocation::Run { options, command } = args.invocation().unwrap() else {
            panic!("run");
        };
        assert!(options.supervise.signal_group);
        assert_eq!(command, ["sh", "-c", "exit 3", "--user"]);
    }

    #[rstest::rstest]
    #[case(&["roadie", "wait", "--hooks", "/h"], Some(("hooks", "wait")))]
    #[case(&["roadie", "wait", "--user", "app"], Some(("user", "wait")))]
    #[case(&["roadie", "migrate", "status", "--locked-hooks", "/h"], Some(("locked-hooks", "migrate status")))]
    #[case(&["roadie", "migrate", "--success-exit-code", "143"], Some(("success-exit-code", "migrate")))]
    #[case(&["roadie", "migrate", "--hooks", "/h"], None)]
    #[case(&["roadie", "wait", "--wait-timeout", "5s"], None)]
    #[case(&["roadie", "wait", "--migrations", "m"], Some(("migrations", "wait")))]
    #[case(&["roadie", "wait", "--wait-for-schema", "--migrations", "m"], None)]
    #[case(&["roadie", "migrate", "--wait-for-schema"], Some(("wait-for-schema", "migrate")))]
    #[case(&["roadie", "--hooks", "/h", "true"], None)]
    fn a_flag_a_subcommand_does_not_use_is_named(
        #[case] argv: &[&str],
        #[case] unused: Option<(&str, &str)>,
    ) {
        let matches = Args::command().try_get_matches_from(argv).unwrap();
        let found = unused_flag(&matches);
        assert_eq!(
            found.as_ref().map(|(f, s)| (f.as_str(), *s)),
            unused,
            "{argv:?}"
        );
    }

    #[test]
    fn a_double_dash_lets_the_command_start_with_a_dash() {
        let args = Args::try_parse_from(["roadie", "--", "-weird"]).expect("parses");
        assert_eq!(args.command, ["-weird"]);
    }

    #[test]
    fn subcommands_and_their_explicit_escape() {
        let wait = Args::try_parse_from(["roadie", "wait", "--wait-timeout", "5s"]).unwrap();
        let Invocation::Wait { options } = wait.invocation().unwrap() else {
            panic!("wait");
        };
        assert_eq!(options.database.wait_timeout, "5s");
        let run = Args::try_parse_from(["roadie", "run", "--", "wait", "3"]).unwrap();
        let Invocation::Run { command, .. } = run.invocation().unwrap() else {
            panic!("run");
        };
        assert_eq!(command, ["wait", "3"]);
        assert!(
            Args::try_parse_from(["roadie"])
                .unwrap()
                .invocation()
                .is_err()
        );
    }
}
