//! The boot pipeline, in order: config, then run. This is the only file that knows the order
//! of the stages; each stage is a plain function with its inputs passed in.

use tracing::info;

use crate::children::{self, ChildExit, Launch, Reaper};
use crate::cli::Args;
use crate::config::Config;
use crate::error::BootError;
use crate::resident;
use crate::signals::SignalSource;
use crate::supervise::Supervisor;

/// Boots and runs the app; returns the exit code roadie should exit with.
pub fn run(args: Args, signals: &mut SignalSource) -> Result<u8, BootError> {
    let config = Config::from_args(args)?;
    let mut reaper = Reaper::adopt_orphans();
    run_app(&config, signals, &mut reaper)
}

/// The last stage: the app as a supervised child, with the terminal handed over.
fn run_app(
    config: &Config,
    signals: &mut SignalSource,
    reaper: &mut Reaper,
) -> Result<u8, BootError> {
    let name = config.app.display_name();
    let launch = Launch {
        run_as: config.run_as.as_ref(),
        take_terminal: true,
    };
    let pid = children::spawn(&config.app, launch).map_err(|source| BootError::Spawn {
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
