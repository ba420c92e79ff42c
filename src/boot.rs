//! The boot pipeline, in order: config, wait, migrate, hooks, then run. This is the only file
//! that knows the order of the stages; each stage is a plain function with its inputs passed
//! in. The async stages share one single-threaded runtime, built only when there is a database
//! or a target, and shut down before the app starts: the supervisor keeps no runtime.

use std::path::Path;
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;
use tracing::info;

use crate::cli::Invocation;
use crate::config::{Config, StagesWanted};
use crate::database::Connection;
use crate::error::BootError;
use crate::handoff::{self, Handoff};
use crate::hooks;
use crate::logging::{self, Phase};
use crate::migrate::{self, Plan};
use crate::signals::SignalSource;
use crate::supervise::{Child, Supervision};
use crate::wait::{self, Waited};

mod timings;
use timings::Timings;

/// What the invocation asks for once the stages it needs have run.
enum Goal {
    Run,
    Wait,
    Migrate,
    Status { json: bool },
}

/// Boots and runs the app (or only waits or migrates); returns roadie's exit code.
pub fn run(invocation: Invocation, signals: SignalSource) -> Result<u8, BootError> {
    let started = Instant::now();
    logging::enter(Phase::Config);
    let (config, job) = configure(invocation)?;
    let mut supervision = Supervision::new(signals, &config.supervise);
    if let Some(app) = config.app.as_ref().filter(|app| app.is_debug_shell()) {
        info!(
            "{} is an interactive shell: skipping wait, migrations and hooks",
            app.display_name()
        );
        return run_app(&config, &mut supervision, &Timings::default(), started);
    }
    let runtime = BootRuntime(runtime_for(&config)?);
    let mut timings = Timings::default();
    // `roadie wait` answers "ready to migrate?": a standby is reported whatever the plan.
    let writes = matches!(job, Goal::Wait) || !matches!(config.migrate.plan, Plan::Skip(_));
    let (waited, connection) = wait_stage(runtime.as_ref(), &supervision, &config, writes)?;
    timings.waited = waited;
    match job {
        Goal::Wait if !config.migrate.wait_for_schema => {
            close(runtime.as_ref(), connection);
            return Ok(0);
        }
        Goal::Status { json } => {
            close(runtime.as_ref(), connection);
            migrate::stage::status(runtime.as_ref(), &config.migrate, json)
                .map_err(BootError::Migrate)?;
            return Ok(0);
        }
        Goal::Run | Goal::Migrate | Goal::Wait => {}
    }
    let (migrated, held) = match runtime.as_ref() {
        Some(runtime) => {
            logging::enter(Phase::Migrate);
            migrate::stage::run(runtime, &mut supervision, &config.migrate, connection)
                .map_err(BootError::Migrate)?
        }
        None => (None, None),
    };
    timings.migrated = migrated;
    if let (Some(held), Some(dir)) = (held, &config.hooks.locked) {
        // Hooks that must run once cluster-wide (seed data), under the migration lock.
        let ran = hooks_stage(dir, &mut supervision);
        let released = held.release();
        timings.hooks = Some(ran?);
        released.map_err(BootError::Migrate)?;
    }
    // The supervisor keeps no runtime.
    drop(runtime);
    if let Some(dir) = &config.hooks.unlocked {
        let (ran, took) = hooks_stage(dir, &mut supervision)?;
        let (before, before_took) = timings.hooks.unwrap_or_default();
        timings.hooks = Some((before + ran, before_took + took));
    }
    if config.app.is_none() {
        return Ok(0);
    }
    run_app(&config, &mut supervision, &timings, started)
}

/// The boot's runtime, shut down without waiting for its blocking pool on every way out of the
/// boot, an error or a stop included: a name lookup stuck there (getaddrinfo cannot be
/// cancelled; a resolver that does not answer holds it 10 s) must hold up neither the app's
/// start nor roadie's exit.
struct BootRuntime(Option<Runtime>);

impl BootRuntime {
    fn as_ref(&self) -> Option<&Runtime> {
        self.0.as_ref()
    }
}

impl Drop for BootRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

fn hooks_stage(dir: &Path, supervision: &mut Supervision) -> Result<(usize, Duration), BootError> {
    logging::enter(Phase::Hooks);
    let began = Instant::now();
    let ran = hooks::run_all(dir, supervision).map_err(BootError::Hook)?;
    Ok((ran, began.elapsed()))
}

fn configure(invocation: Invocation) -> Result<(Config, Goal), BootError> {
    let all = StagesWanted {
        migrate: true,
        runs_migrator: true,
        hooks: true,
    };
    Ok(match invocation {
        Invocation::Run { options, command } => {
            (Config::resolve(options, Some(command), all)?, Goal::Run)
        }
        Invocation::Wait { options } => {
            // `roadie wait` reads the migrations only to wait for the schema.
            let stages = StagesWanted {
                migrate: options.migrate.wait_for_schema,
                runs_migrator: false,
                hooks: false,
            };
            (Config::resolve(options, None, stages)?, Goal::Wait)
        }
        Invocation::Migrate { options } => (Config::resolve(options, None, all)?, Goal::Migrate),
        Invocation::MigrateStatus { options, json } => {
            let stages = StagesWanted {
                migrate: true,
                runs_migrator: false,
                hooks: false,
            };
            (
                Config::resolve(options, None, stages)?,
                Goal::Status { json },
            )
        }
    })
}

fn runtime_for(config: &Config) -> Result<Option<Runtime>, BootError> {
    if config.wait.is_empty() {
        return Ok(None);
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map(Some)
        .map_err(|source| BootError::Internal {
            about: "starting the boot's runtime",
            source,
        })
}

/// Waits for the database and the --wait-for targets, in parallel; what it waited for, when
/// there was anything, and the database's ready connection, for the migrate stage. `writes`:
/// a standby is not ready (or refused), as `--on-standby` says.
fn wait_stage(
    runtime: Option<&Runtime>,
    supervision: &Supervision,
    config: &Config,
    writes: bool,
) -> Result<(Option<Waited>, Option<Connection>), BootError> {
    let targets = wait::targets(&config.wait, writes);
    let Some(runtime) = runtime.filter(|_| !targets.is_empty()) else {
        return Ok((None, None));
    };
    logging::enter(Phase::Wait);
    let (waited, connection) = wait::wait_for(runtime, supervision, &targets, config.wait.timeout)
        .map_err(BootError::Wait)?;
    Ok((Some(waited), connection))
}

/// Closes a connection the boot has no use for.
fn close(runtime: Option<&Runtime>, connection: Option<Connection>) {
    if let (Some(runtime), Some(connection)) = (runtime, connection) {
        runtime.block_on(connection.close());
    }
}

/// The last stage: the app as a supervised child, with the terminal handed over; once it has
/// settled, the supervision is handed to a fresh image of roadie.
fn run_app(
    config: &Config,
    supervision: &mut Supervision,
    timings: &Timings,
    started: Instant,
) -> Result<u8, BootError> {
    logging::enter(Phase::Run);
    let app = config
        .app
        .as_ref()
        .expect("UNWRAP: run_app is called for a run");
    let name = app.display_name();
    let log = logging::settings();
    let settled = |pid| match log {
        Some(log) => handoff::settle(&Handoff {
            pid,
            name: name.clone(),
            stop_grace: config.supervise.stop_grace,
            forward: config.supervise.forward.clone(),
            success_codes: config.supervise.success_codes.clone(),
            log,
        }),
        None => handoff::release_boot_memory(),
    };
    let ended = supervision
        .run(
            app,
            Child::App {
                announce: &|pid| timings.log_start(started, &name, pid),
                settled: &settled,
                success_codes: &config.supervise.success_codes,
            },
        )
        .map_err(|e| BootError::from_run(e, &name))?;
    Ok(ended.reported_code(&config.supervise.success_codes))
}
