//! Any migrator (`alembic upgrade head`, `dbmate up`, ...) run under the lock as a supervised
//! child: signals forwarded, reaped by the one reaper, `--user` applied. The lock's connection
//! (the wait stage's, when it handed one on) idles meanwhile, holding no snapshot.

use std::ffi::OsString;
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;
use tracing::debug;

use super::lock::MigrationLock;
use super::native::describe_blocker;
use super::{DdlLimits, MigrateError, Summary, bounded};
use crate::children::{ChildExit, Program};
use crate::database::{Connection, DatabaseUrl, Kind, on_each_driver};
use crate::supervise::{Child, RunError, Supervision};

/// Takes the lock (on `reused` when it still answers), runs `program` to its end, releases.
/// With `ddl.lock_timeout` on PostgreSQL, the command's libpq sessions get it through
/// `PGOPTIONS`, and a watch notes whether they wait for a table lock (see [`LockWatch`]).
pub fn run(
    runtime: &Runtime,
    supervision: &mut Supervision,
    url: &DatabaseUrl,
    program: &Program,
    reused: Option<Connection>,
    lock_timeout: Duration,
    ddl: DdlLimits,
) -> Result<Summary, MigrateError> {
    let (lock, waited) = runtime.block_on(supervision.until_stopped(MigrationLock::acquire(
        url,
        reused,
        lock_timeout,
    )))??;
    let ddl_lock_timeout = ddl.lock_timeout.filter(|_| url.kind() == Kind::Postgres);
    let env = match ddl_lock_timeout {
        Some(timeout) => command_env(timeout, &|name| std::env::var_os(name)),
        None => Vec::new(),
    };
    let watch = ddl_lock_timeout.map(|timeout| LockWatch::start(url, timeout));
    let started = Instant::now();
    let ended = supervision.run(program, Child::Migrator { env: &env });
    let waited_for_lock = watch.and_then(LockWatch::stop);
    runtime.block_on(async {
        let _ = bounded("releasing the migration lock", lock.release()).await;
    });
    let ended = ended.map_err(|e| match e {
        RunError::Spawn(source) => MigrateError::Internal {
            about: "starting the migration command",
            source,
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
        ChildExit::Exited(0) => Ok(Summary::Command {
            took: started.elapsed(),
            lock_waited: waited,
        }),
        exit => Err(MigrateError::CommandFailed {
            command: program.command_line(),
            exit,
            note: waited_for_lock.map(|blocker| {
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
/// `lock_timeout` and the server-side keepalives roadie's own sessions have, after any
/// `PGOPTIONS` the container sets (the later `-c` wins); `PGAPPNAME` unless set. libpq reads
/// both, so psycopg, psycopg2 and every libpq client honour them; asyncpg does not.
fn command_env(
    timeout: Duration,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Vec<(OsString, OsString)> {
    let ours = format!(
        "-c lock_timeout={}ms -c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 \
         -c tcp_keepalives_count=3",
        timeout.as_millis().max(1)
    );
    let mut options = env("PGOPTIONS").filter(|o| !o.is_empty()).unwrap_or_default();
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

/// Whether the migration command's sessions wait for a table lock, and on whom. roadie passes
/// the command's output through untouched (a pipe in between would change a terminal into a
/// pipe, its buffering and its interleaving), so it cannot read "lock timeout" there; instead
/// it asks the server, on a thread and a session of its own, which sessions named
/// [`COMMAND_APPLICATION`] wait for a lock, and who blocks them.
struct LockWatch {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<Option<String>>,
}

impl LockWatch {
    fn start(url: &DatabaseUrl, timeout: Duration) -> Self {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let url = url.clone();
        // Often enough to see a wait that the timeout ends.
        let every = (timeout / 4).clamp(Duration::from_millis(20), Duration::from_secs(1));
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async move {
                let options = url.connect_options().ok()?;
                let Ok(Ok(mut conn)) = bounded("", Connection::open(&options)).await else {
                    return None;
                };
                let mut seen = None;
                loop {
                    tokio::select! {
                        _ = &mut stopped => break,
                        _ = tokio::time::sleep(every) => {}
                    }
                    match bounded("", blocker_of_command(&mut conn)).await {
                        Ok(Ok(Some(blocker))) => seen = Some(blocker),
                        Ok(Ok(None)) => {}
                        Ok(Err(e)) => debug!("watching the migration command's locks: {e}"),
                        Err(_) => break,
                    }
                }
                let _ = bounded("", conn.close()).await;
                seen
            })
        });
        LockWatch { stop, thread }
    }

    /// Stops watching; the last blocker seen, if the command ever waited for a lock.
    fn stop(self) -> Option<String> {
        let _ = self.stop.send(());
        self.thread.join().ok().flatten()
    }
}

async fn blocker_of_command(conn: &mut Connection) -> Result<Option<String>, sqlx::Error> {
    on_each_driver!(conn, c => {
        let row: Option<(i32, Option<String>, Option<String>, Option<String>, Option<String>)> =
            sqlx::query_as(
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(None, None, "-c lock_timeout=2000ms -c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3", true)]
    #[case(Some("-c search_path=app"), None, "-c search_path=app -c lock_timeout=2000ms -c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3", true)]
    #[case(Some(""), Some("billing"), "-c lock_timeout=2000ms -c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3", false)]
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
        let vars = command_env(Duration::from_secs(2), &env);
        assert_eq!(vars[0], ("PGOPTIONS".into(), expected.into()));
        assert_eq!(
            vars.iter().any(|(k, _)| k == "PGAPPNAME"),
            named,
            "{vars:?}"
        );
    }
}
