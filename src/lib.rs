//! roadie: the ENTRYPOINT (PID 1) of a database-backed container. The library holds every
//! module; `main.rs` only calls [`run`].
//!
//! `run` blocks signals before anything else, parses the command line, starts logging and
//! hands over to the boot pipeline (`boot.rs`, the only file that knows the stage order;
//! `boot/timings.rs` the line that starts the app). Settings flow down the pipeline: a module
//! uses what the pipeline reaches later, never what came before it.
//!
//! - `cli.rs` (flags and env as typed), `config.rs` (resolved and checked into one settings
//!   value per stage: a typo fails in milliseconds), `logging.rs` (roadie's lines on stderr)
//! - `wait.rs` (+ `wait/target.rs`): the database and `--wait-for` targets, in parallel
//! - `migrate.rs`: the stage's rooms (`stage.rs` as the boot runs it, `plan.rs`, `lock.rs`,
//!   `native.rs` + `native/`, `command.rs`, the one `watch.rs`, `at_head.rs`, `schema_wait.rs`,
//!   `status.rs`); it never names a driver and holds no SQL
//! - `alembic.rs` + `alembic/`: alembic's configuration, `env.py`, revision files and graph,
//!   read without Python; it knows nothing of roadie's stages
//! - `database.rs`: the URL in every form, masked, and where it comes from; `database/` the
//!   driver layer: `connection.rs` and `lock.rs` (one match per operation), each driver's SQL
//!   in `postgres.rs`, `mysql.rs`, `sqlite.rs`, the history tables (`history.rs`), readiness
//!   and SQLSTATEs, sockets' silence bounds (`silence.rs`)
//! - `hooks.rs`: `--hooks DIR`, each a supervised child
//! - `supervise.rs`: the one way to run a child (spawn, reap, forward, stop within a grace),
//!   and `until_stopped` for the async stages; `children.rs` (spawn, `children/reaper.rs` the
//!   only caller of waitpid), `signals.rs` (the forwarding table), `user.rs` (`--user`),
//!   `process_tree.rs` (the tree `/proc` shows)
//! - `handoff.rs`: once the app has settled, supervision continues in a fresh image of roadie
//! - `error.rs`: every failure and its exit code, decided in one match

// The default build (all three drivers) is linted strictly; a build without a driver drops
// its match arms, which leaves helpers shared with them unused there.
#![cfg_attr(
    not(all(feature = "postgres", feature = "mysql", feature = "sqlite")),
    allow(unused)
)]

mod alembic;
mod boot;
mod children;
mod cli;
mod config;
mod database;
mod error;
mod handoff;
mod hooks;
mod logging;
mod migrate;
pub mod process_tree;
mod signals;
mod supervise;
#[cfg(test)]
mod test_text;
mod user;
mod wait;

use std::process::ExitCode;

use clap::error::ErrorKind;

use crate::config::ConfigError;
use crate::error::BootError;

/// roadie's whole life: returns the exit code, or leaves with `_exit` once the app is gone.
pub fn run() -> ExitCode {
    // First of all: as PID 1 the kernel discards every signal that is neither handled nor
    // blocked; blocked, a signal waits in the queue until the supervisor reads it.
    let signals = match signals::SignalSource::install() {
        Ok(signals) => signals,
        Err(source) => {
            return fail(BootError::Internal {
                about: "setting up signals",
                source,
            });
        }
    };
    // A supervisor that roadie's own boot handed the app to: nothing to parse.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(handoff) = handoff::Handoff::from_args(&args) {
        let resumed = handoff
            .map_err(|e| BootError::Internal {
                about: "resuming supervision",
                source: std::io::Error::other(e),
            })
            .and_then(|handoff| handoff.resume(signals));
        return match resumed {
            Ok(code) => exit_now(code),
            Err(e) => fail(e),
        };
    }
    drop(args);
    let invocation = match cli::Args::parse_invocation() {
        Ok(Ok(invocation)) => invocation,
        Ok(Err(usage)) => return fail(BootError::Usage(usage)),
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            e.exit()
        }
        Err(e) if e.kind() == ErrorKind::MissingRequiredArgument => {
            return fail(BootError::Usage(cli::MISSING_COMMAND.into()));
        }
        Err(e) => return fail(BootError::Usage(first_line(&e.render().to_string()))),
    };
    let log = &invocation.options().log;
    match logging::Settings::parse(&log.log_format, &log.log_level) {
        Ok(settings) => logging::init(settings),
        Err(message) => return fail(BootError::Config(ConfigError::Invalid(message))),
    }
    match boot::run(invocation, signals) {
        Ok(code) => exit_now(code),
        Err(e) => fail(e),
    }
}

/// Leaves at once when the app and everything it left are gone. roadie holds nothing to flush
/// (every log line is one write to unbuffered stderr; stdout is the app's), and the C and Rust
/// exit paths sit on pages released after start-up: running them would fault those back in
/// while `docker stop` waits (measured: 11 page faults and 17 us on the SIGTERM-to-exit path).
fn exit_now(code: u8) -> ! {
    // SAFETY: _exit(2) ends the process; nothing in roadie depends on exit handlers.
    unsafe { libc::_exit(code.into()) }
}

/// Reports `error` on one line and gives its exit code. Logging may not be set up yet (a bad
/// flag), so the line is written in the text format directly.
fn fail(error: BootError) -> ExitCode {
    let line = error::report(&error);
    if tracing::dispatcher::has_been_set() {
        tracing::error!("{line}");
    } else {
        eprintln!("[roadie] ERROR {line}");
    }
    ExitCode::from(error.exit_code())
}

/// clap's first line (`error: unexpected argument '--x' found`), with a pointer to --help.
fn first_line(rendered: &str) -> String {
    let line = rendered.lines().next().unwrap_or("invalid command line");
    format!("{} (see roadie --help)", line.trim_start_matches("error: "))
}
