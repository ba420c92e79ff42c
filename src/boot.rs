//! The boot pipeline, in order: config, wait, migrate, then run. This is the only file that
//! knows the order of the stages; each stage is a plain function with its inputs passed in.
//! The async stages share one single-threaded runtime, built only when there is a database or
//! a target, and shut down before the app starts: the supervisor keeps no runtime.

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;
use tracing::info;

use crate::children::{self, ChildExit, Launch, Reaper};
use crate::cli::Invocation;
use crate::config::Config;
use crate::database::Connection;
use crate::error::BootError;
use crate::hooks;
use crate::logging::{self, Phase};
use crate::migrate::lock::MigrationLock;
use crate::migrate::native::{self, Folder};
use crate::migrate::{MigrateError, Plan, Summary};
use crate::resident;
use crate::signals::{self, SignalSource};
use crate::supervise::Supervisor;
use crate::wait::{self, Target};

/// How long the wait took, and whether a database was among the targets.
type Waited = Option<(Duration, bool)>;

/// How long each phase took, for the line that starts the app.
#[derive(Debug, Default)]
struct Timings {
    waited: Waited,
    migrated: Option<(Summary, Duration)>,
    hooks: Option<(usize, Duration)>,
}

impl Timings {
    /// `ready in 1.73s (database 1.40s, 2 migrations 0.31s, hooks 0.02s); `, or nothing when no
    /// phase ran.
    fn ready_line(&self, started: Instant) -> String {
        let mut parts = Vec::new();
        if let Some((took, database)) = self.waited {
            let what = if database { "database" } else { "dependencies" };
            parts.push(format!("{what} {:.2}s", took.as_secs_f64()));
        }
        if let Some((summary, took)) = self.migrated {
            let what = match summary {
                Summary::Applied { count: 1, .. } => "1 migration".to_string(),
                Summary::Applied { count, .. } => format!("{count} migrations"),
                Summary::UpToDate { .. } => "schema up to date".into(),
                Summary::Command { .. } => "migration command".into(),
            };
            parts.push(format!("{what} {:.2}s", took.as_secs_f64()));
        }
        if let Some((count, took)) = self.hooks {
            let what = if count == 1 { "1 hook" } else { "hooks" };
            parts.push(format!("{what} {:.2}s", took.as_secs_f64()));
        }
        if parts.is_empty() {
            return String::new();
        }
        format!(
            "ready in {:.2}s ({}); ",
            started.elapsed().as_secs_f64(),
            parts.join(", ")
        )
    }
}

/// Boots and runs the app (or only waits or migrates); returns roadie's exit code.
pub fn run(invocation: Invocation, signals: &mut SignalSource) -> Result<u8, BootError> {
    let started = Instant::now();
    logging::enter(Phase::Config);
    let mut timings = Timings::default();
    let (config, status_json) = match invocation {
        Invocation::Run { options, command } => (Config::resolve(options, Some(command))?, None),
        Invocation::Wait { options } => {
            let config = Config::resolve(options, None)?;
            let runtime = runtime_for(&config)?;
            let (_, connection) = wait_stage(runtime.as_ref(), &config, signals)?;
            close(runtime.as_ref(), connection);
            return Ok(0);
        }
        Invocation::Migrate { options } => (Config::resolve(options, None)?, None),
        Invocation::MigrateStatus { options, json } => {
            (Config::resolve(options, None)?, Some(json))
        }
    };
    let mut reaper = Reaper::adopt_orphans();
    if let Some(app) = config.app.as_ref().filter(|app| app.is_debug_shell()) {
        info!(
            "{} is an interactive shell: skipping wait, migrations and hooks",
            app.display_name()
        );
        return run_app(&config, signals, &mut reaper, "");
    }
    let runtime = runtime_for(&config)?;
    let (waited, connection) = wait_stage(runtime.as_ref(), &config, signals)?;
    timings.waited = waited;
    if let Some(json) = status_json {
        close(runtime.as_ref(), connection);
        return migrate_status(runtime.as_ref(), &config, json);
    }
    timings.migrated = migrate_stage(runtime.as_ref(), &config, connection, signals, &mut reaper)?;
    if let Some(runtime) = runtime {
        // A DNS lookup stuck in the blocking pool must not hold the boot up.
        runtime.shutdown_background();
    }
    if config.app.is_none() {
        return Ok(0);
    }
    if let Some(dir) = &config.hooks {
        logging::enter(Phase::Hooks);
        let began = Instant::now();
        let ran = hooks::run_all(
            dir,
            signals,
            &mut reaper,
            &config.forward,
            config.stop_grace,
            config.run_as.as_ref(),
        )
        .map_err(BootError::Hook)?;
        timings.hooks = Some((ran, began.elapsed()));
    }
    let ready = timings.ready_line(started);
    run_app(&config, signals, &mut reaper, &ready)
}

fn runtime_for(config: &Config) -> Result<Option<Runtime>, BootError> {
    if config.database.is_none() && config.wait_for.is_empty() {
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

/// Waits for the database and the --wait-for targets, in parallel; how long it took, and
/// whether the database was among them, when there was anything to wait for; and the
/// database's ready connection, for the migrate stage.
fn wait_stage(
    runtime: Option<&Runtime>,
    config: &Config,
    signals: &SignalSource,
) -> Result<(Waited, Option<Connection>), BootError> {
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
    let Some(runtime) = runtime.filter(|_| !targets.is_empty()) else {
        return Ok((None, None));
    };
    logging::enter(Phase::Wait);
    let began = Instant::now();
    let connection = wait::wait_for(
        runtime,
        &targets,
        config.wait_timeout,
        signals,
        &config.forward,
    )
    .map_err(BootError::Wait)?;
    Ok((
        Some((began.elapsed(), config.database.is_some())),
        connection,
    ))
}

/// Closes a connection the boot has no use for.
fn close(runtime: Option<&Runtime>, connection: Option<Connection>) {
    if let (Some(runtime), Some(connection)) = (runtime, connection) {
        runtime.block_on(connection.close());
    }
}

/// Runs the planned migrations under the lock and logs the summary line. Native migrations
/// go on the wait stage's connection, when it handed one on.
fn migrate_stage(
    runtime: Option<&Runtime>,
    config: &Config,
    connection: Option<Connection>,
    signals: &mut SignalSource,
    reaper: &mut Reaper,
) -> Result<Option<(Summary, Duration)>, BootError> {
    let (Some(runtime), Some(url)) = (runtime, config.database.as_ref()) else {
        return Ok(None);
    };
    logging::enter(Phase::Migrate);
    let began = Instant::now();
    let summary = match &config.migrate {
        Plan::Skip(why) => {
            if let Some(why) = why {
                info!("{why}");
            }
            close(Some(runtime), connection);
            return Ok(None);
        }
        Plan::Native(dir) => {
            let folder = Folder::read(dir, url.kind()).map_err(BootError::Migrate)?;
            runtime
                .block_on(native::run(
                    &folder,
                    url,
                    connection,
                    config.lock_timeout,
                    config.stop_grace,
                    signals::stop_requested(signals, &config.forward),
                ))
                .map_err(BootError::Migrate)?
        }
        Plan::Command(program) => {
            migrate_with_command(runtime, config, program, connection, signals, reaper)
                .map_err(BootError::Migrate)?
        }
    };
    info!("{summary}");
    Ok(Some((summary, began.elapsed())))
}

/// Any migrator, under the lock, as a supervised child: signals forwarded, reaped by the one
/// reaper, `--user` applied. The lock's connection (the wait stage's, when it handed one on)
/// idles meanwhile, holding no snapshot.
fn migrate_with_command(
    runtime: &Runtime,
    config: &Config,
    program: &children::Program,
    connection: Option<Connection>,
    signals: &mut SignalSource,
    reaper: &mut Reaper,
) -> Result<Summary, MigrateError> {
    let url = config
        .database
        .as_ref()
        .expect("UNWRAP: migrations need a database");
    let options = url
        .connect_options()
        .map_err(|e| MigrateError::Unavailable(e.to_string()))?;
    let (lock, waited) = runtime.block_on(async {
        tokio::select! {
            acquired = MigrationLock::acquire(&options, connection, url.sqlite_file().map(Path::to_path_buf), config.lock_timeout) => {
                acquired.map_err(MigrateError::from)
            }
            signal = signals::stop_requested(signals, &config.forward) => Err(MigrateError::stopped(signal)),
        }
    })?;
    let name = program
        .argv
        .iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let started = Instant::now();
    let spawned = children::spawn(
        program,
        Launch {
            run_as: config.run_as.as_ref(),
            take_terminal: false,
        },
    );
    let ended = spawned.and_then(|pid| {
        reaper.watch(pid);
        info!("running {name} (pid {pid}) under the migration lock");
        Supervisor {
            signals,
            reaper,
            forward: &config.forward,
            stop_grace: config.stop_grace,
            settled: None,
            announce_exit: false,
        }
        .run(pid, &program.display_name())
    });
    runtime.block_on(lock.release());
    let ended = ended.map_err(|source| MigrateError::Internal {
        about: "running the migration command",
        source,
    })?;
    if let Some(signal) = ended.stopped_by {
        return Err(MigrateError::Stopped(signal));
    }
    match ended.exit {
        ChildExit::Exited(0) => Ok(Summary::Command {
            took: started.elapsed(),
            lock_waited: waited,
        }),
        exit => Err(MigrateError::CommandFailed {
            command: name,
            exit,
        }),
    }
}

/// `roadie migrate status`: a table on stdout, or one JSON array with `--json`.
fn migrate_status(runtime: Option<&Runtime>, config: &Config, json: bool) -> Result<u8, BootError> {
    let (Some(runtime), Some(url)) = (runtime, config.database.as_ref()) else {
        return Err(BootError::Migrate(MigrateError::Unavailable(
            "no database configured: nothing to show".into(),
        )));
    };
    let dir = match &config.migrate {
        Plan::Native(dir) => dir,
        Plan::Command(program) => {
            println!(
                "migrations run by {:?}: their status belongs to that tool (e.g. `alembic current`)",
                program.display_name()
            );
            return Ok(0);
        }
        Plan::Skip(why) => {
            println!(
                "no native migrations to show: {}",
                why.as_deref().unwrap_or("none configured")
            );
            return Ok(0);
        }
    };
    let folder = Folder::read(dir, url.kind()).map_err(BootError::Migrate)?;
    let rows = runtime
        .block_on(native::status(&folder, url))
        .map_err(BootError::Migrate)?;
    let mut out = std::io::stdout().lock();
    if json {
        let array: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "version": r.version,
                    "description": r.description,
                    "status": r.state,
                    "installed_on": r.installed_on,
                    "execution_ms": r.execution_ms,
                    "file": r.file,
                })
            })
            .collect();
        let _ = writeln!(out, "{}", serde_json::Value::Array(array));
    } else {
        let _ = writeln!(
            out,
            "{:<16} {:<18} {:<30} {:>12}  description",
            "version", "status", "installed on", "took"
        );
        for r in &rows {
            let _ = writeln!(
                out,
                "{:<16} {:<18} {:<30} {:>12}  {}",
                r.version,
                r.state,
                r.installed_on.as_deref().unwrap_or("-"),
                r.execution_ms
                    .map_or("-".into(), |ms| format!("{ms:.1} ms")),
                r.description
            );
        }
    }
    Ok(0)
}

/// The last stage: the app as a supervised child, with the terminal handed over.
fn run_app(
    config: &Config,
    signals: &mut SignalSource,
    reaper: &mut Reaper,
    ready: &str,
) -> Result<u8, BootError> {
    logging::enter(Phase::Run);
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
    info!("{ready}starting {name} (pid {pid})");
    let handoff = logging::settings().map(|log| resident::Handoff {
        pid,
        name: name.clone(),
        stop_grace: config.stop_grace,
        forward: config.forward.clone(),
        success_codes: config.success_codes.clone(),
        log,
    });
    let settle = || match &handoff {
        Some(handoff) => resident::settle(handoff),
        None => resident::release_boot_memory(),
    };
    let ended = Supervisor {
        signals,
        reaper,
        forward: &config.forward,
        stop_grace: config.stop_grace,
        settled: Some(&settle),
        announce_exit: true,
    }
    .run(pid, &name)
    .map_err(|source| BootError::Internal {
        about: "waiting for signals",
        source,
    })?;
    Ok(exit_code(ended.exit, &config.success_codes))
}

/// The run stage, continued in a fresh image of roadie that the boot handed the app to
/// (resident.rs): same pid, same children, signals still pending.
pub fn resume(handoff: resident::Handoff, signals: &mut SignalSource) -> Result<u8, BootError> {
    logging::init(handoff.log);
    logging::enter(Phase::Run);
    let mut reaper = Reaper::adopt_orphans();
    reaper.watch(handoff.pid);
    let ended = Supervisor {
        signals,
        reaper: &mut reaper,
        forward: &handoff.forward,
        stop_grace: handoff.stop_grace,
        settled: Some(&resident::release_boot_memory),
        announce_exit: true,
    }
    .run(handoff.pid, &handoff.name)
    .map_err(|source| BootError::Internal {
        about: "waiting for signals",
        source,
    })?;
    Ok(exit_code(ended.exit, &handoff.success_codes))
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
