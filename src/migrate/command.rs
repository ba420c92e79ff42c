//! Any migrator (`alembic upgrade head`, `dbmate up`, ...) run under the lock as a supervised
//! child: signals forwarded, reaped by the one reaper, `--user` applied. The lock's connection
//! (the wait stage's, when it handed one on) idles meanwhile, holding no snapshot. Its
//! environment gains `PGOPTIONS` for `--ddl-lock-timeout`; a watch on a thread of its own
//! stops it when the database stops answering. Its output is never touched.

use std::ffi::OsString;
use std::time::{Duration, Instant};

use sqlx::Connection as _;
use tokio::runtime::Runtime;
use tracing::debug;

use super::at_head::{Reading, Scripts};
use super::lock::MigrationLock;
use super::native::{BlockerRow, SERVER_BOUNDS, WATCH_EVERY, describe_blocker};
use super::schema_wait;
use super::{Locking, MigrateError, QUERY_TIMEOUT, Summary, bounded};
use crate::children::{ChildExit, Program};
use crate::database::{Connection, DatabaseUrl, Kind, on_each_driver, sqlstate};
use crate::supervise::{Child, RunError, Supervision};

/// Takes the lock (on `reused` when it still answers), runs `program` to its end, releases
/// the lock, or with `locking.keep` (hooks must run under it next) hands it back held. With
/// `scripts` (the command is `alembic upgrade head` and roadie reads its project), the
/// database at head is checked first: then neither the lock nor alembic is needed; a replica
/// that waited for the lock checks again under it and usually finds the work done.
/// Meanwhile a watch (see [`CommandWatch`]) asks the database on a session of its own whether
/// it still answers and, with `ddl.lock_timeout`, whether the command waits for a table lock.
/// With `--migrate-database-url`, `url` is that direct URL (`direct`, as given), and the
/// command finds it in its environment as `DATABASE_URL` (what alembic's env.py and most
/// frameworks read) and as `ROADIE_MIGRATE_DATABASE_URL`: it migrates the database roadie
/// locks, not the pooler.
// The stage's whole context, each a different concern; grouping them would only rename it.
#[allow(clippy::too_many_arguments)]
pub fn run(
    runtime: &Runtime,
    supervision: &mut Supervision,
    url: &DatabaseUrl,
    program: &Program,
    reused: Option<Connection>,
    locking: Locking,
    scripts: Option<&Scripts>,
    direct: Option<&str>,
) -> Result<(Summary, Option<MigrationLock>), MigrateError> {
    let ddl = locking.ddl;
    let mut reused = reused;
    let mut reader = None;
    if let Some(scripts) = scripts {
        let mut conn = runtime.block_on(schema_wait::session(url, reused.take()))?;
        if let Reading::AtHead(head) = runtime.block_on(scripts.reading(&mut conn))?
            && !locking.keep
        {
            runtime.block_on(conn.close());
            let summary = Summary::AlembicAtHead {
                head,
                lock_waited: None,
            };
            return Ok((summary, None));
        }
        reader = Some(conn);
    }
    let acquire = MigrationLock::acquire(url, reused, locking.timeout);
    let (lock, waited) = runtime.block_on(supervision.until_stopped(acquire))??;
    if let (Some(scripts), Some(mut conn)) = (scripts, reader) {
        let reading = runtime.block_on(scripts.reading(&mut conn));
        runtime.block_on(conn.close());
        let head = match reading {
            Ok(Reading::AtHead(head)) => head,
            Ok(Reading::Pending(_)) => String::new(),
            Err(e) => {
                runtime.block_on(lock.release());
                return Err(e);
            }
        };
        if !head.is_empty() {
            let summary = Summary::AlembicAtHead {
                head,
                lock_waited: Some(waited),
            };
            if locking.keep {
                return Ok((summary, Some(lock)));
            }
            runtime.block_on(lock.release());
            return Ok((summary, None));
        }
    }
    let ddl_lock_timeout = ddl.lock_timeout.filter(|_| url.kind() == Kind::Postgres);
    let (watch, server_version) = CommandWatch::start(url, ddl_lock_timeout);
    let mut env = match ddl_lock_timeout {
        Some(timeout) => command_env(timeout, server_version, &|name| std::env::var_os(name)),
        None => Vec::new(),
    };
    if let Some(text) = direct {
        for name in ["DATABASE_URL", "ROADIE_MIGRATE_DATABASE_URL"] {
            env.push((name.into(), text.into()));
        }
    }
    let started = Instant::now();
    let ended = supervision.run(program, Child::Migrator { env: &env });
    let seen = watch.map(CommandWatch::stop).unwrap_or_default();
    if let Some(lost) = seen.lost {
        // Its goodbye would wait for the network too: the server frees the lock when its
        // keepalives give up on the session.
        drop(lock);
        return Err(MigrateError::Unavailable(format!(
            "while {:?} ran: {lost}; the command was stopped and the app is not started",
            program.command_line()
        )));
    }
    let succeeded = matches!(
        &ended,
        Ok(ended) if ended.stopped_by.is_none() && ended.exit == ChildExit::Exited(0)
    );
    let lock = if locking.keep && succeeded {
        Some(lock)
    } else {
        runtime.block_on(async {
            let _ = bounded("releasing the migration lock", lock.release()).await;
        });
        None
    };
    let ended = ended.map_err(|e| match e {
        RunError::Spawn(e) => MigrateError::Exec {
            command: program.command_line(),
            error: e,
        },
        RunError::Signals(source) => MigrateError::Internal {
            about: "running the migration command",
            source,
        },
    })?;
    if let Some(signal) = ended.stopped_by {
        return Err(MigrateError::Stopped(signal));
    }
    match ended.exit {
        ChildExit::Exited(0) => Ok((
            Summary::Command {
                took: started.elapsed(),
                lock_waited: waited,
            },
            lock,
        )),
        exit => Err(MigrateError::CommandFailed {
            command: program.command_line(),
            exit,
            note: seen.blocker.map(|blocker| {
                format!(
                    "it waited for a table lock held by {blocker}, and --ddl-lock-timeout {} \
                     was set: most likely it gave up on that lock timeout (see its output); \
                     deploy again when the blocker is done",
                    humantime::format_duration(ddl_lock_timeout.unwrap_or_default())
                )
            }),
        }),
    }
}

/// The application name the command's libpq sessions get (through `PGAPPNAME`, unless the
/// container sets one), so the watch can tell them from the app's.
const COMMAND_APPLICATION: &str = "roadie (migration command)";

/// What the command's environment gains with `--ddl-lock-timeout`: `PGOPTIONS` with
/// `lock_timeout` and the server-side bounds roadie's own sessions have (keepalives; from
/// PostgreSQL 14, whose `server_version_num` is 140000, the client check of a running
/// statement), after any `PGOPTIONS` the container sets (the later `-c` wins); `PGAPPNAME`
/// unless set. libpq reads both, so psycopg, psycopg2 and every libpq client honour them;
/// asyncpg does not. An older server would refuse a connection naming a setting it lacks.
fn command_env(
    timeout: Duration,
    server_version: Option<i32>,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Vec<(OsString, OsString)> {
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
    let mut vars = vec![(OsString::from("PGOPTIONS"), options)];
    if env("PGAPPNAME").is_none() {
        vars.push(("PGAPPNAME".into(), COMMAND_APPLICATION.into()));
    }
    vars
}

/// Watches the database while the command runs, on a thread and a session of its own.
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
    thread: std::thread::JoinHandle<Seen>,
}

/// What the watch saw.
#[derive(Default)]
struct Seen {
    /// The last session seen blocking the command's.
    blocker: Option<String>,
    /// Why the database counts as gone, if it stopped answering.
    lost: Option<String>,
}

impl CommandWatch {
    /// The watch's session and the server's version (PostgreSQL, when it says); `Err` with
    /// the line to log when the database did not answer within the bound, `Ok(None)` when the
    /// session could not be had for another reason (no watch then).
    async fn connect(url: &DatabaseUrl) -> Result<Option<(Connection, Option<i32>)>, String> {
        // Each host of a multi-host URL in turn, as the command's own driver would. Unnamed:
        // behind a transaction pooler a name would stay on the server connection.
        let mut conn = match bounded("connecting the watch session", url.connect()).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                debug!("no watch beside the migration command: {e}");
                return Ok(None);
            }
            Err(silence) => return Err(said(silence)),
        };
        if url.kind() == Kind::Postgres
            && let Ok(Err(e)) = bounded("", conn.execute(SERVER_BOUNDS)).await
        {
            debug!("the command's watch session keeps the server's defaults: {e}");
        }
        let version = match &mut conn {
            #[cfg(feature = "postgres")]
            Connection::Postgres(c) => bounded(
                "",
                sqlx::query_scalar::<_, String>("SELECT current_setting('server_version_num')")
                    .fetch_one(c),
            )
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|v| v.parse().ok()),
            _ => None,
        };
        Ok(Some((conn, version)))
    }

    /// Starts watching a server database. With `--ddl-lock-timeout` the watch connects before
    /// the command starts (lock waits come early, and the server's version decides
    /// `PGOPTIONS`) and the version is returned; without, it connects only once the command
    /// has run for [`WATCH_EVERY`], so a command with nothing to do costs no second login.
    /// The session lives on the watch's thread and its runtime: a socket is driven by the
    /// runtime it was opened on, and the boot's idles while the command runs.
    fn start(url: &DatabaseUrl, ddl_lock_timeout: Option<Duration>) -> (Option<Self>, Option<i32>) {
        if url.kind() == Kind::Sqlite {
            return (None, None);
        }
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let (connected, version) = std::sync::mpsc::channel();
        let url = url.clone();
        let thread = std::thread::spawn(move || {
            let mut seen = Seen::default();
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return seen;
            };
            runtime.block_on(async {
                if ddl_lock_timeout.is_none() {
                    tokio::select! {
                        _ = &mut stopped => return,
                        _ = tokio::time::sleep(WATCH_EVERY) => {}
                    }
                }
                let lost = match Self::connect(&url).await {
                    Ok(Some((conn, server_version))) => {
                        let _ = connected.send(server_version);
                        watch(conn, ddl_lock_timeout, &mut stopped, &mut seen).await
                    }
                    Ok(None) => None,
                    Err(silence) => Some(silence),
                };
                if let Some(lost) = lost {
                    tracing::error!("{lost}: stopping the migration command");
                    seen.lost = Some(lost);
                    // A stop request through the supervisor's own path (TERM forwarded, KILL
                    // after --stop-grace). sigqueue, not kill: signals/source.rs drops a
                    // kill(2) roadie sent itself (SI_USER) as self-raised; SI_QUEUE is asked for.
                    // SAFETY: sigqueue(3) to roadie itself, with an empty value.
                    unsafe { libc::sigqueue(libc::getpid(), libc::SIGTERM, std::mem::zeroed()) };
                }
            });
            seen
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

    fn stop(self) -> Seen {
        let _ = self.stop.send(());
        self.thread.join().unwrap_or_default()
    }
}

/// Looks every so often until `stopped`; the line to log if the database stops answering.
async fn watch(
    mut conn: Connection,
    ddl_lock_timeout: Option<Duration>,
    stopped: &mut tokio::sync::oneshot::Receiver<()>,
    seen: &mut Seen,
) -> Option<String> {
    // Often enough to see a wait that the timeout ends.
    let every = match ddl_lock_timeout {
        Some(t) => (t / 4).clamp(Duration::from_millis(20), WATCH_EVERY),
        None => WATCH_EVERY,
    };
    loop {
        tokio::select! {
            _ = &mut *stopped => break,
            _ = tokio::time::sleep(every) => {}
        }
        let looked = bounded(
            "watching the migration command",
            look(&mut conn, ddl_lock_timeout.is_some()),
        )
        .await;
        match looked {
            Ok(Ok(Some(blocker))) => seen.blocker = Some(blocker),
            Ok(Ok(None)) => {}
            Ok(Err(e)) if sqlstate::is_connection_loss(&e) => {
                // Dropped without a goodbye: it would wait for the network too.
                return Some(format!("the watch session was lost: {e}"));
            }
            Ok(Err(e)) => debug!("watching the migration command: {e}"),
            Err(silence) => return Some(said(silence)),
        }
    }
    let _ = bounded("", conn.close()).await;
    None
}

/// The line of a database that did not answer, without the stage's prefix.
fn said(error: MigrateError) -> String {
    match error {
        MigrateError::Unavailable(line) => line,
        other => other.to_string(),
    }
}

/// One look: who blocks the command's sessions (PostgreSQL, with `blockers`), else a ping.
#[allow(unreachable_patterns)]
async fn look(conn: &mut Connection, blockers: bool) -> Result<Option<String>, sqlx::Error> {
    match conn {
        #[cfg(feature = "postgres")]
        Connection::Postgres(c) if blockers => {
            let row: Option<BlockerRow> = sqlx::query_as(
                "SELECT b.pid, b.application_name, b.state, \
                            to_char(b.query_start, 'YYYY-MM-DD HH24:MI:SS TZ'), left(b.query, 200) \
                     FROM pg_stat_activity w \
                     JOIN pg_stat_activity b ON b.pid = ANY(pg_blocking_pids(w.pid)) \
                     WHERE w.application_name = $1 AND w.wait_event_type = 'Lock' \
                     ORDER BY b.query_start NULLS LAST LIMIT 1",
            )
            .bind(COMMAND_APPLICATION)
            .fetch_optional(c)
            .await?;
            Ok(row.map(|(pid, app, state, since, query)| {
                describe_blocker(pid, app, state, since, query)
            }))
        }
        conn => on_each_driver!(conn, c => c.ping().await).map(|()| None),
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
        let vars = command_env(Duration::from_secs(2), Some(130_000), &env);
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
        let vars = command_env(Duration::from_secs(2), version, &|_| None);
        let options = vars[0].1.to_string_lossy().into_owned();
        assert_eq!(
            options.contains("-c client_connection_check_interval=1s"),
            asked,
            "{options}"
        );
    }
}
