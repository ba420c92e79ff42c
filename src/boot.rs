//! The boot pipeline, in order: config, wait, migrate, hooks, then run. This is the only file
//! that knows the order of the stages; each stage is a plain function with its inputs passed
//! in. The async stages share one single-threaded runtime, built only when there is a database
//! or a target, and shut down before the app starts: the supervisor keeps no runtime.

use std::path::Path;
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;
use tracing::info;

use crate::cli::Invocation;
use crate::config::{Config, Stages};
use crate::database::standby::{self, OnStandby};
use crate::database::{Connection, DatabaseUrl};
use crate::error::BootError;
use crate::handoff::{self, Handoff};
use crate::hooks;
use crate::logging::{self, Phase};
use crate::migrate::at_head::Scripts;
use crate::migrate::lock::MigrationLock;
use crate::migrate::native::{self, Folder};
use crate::migrate::{self, Locking, MigrateError, Plan, Summary};
use crate::signals::SignalSource;
use crate::supervise::{Child, RunError, Supervision};
use crate::wait::{self, Target, Waited};

/// What the invocation asks for once the stages it needs have run.
enum Job {
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
    let mut supervision = Supervision::new(
        signals,
        config.forward.clone(),
        config.stop_grace,
        config.run_as.clone(),
    );
    if let Some(app) = config.app.as_ref().filter(|app| app.is_debug_shell()) {
        info!(
            "{} is an interactive shell: skipping wait, migrations and hooks",
            app.display_name()
        );
        return run_app(&config, &mut supervision, &Timings::default(), started);
    }
    let runtime = runtime_for(&config)?;
    let mut timings = Timings::default();
    // `roadie wait` answers "ready to migrate?": a standby is reported whatever the plan.
    let writes = matches!(job, Job::Wait) || !matches!(config.migrate, Plan::Skip(_));
    let (waited, connection) = wait_stage(runtime.as_ref(), &supervision, &config, writes)?;
    timings.waited = waited;
    match job {
        Job::Wait if !config.wait_for_schema => {
            close(runtime.as_ref(), connection);
            return Ok(0);
        }
        Job::Status { json } => {
            close(runtime.as_ref(), connection);
            return status(runtime.as_ref(), &config, json);
        }
        Job::Run | Job::Migrate | Job::Wait => {}
    }
    let (migrated, held) = migrate_stage(runtime.as_ref(), &mut supervision, &config, connection)?;
    timings.migrated = migrated;
    if let (Some(held), Some(dir)) = (held, &config.locked_hooks) {
        // Hooks that must run once cluster-wide (seed data), under the migration lock.
        let ran = hooks_stage(dir, &mut supervision);
        held.release();
        timings.hooks = Some(ran?);
    }
    if let Some(runtime) = runtime {
        // A DNS lookup stuck in the blocking pool must not hold the boot up.
        runtime.shutdown_background();
    }
    if let Some(dir) = &config.hooks {
        let (ran, took) = hooks_stage(dir, &mut supervision)?;
        let (before, before_took) = timings.hooks.unwrap_or_default();
        timings.hooks = Some((before + ran, before_took + took));
    }
    if config.app.is_none() {
        return Ok(0);
    }
    run_app(&config, &mut supervision, &timings, started)
}

/// What the migrate stage did, and how long it took.
type Migrated = (Summary, Duration);

/// The migration lock, held on the boot's runtime for the hooks that need it.
struct Held<'r> {
    lock: MigrationLock,
    runtime: &'r Runtime,
}

impl Held<'_> {
    fn release(self) {
        self.runtime.block_on(self.lock.release());
    }
}

fn hooks_stage(dir: &Path, supervision: &mut Supervision) -> Result<(usize, Duration), BootError> {
    logging::enter(Phase::Hooks);
    let began = Instant::now();
    let ran = hooks::run_all(dir, supervision).map_err(BootError::Hook)?;
    Ok((ran, began.elapsed()))
}

fn configure(invocation: Invocation) -> Result<(Config, Job), BootError> {
    let all = Stages {
        migrate: true,
        hooks: true,
    };
    Ok(match invocation {
        Invocation::Run { options, command } => {
            (Config::resolve(options, Some(command), all)?, Job::Run)
        }
        Invocation::Wait { options } => {
            // `roadie wait` reads the migrations only to wait for the schema.
            let stages = Stages {
                migrate: options.migrate.wait_for_schema,
                hooks: false,
            };
            (Config::resolve(options, None, stages)?, Job::Wait)
        }
        Invocation::Migrate { options } => (Config::resolve(options, None, all)?, Job::Migrate),
        Invocation::MigrateStatus { options, json } => {
            let stages = Stages {
                migrate: true,
                hooks: false,
            };
            (
                Config::resolve(options, None, stages)?,
                Job::Status { json },
            )
        }
    })
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

/// Waits for the database and the --wait-for targets, in parallel; what it waited for, when
/// there was anything, and the database's ready connection, for the migrate stage. `writes`:
/// a standby is not ready (or refused), as `--on-standby` says.
fn wait_stage(
    runtime: Option<&Runtime>,
    supervision: &Supervision,
    config: &Config,
    writes: bool,
) -> Result<(Option<Waited>, Option<Connection>), BootError> {
    // The database that is migrated hands its connection on, and is checked for a standby
    // when migrations will run there.
    let check = (writes && config.on_standby != OnStandby::Skip).then_some(config.on_standby);
    let mut targets: Vec<Target> = match (&config.database, &config.migrate_database) {
        (Some(app), Some(direct)) => vec![
            Target::database(app.clone(), "database", false, None),
            Target::database(direct.clone(), "migration database", true, check),
        ],
        (Some(app), None) => vec![Target::database(app.clone(), "database", true, check)],
        (None, _) => Vec::new(),
    };
    if let Some(direct) = &config.migrate_database {
        info!(
            "migrating through the {} ({})",
            direct.whereabouts(),
            direct.source
        );
    }
    match &config.database {
        Some(url) => info!("waiting for the {} ({})", url.whereabouts(), url.source),
        None => info!(
            "no database configured (--database-url, ROADIE_DATABASE_URL, DATABASE_URL, \
             POSTGRES_HOST): nothing to wait for or migrate"
        ),
    }
    targets.extend(config.wait_for.iter().cloned());
    let Some(runtime) = runtime.filter(|_| !targets.is_empty()) else {
        return Ok((None, None));
    };
    logging::enter(Phase::Wait);
    let (waited, connection) = wait::wait_for(runtime, supervision, &targets, config.wait_timeout)
        .map_err(BootError::Wait)?;
    Ok((Some(waited), connection))
}

/// Closes a connection the boot has no use for.
fn close(runtime: Option<&Runtime>, connection: Option<Connection>) {
    if let (Some(runtime), Some(connection)) = (runtime, connection) {
        runtime.block_on(connection.close());
    }
}

/// Runs the planned migrations under the lock and logs the summary line. Native migrations
/// and the lock go on the wait stage's connection, when it handed one on. With
/// `--locked-hooks`, the lock is handed back held (taken even when nothing migrates).
fn migrate_stage<'r>(
    runtime: Option<&'r Runtime>,
    supervision: &mut Supervision,
    config: &Config,
    connection: Option<Connection>,
) -> Result<(Option<Migrated>, Option<Held<'r>>), BootError> {
    let (Some(runtime), Some(url)) = (runtime, config.migrated_database()) else {
        return Ok((None, None));
    };
    logging::enter(Phase::Migrate);
    let connection = match skip_on_standby(runtime, config, url, connection)? {
        Some(connection) => connection,
        None => return Ok((None, None)),
    };
    let keep_lock = config.locked_hooks.is_some();
    let locking = Locking {
        timeout: config.lock_timeout,
        keep: keep_lock,
        ddl: config.ddl,
    };
    let began = Instant::now();
    let (summary, lock, connection) = match &config.migrate {
        Plan::Skip(why) => {
            if let Some(why) = why {
                info!("{why}");
            }
            (None, None, connection)
        }
        plan if config.wait_for_schema => {
            let scripts = alembic_scripts(config)?;
            let wait = migrate::schema::await_current(
                url,
                plan,
                scripts.as_ref(),
                connection,
                config.wait_timeout,
                supervision,
            );
            let (summary, connection) = runtime.block_on(wait).map_err(BootError::Migrate)?;
            (Some(summary), None, Some(connection))
        }
        Plan::Native(dir) => {
            let folder = Folder::read(dir, url.kind()).map_err(BootError::Migrate)?;
            let (summary, lock) = runtime
                .block_on(native::run(
                    &folder,
                    url,
                    connection,
                    locking,
                    config.stop_grace,
                    supervision,
                ))
                .map_err(BootError::Migrate)?;
            (Some(summary), lock, None)
        }
        Plan::Command(program) => {
            let scripts = match config.alembic.shortcut {
                true => alembic_scripts(config)?,
                false => None,
            };
            let (summary, lock) = migrate::command::run(
                runtime,
                supervision,
                url,
                program,
                connection,
                locking,
                scripts.as_ref(),
                config.migrate_database.as_ref().map(|d| d.as_given()),
            )
            .map_err(BootError::Migrate)?;
            (Some(summary), lock, None)
        }
    };
    if let Some(summary) = &summary {
        info!("{summary}");
    }
    let migrated = summary.map(|summary| (summary, began.elapsed()));
    let lock = match lock {
        Some(lock) => Some(lock),
        // Nothing migrated under the lock (skipped, or awaited), but hooks need it.
        None if keep_lock => {
            let acquire = MigrationLock::acquire(url, connection, config.lock_timeout);
            let (lock, _) = runtime
                .block_on(supervision.until_stopped(acquire))
                .map_err(MigrateError::from)
                .and_then(|acquired| acquired.map_err(MigrateError::from))
                .map_err(BootError::Migrate)?;
            Some(lock)
        }
        None => {
            close(Some(runtime), connection);
            None
        }
    };
    Ok((migrated, lock.map(|lock| Held { lock, runtime })))
}

/// `--on-standby skip`: a standby is migrated by nobody; the app starts. `Some` hands the
/// connection back when migrating goes on.
fn skip_on_standby(
    runtime: &Runtime,
    config: &Config,
    url: &DatabaseUrl,
    connection: Option<Connection>,
) -> Result<Option<Option<Connection>>, BootError> {
    if config.on_standby != OnStandby::Skip || matches!(config.migrate, Plan::Skip(_)) {
        return Ok(Some(connection));
    }
    let read_only = runtime.block_on(async {
        let mut conn = match Connection::if_alive(connection).await {
            Some(conn) => conn,
            None => url.connect().await?,
        };
        standby::read_only(&mut conn).await.map(|r| (r, conn))
    });
    match read_only {
        Ok((None, conn)) => Ok(Some(Some(conn))),
        Ok((Some(why), conn)) => {
            info!(
                "the {} is {why}: --on-standby skip, not migrating",
                url.whereabouts()
            );
            runtime.block_on(conn.close());
            Ok(None)
        }
        Err(e) => Err(BootError::Migrate(migrate::MigrateError::Unavailable(
            format!("checking for a standby: {e}"),
        ))),
    }
}

/// `roadie migrate status`: a table on stdout, or one JSON array with `--json`.
fn status(runtime: Option<&Runtime>, config: &Config, json: bool) -> Result<u8, BootError> {
    let (Some(runtime), Some(url)) = (runtime, config.migrated_database()) else {
        return Err(BootError::Migrate(MigrateError::Unavailable(
            "no database configured: nothing to show".into(),
        )));
    };
    let scripts = alembic_scripts(config)?;
    migrate::status::show(runtime, url, &config.migrate, scripts.as_ref(), json)
        .map_err(BootError::Migrate)?;
    Ok(0)
}

/// The alembic project the plan's command works on, when it is `alembic upgrade head` and
/// roadie can read it without Python.
fn alembic_scripts(config: &Config) -> Result<Option<Scripts>, BootError> {
    match &config.migrate {
        Plan::Command(program) => {
            Scripts::of_command(program, &config.alembic.version_table).map_err(BootError::Migrate)
        }
        _ => Ok(None),
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
            stop_grace: config.stop_grace,
            forward: config.forward.clone(),
            success_codes: config.success_codes.clone(),
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
                success_codes: &config.success_codes,
            },
        )
        .map_err(|e| match e {
            RunError::Spawn(source) => BootError::Spawn {
                command: name.clone(),
                source,
            },
            RunError::Signals(source) => BootError::Internal {
                about: "waiting for signals",
                source,
            },
        })?;
    Ok(ended.reported_code(&config.success_codes))
}

/// How long each phase took, for the line that starts the app.
#[derive(Debug, Default)]
struct Timings {
    waited: Option<Waited>,
    migrated: Option<Migrated>,
    hooks: Option<(usize, Duration)>,
}

impl Timings {
    /// The line that starts the app: `ready in 1.73s (database 1.40s, 2 migrations 0.31s,
    /// hooks 0.02s); starting uvicorn (pid 7)`, each phase also a field for JSON logs.
    fn log_start(&self, started: Instant, name: &str, pid: libc::pid_t) {
        let total = started.elapsed();
        let secs = |d: Duration| d.as_secs_f64();
        let applied = self
            .migrated
            .as_ref()
            .and_then(|(summary, _)| match summary {
                Summary::Applied { count, .. } => Some(*count as u64),
                Summary::UpToDate { .. }
                | Summary::Awaited { .. }
                | Summary::AlembicAtHead { .. } => Some(0),
                Summary::Command { .. } => None,
            });
        let ready = self.ready_line(total);
        info!(
            wait_s = self.waited.as_ref().map(|w| secs(w.took)),
            waited_for = self.waited.as_ref().map(|w| w.last.as_str()),
            migrate_s = self.migrated.as_ref().map(|(_, took)| secs(*took)),
            applied,
            hooks_s = self.hooks.map(|(_, took)| secs(took)),
            total_s = (!ready.is_empty()).then(|| secs(total)),
            "{ready}starting {name} (pid {pid})"
        );
    }

    /// `ready in 1.73s (database 1.40s, 2 migrations 0.31s, hooks 0.02s); `, or nothing when
    /// no phase ran.
    fn ready_line(&self, total: Duration) -> String {
        let mut parts = Vec::new();
        if let Some(waited) = &self.waited {
            parts.push(format!("{} {:.2}s", waited.last, waited.took.as_secs_f64()));
        }
        if let Some((summary, took)) = &self.migrated {
            let what = match summary {
                Summary::Applied { count: 1, .. } => "1 migration".to_string(),
                Summary::Applied { count, .. } => format!("{count} migrations"),
                Summary::UpToDate { .. } | Summary::AlembicAtHead { .. } => {
                    "schema up to date".into()
                }
                Summary::Awaited { .. } => "schema awaited".into(),
                Summary::Command { .. } => "migration command".into(),
            };
            let lock = summary
                .lock_waited()
                .filter(|w| *w >= Duration::from_millis(10))
                .map(|w| format!(" incl. {:.2}s waiting for the lock", w.as_secs_f64()))
                .unwrap_or_default();
            parts.push(format!("{what} {:.2}s{lock}", took.as_secs_f64()));
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
            total.as_secs_f64(),
            parts.join(", ")
        )
    }
}
