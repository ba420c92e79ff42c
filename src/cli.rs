//! What the user typed: flags and their environment variables, as PRODUCT.md names them.
//! Values stay text here; `config.rs` checks them, so a bad one is a configuration error (78).

use std::ffi::OsString;

use clap::Parser;
use clap::builder::FalseyValueParser;

const AFTER_HELP: &str = "\
Exit codes:
  the app's   the app exited with that code
  128+S       the app was killed by signal S, or roadie was stopped by S before the app started
  64          usage error: unknown flag, missing command
  65          migration failed
  69          a dependency is unavailable (not ready in time, or refused for good)
  70          internal error (a bug in roadie)
  75          the migration lock was not acquired before --lock-timeout
  78          configuration error: bad duration, signal, exit code, user
  126 / 127   COMMAND found but not executable / not found

Signals: everything a process can catch is forwarded to the app (after --rewrite-signal),
except CHLD and the synchronous faults SEGV BUS FPE ILL TRAP SYS. TERM or INT also start
--stop-grace: then the app and all it left behind are SIGKILLed; a second TERM/INT kills at once.";

#[derive(Debug, Parser)]
#[command(
    name = "roadie",
    version,
    about = "The ENTRYPOINT of a database-backed container: runs COMMAND as its child, \
             forwards signals, reaps zombies and exits with the app's code.",
    after_help = AFTER_HELP
)]
pub struct Args {
    #[command(flatten)]
    pub supervise: SuperviseArgs,

    #[command(flatten)]
    pub log: LogArgs,

    /// The app to run, with its arguments. Put `--` before it when it starts with `-`.
    #[arg(value_name = "COMMAND", trailing_var_arg = true, required = true)]
    pub command: Vec<OsString>,
}

#[derive(Debug, clap::Args)]
pub struct SuperviseArgs {
    /// After forwarding a stop signal (or after the app exits with processes left), SIGKILL
    /// what is left after this long.
    #[arg(
        long,
        env = "ROADIE_STOP_GRACE",
        default_value = "10s",
        value_name = "DUR"
    )]
    pub stop_grace: String,

    /// Rewrite a forwarded signal, e.g. TERM:QUIT for nginx; TO = 0 drops it. Repeatable.
    #[arg(
        long,
        env = "ROADIE_REWRITE_SIGNALS",
        value_name = "FROM:TO",
        value_delimiter = ','
    )]
    pub rewrite_signal: Vec<String>,

    /// Forward signals to the app's whole process group, not only the app.
    #[arg(long, env = "ROADIE_SIGNAL_GROUP", value_parser = FalseyValueParser::new())]
    pub signal_group: bool,

    /// Report exit code N as 0 (e.g. 143 after a clean SIGTERM). Repeatable.
    #[arg(
        long,
        env = "ROADIE_SUCCESS_EXIT_CODES",
        value_name = "N",
        value_delimiter = ','
    )]
    pub success_exit_code: Vec<String>,

    /// Run the app as this user (name or uid), with its groups and HOME, like gosu.
    #[arg(long, env = "ROADIE_USER", value_name = "USER[:GROUP]")]
    pub user: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct LogArgs {
    /// roadie's own log lines on stderr: `text` (prefixed `[roadie]`) or `json` (one object a line).
    #[arg(
        long,
        env = "ROADIE_LOG_FORMAT",
        default_value = "text",
        value_name = "text|json"
    )]
    pub log_format: String,

    /// error, warn, info, debug or trace.
    #[arg(long, env = "ROADIE_LOG", default_value = "info", value_name = "LEVEL")]
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
        assert!(args.supervise.signal_group);
        assert_eq!(args.command, ["sh", "-c", "exit 3", "--user"]);
    }

    #[test]
    fn a_double_dash_lets_the_command_start_with_a_dash() {
        let args = Args::try_parse_from(["roadie", "--", "-weird"]).expect("parses");
        assert_eq!(args.command, ["-weird"]);
    }
}
