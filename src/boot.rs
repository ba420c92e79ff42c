//! The boot pipeline, in order: config, wait, then run. This is the only file that knows the
//! order of the stages; each stage is a plain function with its inputs passed in.

use tracing::info;

use crate::children::{self, ChildExit, Launch, Reaper};
use crate::cli::Invocation;
use crate::config::Config;
use crate::error::BootError;
use crate::resident;
use crate::signals::SignalSource;
use crate::supervise::Supervisor;
use crate::wait::{self, Target};

/// Boots and runs the app (or only waits, for `roadie wait`); returns roadie's exit code.
pub fn run(invocation: Invocation, signals: &mut SignalSource) -> Result<u8, BootError> {
    let config = match invocation {
        Invocation::Run { options, command } => Config::resolve(options, Some(command))?,
        Invocation::Wait { options } => Config::resolve(options, None)?,
    };
    let mut reaper = Reaper::adopt_orphans();
    wait_stage(&config, signals)?;
    match &config.app {
        Some(_) => run_app(&config, signals, &mut reaper),
        None => Ok(0),
    }
}

/// Waits for the database and the --wait-for targets, in parallel.
fn wait_stage(config: &Config, signals: &mut SignalSource) -> Result<(), BootError> {
    let mut targets: Vec<Target> = config
        .database
        .iter()
        .cloned()
        .map(Target::database)
        .collect();
    if config.database.is_none() {
        info!(
            "no database configured (--database-url, ROADIE_DATABASE_URL, DATABASE_URL, \
             POSTGRES_HOST): nothing to wait for or migrate"
        );
    }
    targets.extend(config.wait_for.iter().cloned());
    if targets.is_empty() {
        return Ok(());
    }
    wait::wait_for(&targets, config.wait_timeout, signals, &config.forward).map_err(BootError::Wait)
}

/// The last stage: the app as a supervised child, with the terminal handed over.
fn run_app(
    config: &Config,
    signals: &mut SignalSource,
    reaper: &mut Reaper,
) -> Result<u8, BootError> {
    let app = config
        .app
        .as_ref()
        .expect("UNWRAP: run_app is called for a run");
    let name = app.display_name();
    let launch = Launch {
        run_as: config.run_as.as_ref(),
        take_terminal: true,
    };
    let pid = children::spawn(app, launch).map_err(|source| BootError::Spawn {
        command: name.clone(),
        source,
    })?;
    reaper.watch(pid);
    info!("starting {name} (pid {pid})");
    let ended = Supervisor {
        signals,
        reaper,
        forward: &config.forward,
        stop_grace: config.stop_grace,
        settled: Some(resident::release_boot_memory),
    }
    .run(pid, &name)
    .map_err(|source| BootError::Internal {
        about: "waiting for signals",
        source,
    })?;
    Ok(exit_code(ended.exit, &config.success_codes))
}

/// The app's code, 128+S for a death by signal S, and 0 for a `--success-exit-code`.
fn exit_code(exit: ChildExit, success_codes: &[u8]) -> u8 {
    let code = exit.code();
    if success_codes.contains(&code) {
        0
    } else {
        code
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(ChildExit::Exited(3), &[], 3)]
    #[case(ChildExit::Signaled(libc::SIGTERM), &[], 143)]
    #[case(ChildExit::Signaled(libc::SIGTERM), &[143], 0)]
    #[case(ChildExit::Exited(1), &[143, 2], 1)]
    #[case(ChildExit::Exited(2), &[143, 2], 0)]
    fn success_exit_codes_map_to_zero(
        #[case] exit: ChildExit,
        #[case] success: &[u8],
        #[case] code: u8,
    ) {
        assert_eq!(exit_code(exit, success), code);
    }
}
