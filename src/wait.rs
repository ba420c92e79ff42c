//! The wait stage: block until every dependency is really usable, then go on at once; give up
//! at the deadline or at the first permanent error, saying which. Targets are checked in
//! parallel on a single-threaded runtime that exists only for this stage; a stop signal ends
//! the wait at once (a shell as PID 1 ignores it and docker SIGKILLs after 10 s).

pub mod target;

use std::io;
use std::time::{Duration, Instant};

use libc::c_int;
use tokio::task::JoinSet;
use tracing::{debug, info};

use crate::database::Connection;
use crate::database::readiness::Verdict;
use crate::signals;
use crate::supervise::{Stop, Supervision};
pub use target::Target;

/// Attempts on one target start at least this far apart (at most 20 a second), plus up to
/// `JITTER` so replicas do not probe in step. Readiness is seen within about half of it.
const INTERVAL: Duration = Duration::from_millis(50);
const JITTER: Duration = Duration::from_millis(5);
/// One attempt may take this long (a host that drops SYNs never refuses).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// While waiting, one progress line per target this often.
const REPORT_EVERY: Duration = Duration::from_secs(3);

#[derive(Debug)]
pub enum WaitError {
    /// A target refused for good (wrong password, no such database, ...): exit 69.
    Unavailable {
        target: String,
        cause: String,
        hint: String,
    },
    /// Not ready before `--wait-timeout`: exit 69. Each pending target with its last error.
    TimedOut {
        timeout: Duration,
        pending: Vec<(String, String)>,
    },
    /// A stop signal arrived: exit 128+S.
    Stopped(c_int),
    /// The runtime or the signal source failed: exit 70.
    Internal {
        about: &'static str,
        source: io::Error,
    },
}

impl std::fmt::Display for WaitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WaitError::Unavailable {
                target,
                cause,
                hint,
            } => {
                write!(f, "{target} is unavailable: {cause}; {hint}")
            }
            WaitError::TimedOut { timeout, pending } => {
                write!(
                    f,
                    "not ready after --wait-timeout {}:",
                    humantime::format_duration(*timeout)
                )?;
                for (i, (name, last)) in pending.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ";" };
                    write!(f, "{sep} {name} (last error: {last})")?;
                }
                Ok(())
            }
            WaitError::Stopped(s) => write!(f, "stopped by SIG{} while waiting", signals::name(*s)),
            WaitError::Internal { about, .. } => write!(f, "internal error while {about}"),
        }
    }
}

impl std::error::Error for WaitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WaitError::Internal { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// What a finished wait took, and what it waited for last (where the time went).
#[derive(Debug, Clone)]
pub struct Waited {
    pub took: Duration,
    /// "database", or the name of the target that was ready last.
    pub last: String,
}

/// Waits for every target, in parallel, up to `timeout`, or until a stop signal. Returns the
/// boot's own database's ready connection, when it was among the targets.
pub fn wait_for(
    runtime: &tokio::runtime::Runtime,
    supervision: &Supervision,
    targets: &[Target],
    timeout: Duration,
) -> Result<(Waited, Option<Connection>), WaitError> {
    let began = Instant::now();
    let (last, connection) =
        runtime.block_on(supervision.until_stopped(wait_all(targets, timeout)))??;
    let waited = Waited {
        took: began.elapsed(),
        last,
    };
    Ok((waited, connection))
}

/// The name of the target that was ready last, and the database's connection.
async fn wait_all(
    targets: &[Target],
    timeout: Duration,
) -> Result<(String, Option<Connection>), WaitError> {
    let deadline = Instant::now() + timeout;
    let http = if targets.iter().any(|t| matches!(t, Target::Http { .. })) {
        Some(
            target::http_client(ATTEMPT_TIMEOUT).map_err(|e| WaitError::Internal {
                about: "setting up the HTTP client",
                source: io::Error::other(e),
            })?,
        )
    } else {
        None
    };
    let mut pending = JoinSet::new();
    for target in targets {
        let name = target.name().to_string();
        let wait = wait_one(target.clone(), deadline, timeout, http.clone());
        pending.spawn(async move { (name, wait.await) });
    }
    let mut timed_out = Vec::new();
    let mut connection = None;
    let mut last = String::new();
    while let Some(done) = pending.join_next().await {
        match done.map(|(name, outcome)| {
            last = name;
            outcome
        }) {
            Ok(Ok(ready)) => connection = connection.or(ready),
            Ok(Err(Outcome::TimedOut { name, last })) => timed_out.push((name, last)),
            Ok(Err(Outcome::Refused { name, cause, hint })) => {
                return Err(WaitError::Unavailable {
                    target: name,
                    cause,
                    hint,
                });
            }
            Err(join) => {
                return Err(WaitError::Internal {
                    about: "waiting for a target",
                    source: io::Error::other(join.to_string()),
                });
            }
        }
    }
    if timed_out.is_empty() {
        Ok((last, connection))
    } else {
        Err(WaitError::TimedOut {
            timeout,
            pending: timed_out,
        })
    }
}

impl From<Stop> for WaitError {
    fn from(stop: Stop) -> Self {
        match stop {
            Stop::Signal(signal) => WaitError::Stopped(signal),
            Stop::Unreadable(source) => WaitError::Internal {
                about: "reading signals",
                source,
            },
        }
    }
}

enum Outcome {
    TimedOut {
        name: String,
        last: String,
    },
    Refused {
        name: String,
        cause: String,
        hint: String,
    },
}

/// Probes one target until it is ready, refuses for good, or the deadline passes.
async fn wait_one(
    target: Target,
    deadline: Instant,
    timeout: Duration,
    http: Option<reqwest::Client>,
) -> Result<Option<Connection>, Outcome> {
    let name = target.name().to_string();
    let started = Instant::now();
    let mut next_report = started + REPORT_EVERY;
    let mut attempts = 0u32;
    loop {
        let attempt_started = Instant::now();
        attempts += 1;
        let left = deadline.saturating_duration_since(attempt_started);
        let last = match tokio::time::timeout(
            ATTEMPT_TIMEOUT.min(left),
            target.probe(http.as_ref()),
        )
        .await
        {
            Ok(Ok(connection)) => {
                info!(
                    target = %name,
                    attempts,
                    elapsed = started.elapsed().as_secs_f64(),
                    "{name} ready in {:.2}s after {attempts} attempt{}",
                    started.elapsed().as_secs_f64(),
                    if attempts == 1 { "" } else { "s" }
                );
                return Ok(connection);
            }
            Ok(Err(Verdict::Permanent { cause, hint })) => {
                return Err(Outcome::Refused { name, cause, hint });
            }
            Ok(Err(Verdict::Transient(message))) => message,
            Err(_) => format!(
                "no answer within {}",
                humantime::format_duration(ATTEMPT_TIMEOUT.min(left))
            ),
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(Outcome::TimedOut { name, last });
        }
        if now >= next_report {
            info!(
                target = %name,
                attempts,
                elapsed = started.elapsed().as_secs_f64(),
                "waiting for {name}: {last} ({:.1}s of {})",
                started.elapsed().as_secs_f64(),
                humantime::format_duration(timeout)
            );
            next_report = now + REPORT_EVERY;
        } else {
            debug!(target = %name, attempts, "not ready: {last}");
        }
        let pause = INTERVAL + JITTER.mul_f64(fastrand::f64());
        tokio::time::sleep_until((attempt_started + pause).min(deadline).into()).await;
    }
}
