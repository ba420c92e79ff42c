//! Any migrator (`alembic upgrade head`, `dbmate up`, ...) run under the lock as a supervised
//! child: signals forwarded, reaped by the one reaper, `--user` applied. The lock's connection
//! (the wait stage's, when it handed one on) idles meanwhile, holding no snapshot. Its
//! environment gains `PGOPTIONS` for `--ddl-lock-timeout`; a watch on a thread of its own
//! stops it when the database stops answering. Its output is never touched.

use std::ffi::OsString;
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;
use tracing::{debug, info};

use super::at_head::{Reading, Scripts};
use super::lock;
use super::schema_wait;
use super::watch::{COMMAND_APPLICATION, WATCH_EVERY, Watch, Watched};
use super::{Locking, MigrateError, QUERY_TIMEOUT, Summary, bounded};
use crate::children::{ChildExit, Program};
use crate::database::lock::MigrationLock;
use crate::database::{Connection, DatabaseUrl};
use crate::supervise::{Child, Stage, Stopped, Supervision};

/// A migration command as the migrate stage runs it.
///
/// It takes the lock (on the wait stage's connection when it still answers), runs `program`
/// to its end, releases the lock, or with `locking.keep` (hooks must run under it next) hands
/// it back held. With `scripts` (the command is `alembic upgrade head` and roadie reads its
/// project), the database at head is checked first: then neither the lock nor alembic is
/// needed; a replica that waited for the lock checks again under it and usually finds the work
/// done. Meanwhile a watch (see [`CommandWatch`]) asks the database on a session of its own
/// whether it still answers and, with `ddl.lock_timeout`, whether the command waits for a
/// table lock. With `--migrate-database-url`, `url` is that direct URL (`direct`, as given),
/// and the command finds it in its environment as `DATABASE_URL` (what alembic's env.py and
/// most frameworks read) and as `ROADIE_MIGRATE_DATABASE_URL`: it migrates the database roadie
/// locks, not the pooler.
pub struct CommandRun<'a> {
    pub url: &'a DatabaseUrl,
    pub program: &'a Program,
    pub locking: Locking,
    pub scripts: Option<&'a Scripts>,
    pub direct: Option<&'a str>,
}

/// What the stage hands back: its summary, and the lock when hooks must run under it.
type Outcome = Result<(Summary, Option<MigrationLock>), MigrateError>;

impl CommandRun<'_> {
    pub fn run(
        &self,
        runtime: &Runtime,
        supervision: &mut Supervision,
        reused: Option<Connection>,
    ) -> Outcome {
        let mut reused = reused;
        let mut reader = None;
        // At head before the lock: it is taken only for --locked-hooks.
        let mut for_hooks = false;
        if let Some(scripts) = self.scripts {
            let mut conn = runtime.block_on(schema_wait::session(self.url, reused.take()))?;
            match runtime.block_on(scripts.reading(&mut conn))? {
                Reading::AtHead(head) if !self.locking.keep => {
                    runtime.block_on(conn.close());
                    let summary = Summary::AlembicAtHead {
                        head,
                        lock_waited: None,
                        for_hooks: false,
                    };
                    return Ok((summary, None));
                }
                Reading::AtHead(_) => for_hooks = true,
                Reading::Pending(missing) => info!(
                    "{} in {} lacks {}: {:?} runs",
                    scripts.table(),
                    self.url,
                    match missing.as_slice() {
                        [] => "a row for this image's head".to_string(),
                        [one] => format!("revision {one}"),
                        many => format!("revisions {}", many.join(", ")),
                    },
                    self.program.command_line(),
                ),
            }
            reader = Some(conn);
        }
        let acquire = lock::acquire(self.url, reused, self.locking.timeout);
        let (lock, waited) = runtime.block_on(supervision.until_stopped(acquire))??;
        let lock = match (self.scripts, reader) {
            (Some(scripts), Some(conn)) => {
                match self.at_head_under_lock(runtime, scripts, conn, (lock, waited), for_hooks)? {
                    Ok(done) => return Ok(done),
                    Err(lock) => lock,
                }
            }
            _ => lock,
        };
        self.run_locked(runtime, supervision, lock, waited)
    }

    /// Reads the version table again under the lock: at head (another replica migrated it,
    /// or it was at head already and `for_hooks` took the lock), the stage is done
    /// (`Ok(Ok)`); else the lock is handed back to run alembic.
    fn at_head_under_lock(
        &self,
        runtime: &Runtime,
        scripts: &Scripts,
        mut conn: Connection,
        (lock, waited): (MigrationLock, Duration),
        for_hooks: bool,
    ) -> Result<Result<(Summary, Option<MigrationLock>), MigrationLock>, MigrateError> {
        let reading = runtime.block_on(scripts.reading(&mut conn));
        runtime.block_on(conn.close());
        let head = match reading {
            Ok(Reading::AtHead(head)) => head,
            Ok(Reading::Pending(_)) => return Ok(Err(lock)),
            Err(e) => {
                let _ = runtime.block_on(lock.release());
                return Err(e);
            }
        };
        let summary = Summary::AlembicAtHead {
            head,
            lock_waited: Some(waited),
            for_hooks,
        };
        if self.locking.keep {
            return Ok(Ok((summary, Some(lock))));
        }
        let _ = runtime.block_on(lock.release());
        Ok(Ok((summary, None)))
    }

    /// Runs the command under the lock, watched, and says how it ended.
    fn run_locked(
        &self,
        runtime: &Runtime,
        supervision: &mut Supervision,
        lock: MigrationLock,
        waited: Duration,
    ) -> Outcome {
        let program = self.program;
        let ddl_lock_timeout = self
            .locking
            .ddl
            .lock_timeout
            .filter(|_| self.url.driver().has_lock_timeout());
        let mut lock = lock;
        let identity = runtime.block_on(lock_identity(&mut lock));
        if let Err(e) = runtime.block_on(self.wait_for_earlier_migrators(&mut lock, waited)) {
            runtime.block_on(async {
                let _ = bounded("releasing the migration lock", lock.release()).await;
            });
            return Err(e);
        }
        let (watch, server_version) = CommandWatch::start(self.url, ddl_lock_timeout, identity);
        let env = self.environment(ddl_lock_timeout, server_version);
        let started = Instant::now();
        let ended = supervision.run(program, Child::Migrator { env: &env });
        let seen = watch.map(CommandWatch::stop).unwrap_or_default();
        if let Some(lost) = seen.lost {
            // Its goodbye would wait for the network too: the server frees the lock when its
            // keepalives give up on the session.
            drop(lock);
            return Err(lost.during(format_args!(
                "while {:?} ran (the command was stopped and the app is not started)",
                program.command_line()
            )));
        }
        let succeeded = matches!(
            &ended,
            Ok(ended) if ended.stopped_by.is_none() && ended.exit == ChildExit::Exited(0)
        );
        let took = started.elapsed();
        let landed = match succeeded {
            true => self.landed(runtime, &mut lock),
            false => Ok(None),
        };
        let landed = match landed {
            Ok(landed) => landed,
            Err(e) => {
                let _ = runtime.block_on(bounded("releasing the migration lock", lock.release()));
                return Err(e);
            }
        };
        let lock = match self.locking.keep && succeeded {
            true => Some(lock),
            false => {
                self.release_after(runtime, lock, succeeded)?;
                None
            }
        };
        let ended = ended.map_err(|e| MigrateError::from_run(e, program))?;
        if let Some(signal) = ended.stopped_by {
            return Err(MigrateError::Stopped(Stopped {
                signal,
                during: Stage::Migrate,
            }));
        }
        match ended.exit {
            ChildExit::Exited(0) => {
                let summary = Summary::Command {
                    took,
                    lock_waited: waited,
                    landed,
                };
                Ok((summary, lock))
            }
            exit => Err(MigrateError::CommandFailed {
                command: program.command_line(),
                exit,
                note: seen
                    .blocker
                    .map(|blocker| lock_timeout_note(&blocker, ddl_lock_timeout)),
            }),
        }
    }
}

impl CommandRun<'_> {
    /// What the command's environment gains: `PGOPTIONS` and `PGAPPNAME` (`command_env`), and
    /// with `--migrate-database-url` that URL as `DATABASE_URL` and
    /// `ROADIE_MIGRATE_DATABASE_URL`.
    fn environment(
        &self,
        ddl_lock_timeout: Option<Duration>,
        server_version: Option<i32>,
    ) -> Vec<(OsString, OsString)> {
        let mut env = command_env(ddl_lock_timeout, server_version, &|name| {
            std::env::var_os(name)
        });
        if let Some(text) = self.direct {
            for name in ["DATABASE_URL", "ROADIE_MIGRATE_DATABASE_URL"] {
                env.push((name.into(), text.into()));
            }
        }
        env
    }

    /// Releases the lock after the command. A command that succeeded under a lock whose
    /// transaction did not last to the end may have run beside another replica's: said, and the
    /// app is not started.
    fn release_after(
        &self,
        runtime: &Runtime,
        lock: MigrationLock,
        succeeded: bool,
    ) -> Result<(), MigrateError> {
        let released = runtime.block_on(bounded("releasing the migration lock", lock.release()));
        let why = match released {
            Ok(Ok(())) => return Ok(()),
            _ if !succeeded => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(silence) => crate::logging::one_line(&silence),
        };
        Err(MigrateError::gone(format!(
            "the migration lock was not held to the end of {:?} (releasing it: {why}); another \
             replica may have migrated beside it: check the schema before starting the app",
            self.program.command_line()
        )))
    }

    /// After the command exited 0, proves the migration landed: the version table of the
    /// database roadie reads is at head (its head), or 65 saying where roadie looked. A
    /// command roadie cannot read (`None` scripts) is taken at its word. Read on the lock's
    /// session, still held (no second login; SQLite's lock is a file, so a session of its own).
    fn landed(
        &self,
        runtime: &Runtime,
        lock: &mut MigrationLock,
    ) -> Result<Option<String>, MigrateError> {
        let Some(scripts) = self.scripts else {
            return Ok(None);
        };
        let command = self.program.command_line();
        const READING: &str = "reading the version table back";
        runtime.block_on(async {
            match lock.connection() {
                Some(conn) => bounded(READING, scripts.landed(conn, self.url, &command)).await?,
                // SQLite: the lock is a file.
                None => {
                    let mut conn = schema_wait::session(self.url, None).await?;
                    let landed =
                        bounded(READING, scripts.landed(&mut conn, self.url, &command)).await;
                    conn.close().await;
                    landed?
                }
            }
            .map(Some)
        })
    }
}

/// The lock's session (server-side id) and key, for the watch to check it is still held.
async fn lock_identity(lock: &mut MigrationLock) -> Option<(i64, i64)> {
    let key = lock.advisory_key()?;
    let backend = bounded("", lock.backend_id()).await.ok().flatten()?;
    Some((backend, key))
}

impl CommandRun<'_> {
    /// Fencing: a holder whose lock was lost stops its command, but its sessions may outlive
    /// the loss for a while (until its roadie's SIGTERM, or the server's keepalives, end them).
    /// Before starting its own command, a new holder waits until no session of an earlier
    /// holder's command (named by `PGAPPNAME`) runs a statement or holds a transaction, up to
    /// what is left of `--lock-timeout`.
    async fn wait_for_earlier_migrators(
        &self,
        lock: &mut MigrationLock,
        waited: Duration,
    ) -> Result<(), MigrateError> {
        let Some(conn) = lock.connection() else {
            return Ok(());
        };
        let left = self.locking.timeout.saturating_sub(waited);
        let started = Instant::now();
        let mut said = false;
        loop {
            const ASKING: &str = "looking for an earlier migration command's sessions";
            let open = bounded(ASKING, conn.sessions_named(COMMAND_APPLICATION)).await?;
            let open = open.map_err(|e| MigrateError::unavailable(ASKING, e))?;
            if open.is_empty() {
                return Ok(());
            }
            if started.elapsed() >= left {
                return Err(MigrateError::LockTimedOut {
                    timeout: self.locking.timeout,
                    holder: Some(format!(
                        "an earlier holder's migration command, whose sessions ({COMMAND_APPLICATION:?}) are still open: {}",
                        open.join(", ")
                    )),
                });
            }
            if !said {
                tracing::info!(
                    "waiting for an earlier migration command's sessions to end before starting \
                     this one (its replica lost the lock): {}",
                    open.join(", ")
                );
                said = true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// What the failure line adds when the watch saw the command wait for a table lock.
fn lock_timeout_note(blocker: &str, timeout: Option<Duration>) -> String {
    format!(
        "it waited for a table lock held by {blocker}, and --ddl-lock-timeout {} was set: most \
         likely it gave up on that lock timeout (see its output); deploy again when the blocker \
         is done",
        humantime::format_duration(timeout.unwrap_or_default())
    )
}

/// What the command's environment gains with `--ddl-lock-timeout`: `PGOPTIONS` with
/// `lock_timeout` and the server-side bounds roadie's own sessions have (keepalives; from
/// PostgreSQL 14, whose `server_version_num` is 140000, the client check of a running
/// statement), after any `PGOPTIONS` the container sets (the later `-c` wins); `PGAPPNAME`
/// unless set. libpq reads both, so psycopg, psycopg2 and every libpq client honour them;
/// asyncpg does not. An older server would refuse a connection naming a setting it lacks.
fn command_env(
    timeout: Option<Duration>,
    server_version: Option<i32>,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Vec<(OsString, OsString)> {
    let mut vars = Vec::new();
    if let Some(timeout) = timeout {
        vars.push(pgoptions(timeout, server_version, env));
    }
    if env("PGAPPNAME").is_none() {
        vars.push(("PGAPPNAME".into(), COMMAND_APPLICATION.into()));
    }
    vars
}

/// `PGOPTIONS`: the container's, then `lock_timeout` and the server-side bounds.
fn pgoptions(
    timeout: Duration,
    server_version: Option<i32>,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> (OsString, OsString) {
    let mut ours = format!(
        "-c lock_timeout={}ms -c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 \
         -c tcp_keepalives_count=3",
        timeout.as_millis().max(1)
    );
    if server_version.is_some_and(|v| v >= 140_000) {
        ours.push_str(" -c client_connection_check_interval=1s");
    }
    let mut options = env("PGOPTIONS")
        .filter(|o| !o.is_empty())
        .unwrap_or_default();
    if !options.is_empty() {
        options.push(" ");
    }
    options.push(ours);
    ("PGOPTIONS".into(), options)
}

/// Watches the database while the command runs, on a thread and a session of its own (the
/// one watch, `watch.rs`).
///
/// If the database stops answering (a partition), the command would hang on its own socket for
/// as long as its driver lets it (libpq: the kernel's two hours): the watch then stops it the
/// way `docker stop` would, by a SIGTERM to roadie that the supervisor forwards (then SIGKILL
/// after --stop-grace), and the stage ends with 69.
///
/// roadie passes the command's output through untouched (a pipe in between would turn a
/// terminal into a pipe and change its buffering and interleaving), so it cannot read "lock
/// timeout" there; with `--ddl-lock-timeout` the watch asks the server instead whether a
/// session named [`COMMAND_APPLICATION`] waits for a lock, and who blocks it.
struct CommandWatch {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<WatchReport>,
}

/// What the watch saw.
#[derive(Default)]
struct WatchReport {
    /// The last session seen blocking the command's.
    blocker: Option<String>,
    /// Why the database counts as gone, if it stopped answering.
    lost: Option<MigrateError>,
}

impl CommandWatch {
    /// Starts watching a server database. With `--ddl-lock-timeout` the watch connects before
    /// the command starts (lock waits come early, and the server's version decides
    /// `PGOPTIONS`) and the version is returned; without, it connects only once the command
    /// has run for [`WATCH_EVERY`], so a command with nothing to do costs no second login.
    /// The session lives on the watch's thread and its runtime: a socket is driven by the
    /// runtime it was opened on, and the boot's idles while the command runs.
    fn start(
        url: &DatabaseUrl,
        ddl_lock_timeout: Option<Duration>,
        lock: Option<(i64, i64)>,
    ) -> (Option<Self>, Option<i32>) {
        if !url.driver().has_server() {
            return (None, None);
        }
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let (connected, version) = std::sync::mpsc::channel();
        let url = url.clone();
        let thread = std::thread::spawn(move || {
            let mut report = WatchReport::default();
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return report;
            };
            runtime.block_on(async {
                if ddl_lock_timeout.is_none() {
                    tokio::select! {
                        _ = &mut stopped => return,
                        _ = tokio::time::sleep(WATCH_EVERY) => {}
                    }
                }
                let opened = Watch::open(&url, Watched::Command { lock }, ddl_lock_timeout).await;
                let lost = match opened {
                    Ok(Some(Ok(mut watch))) => {
                        let _ = connected.send(watch.server_version().await);
                        tokio::select! {
                            _ = &mut stopped => {
                                watch.close().await;
                                None
                            }
                            // Dropped without a goodbye: it would wait for the network too.
                            lost = watch.until_lost(&mut report.blocker) => Some(lost),
                        }
                    }
                    Ok(Some(Err(e))) => {
                        debug!("no watch beside the migration command: {e}");
                        None
                    }
                    Ok(None) => None,
                    Err(silence) => Some(silence),
                };
                if let Some(lost) = lost {
                    tracing::error!(
                        "{}: stopping the migration command",
                        crate::logging::one_line(&lost)
                    );
                    report.lost = Some(lost);
                    // A stop request through the supervisor's own path (TERM forwarded, KILL
                    // after --stop-grace). sigqueue, not kill: signals/source.rs drops a
                    // kill(2) roadie sent itself (SI_USER) as self-raised; SI_QUEUE is asked for.
                    // SAFETY: sigqueue(3) to roadie itself, with an empty value.
                    unsafe { libc::sigqueue(libc::getpid(), libc::SIGTERM, std::mem::zeroed()) };
                }
            });
            report
        });
        let watch = Some(CommandWatch { stop, thread });
        if ddl_lock_timeout.is_none() {
            return (watch, None);
        }
        // The sender is dropped without a word when there is no session: then no version.
        let server_version = version
            .recv_timeout(QUERY_TIMEOUT + Duration::from_secs(1))
            .ok()
            .flatten();
        (watch, server_version)
    }

    fn stop(self) -> WatchReport {
        let _ = self.stop.send(());
        self.thread.join().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(
        None,
        None,
        "-c lock_timeout=2000ms -c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3",
        true
    )]
    #[case(
        Some("-c search_path=app"),
        None,
        "-c search_path=app -c lock_timeout=2000ms -c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3",
        true
    )]
    #[case(
        Some(""),
        Some("billing"),
        "-c lock_timeout=2000ms -c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3",
        false
    )]
    fn the_command_gets_the_lock_timeout_after_the_containers_pgoptions(
        #[case] pgoptions: Option<&str>,
        #[case] pgappname: Option<&str>,
        #[case] expected: &str,
        #[case] named: bool,
    ) {
        let env = |name: &str| match name {
            "PGOPTIONS" => pgoptions.map(OsString::from),
            "PGAPPNAME" => pgappname.map(OsString::from),
            _ => None,
        };
        let vars = command_env(Some(Duration::from_secs(2)), Some(130_000), &env);
        assert_eq!(vars[0], ("PGOPTIONS".into(), expected.into()));
        assert_eq!(
            vars.iter().any(|(k, _)| k == "PGAPPNAME"),
            named,
            "{vars:?}"
        );
    }

    #[rstest]
    #[case(None, false)]
    #[case(Some(130_018), false)]
    #[case(Some(140_000), true)]
    #[case(Some(150_010), true)]
    fn the_client_check_is_asked_only_of_servers_that_know_it(
        #[case] version: Option<i32>,
        #[case] asked: bool,
    ) {
        let vars = command_env(Some(Duration::from_secs(2)), version, &|_| None);
        let options = vars[0].1.to_string_lossy().into_owned();
        assert_eq!(
            options.contains("-c client_connection_check_interval=1s"),
            asked,
            "{options}"
        );
    }
}
