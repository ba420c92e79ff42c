//! The wait stage: block until every dependency is really usable, then go on at once; give up
//! at the deadline or at the first permanent error, saying which. Targets are checked in
//! parallel on a single-threaded runtime that exists only for this stage; a stop signal ends
//! the wait at once (a shell as PID 1 ignores it and docker SIGKILLs after 10 s).

pub mod target;

use std::io;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tracing::{debug, info};

use crate::database::Connection;
use crate::database::DatabaseUrl;
use crate::database::readiness::Verdict;
use crate::database::standby::OnStandby;
use crate::supervise::{Stage, Stop, Stopped, Supervision};
pub use target::Target;

/// The pace of one target's attempts (the README's "Waiting" section says why):
/// - logins, the attempts its server sees, start at least `INTERVAL` apart, plus up to
///   `JITTER` so replicas do not log in in step: at most 20 a second;
/// - but after the server's first "starting up" (57P03) it is nearly ready: logins every
///   `STARTING_RETRY` for `STARTING_WINDOW`, then the normal pace again (a long crash recovery
///   answers 57P03 for minutes and must not be hammered);
/// - while nothing answers (the port refuses, the name does not resolve), a bare connect
///   every `PORT_CHECK_EVERY`: the kernel answers it, the server never sees it; a name is
///   looked up at most every `target::RESOLVE_EVERY`.
const INTERVAL: Duration = Duration::from_millis(50);
const JITTER: Duration = Duration::from_millis(5);
const STARTING_RETRY: Duration = Duration::from_millis(10);
const STARTING_WINDOW: Duration = Duration::from_millis(300);
const PORT_CHECK_EVERY: Duration = Duration::from_millis(5);
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
    Stopped(Stopped),
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
            WaitError::Stopped(stopped) => stopped.fmt(f),
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

/// What the wait stage needs, resolved by `config.rs`.
#[derive(Debug)]
pub struct Settings {
    /// The database to wait for; `None`: roadie is a plain init.
    pub database: Option<DatabaseUrl>,
    /// `--migrate-database-url`: the direct URL for the lock and migrations, waited for too.
    pub migrate_database: Option<DatabaseUrl>,
    /// `--on-standby`: what a read-only standby means before migrating.
    pub on_standby: OnStandby,
    /// `--wait-timeout`.
    pub timeout: Duration,
    /// `--wait-for` targets, waited for beside the database.
    pub wait_for: Vec<Target>,
}

impl Settings {
    /// Whether there is anything to wait for (else the boot needs no runtime).
    pub fn is_empty(&self) -> bool {
        self.database.is_none() && self.wait_for.is_empty()
    }
}

/// What the boot waits for: the database (and the direct one it migrates through, which hands
/// its connection on and is checked for a standby when `writes`, as `--on-standby` says), then
/// the `--wait-for` targets. Names the databases once at info.
pub fn targets(config: &Settings, writes: bool) -> Vec<Target> {
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
    targets
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
        match stop.during(Stage::Wait) {
            Ok(stopped) => WaitError::Stopped(stopped),
            Err(source) => WaitError::Internal {
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

/// When the next login may start. Pure: the clock comes in as arguments.
#[derive(Debug)]
struct Pace {
    next_login: Instant,
    /// The end of the fast window opened by the first "starting up" since the port opened.
    window_ends: Option<Instant>,
}

impl Pace {
    fn new(now: Instant) -> Self {
        Pace {
            next_login: now,
            window_ends: None,
        }
    }

    /// A login started at `at` and got `verdict`; `jitter` is in 0..1.
    fn logged_in(&mut self, at: Instant, verdict: &Verdict, jitter: f64) {
        let starting = matches!(verdict, Verdict::StartingUp(_));
        if starting && self.window_ends.is_none() {
            self.window_ends = Some(at + STARTING_WINDOW);
        }
        let fast = starting && self.window_ends.is_some_and(|end| at < end);
        self.next_login = at
            + if fast {
                STARTING_RETRY
            } else {
                INTERVAL + JITTER.mul_f64(jitter)
            };
    }

    /// The port opened again after refusing: the server restarted, so its "starting up"
    /// may open a new window (each one needs a whole restart in between).
    fn port_opened(&mut self) {
        self.window_ends = None;
    }
}

/// What one target's wait has done so far, for its log lines.
struct Progress {
    name: String,
    started: Instant,
    timeout: Duration,
    next_report: Instant,
    /// Logins, HTTP requests or connects: the attempts that might have reached the target.
    attempts: u32,
    /// Bare connects to a port that refused (never seen by the server).
    port_checks: u32,
    last: String,
}

impl Progress {
    /// One line every `REPORT_EVERY`; between them, a debug line per failed attempt (per
    /// change of error, for port checks, which come every few milliseconds).
    fn not_ready(&mut self, last: String, port_check: bool) {
        let now = Instant::now();
        let name = &self.name;
        if now >= self.next_report {
            info!(
                target = %name,
                attempts = self.attempts,
                port_checks = self.port_checks,
                elapsed = self.started.elapsed().as_secs_f64(),
                "waiting for {name}: {last} ({:.1}s of {})",
                self.started.elapsed().as_secs_f64(),
                humantime::format_duration(self.timeout)
            );
            self.next_report = now + REPORT_EVERY;
        } else if !port_check || last != self.last {
            debug!(target = %name, attempts = self.attempts, "not ready: {last}");
        }
        self.last = last;
    }

    fn ready(&self) {
        let name = &self.name;
        let elapsed = self.started.elapsed().as_secs_f64();
        let checks = match self.port_checks {
            0 => String::new(),
            1 => " and 1 port check".into(),
            n => format!(" and {n} port checks"),
        };
        info!(
            target = %name,
            attempts = self.attempts,
            port_checks = self.port_checks,
            elapsed,
            "{name} ready in {elapsed:.2}s after {} attempt{}{checks}",
            self.attempts,
            if self.attempts == 1 { "" } else { "s" }
        );
    }
}

/// Probes one target until it is ready, refuses for good, or the deadline passes. The first
/// attempt is a login (a server already up costs one connection, not two); once one finds
/// nothing listening, port checks take over until the port opens.
async fn wait_one(
    target: Target,
    deadline: Instant,
    timeout: Duration,
    http: Option<reqwest::Client>,
) -> Result<Option<Connection>, Outcome> {
    let started = Instant::now();
    let mut progress = Progress {
        name: target.name().to_string(),
        started,
        timeout,
        next_report: started + REPORT_EVERY,
        attempts: 0,
        port_checks: 0,
        last: String::new(),
    };
    let mut pace = Pace::new(started);
    let mut port_check = target.port_check();
    let mut port_closed = false;
    loop {
        if port_closed && let Some(check) = port_check.as_mut() {
            wait_for_the_port(check, deadline, &mut progress).await?;
            pace.port_opened();
            if target.ready_when_port_opens() {
                progress.attempts += 1;
                progress.ready();
                return Ok(None);
            }
        }
        tokio::time::sleep_until(pace.next_login.min(deadline).into()).await;
        let attempt_started = Instant::now();
        if attempt_started >= deadline && progress.attempts > 0 {
            return Err(Outcome::TimedOut {
                name: progress.name,
                last: progress.last,
            });
        }
        progress.attempts += 1;
        let left = deadline.saturating_duration_since(attempt_started);
        let verdict = match tokio::time::timeout(
            ATTEMPT_TIMEOUT.min(left),
            target.probe(http.as_ref()),
        )
        .await
        {
            Ok(Ok(connection)) => {
                progress.ready();
                return Ok(connection);
            }
            Ok(Err(Verdict::Permanent { cause, hint })) => {
                return Err(Outcome::Refused {
                    name: progress.name,
                    cause,
                    hint,
                });
            }
            Ok(Err(verdict)) => verdict,
            Err(_) => Verdict::Transient(format!(
                "no answer within {}",
                humantime::format_duration(ATTEMPT_TIMEOUT.min(left))
            )),
        };
        pace.logged_in(attempt_started, &verdict, fastrand::f64());
        port_closed = matches!(verdict, Verdict::Unreachable(_));
        let (Verdict::Unreachable(last) | Verdict::StartingUp(last) | Verdict::Transient(last)) =
            verdict
        else {
            unreachable!("a permanent verdict returned above")
        };
        if Instant::now() >= deadline {
            return Err(Outcome::TimedOut {
                name: progress.name,
                last,
            });
        }
        progress.not_ready(last, false);
    }
}

/// Bare connects every `PORT_CHECK_EVERY` until one succeeds.
async fn wait_for_the_port(
    check: &mut target::PortCheck,
    deadline: Instant,
    progress: &mut Progress,
) -> Result<(), Outcome> {
    loop {
        let check_started = Instant::now();
        if check_started >= deadline && progress.port_checks > 0 {
            return Err(Outcome::TimedOut {
                name: progress.name.clone(),
                last: progress.last.clone(),
            });
        }
        let left = deadline.saturating_duration_since(check_started);
        let last = match tokio::time::timeout(ATTEMPT_TIMEOUT.min(left), check.check()).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(message)) => message,
            Err(_) => format!(
                "no answer within {}",
                humantime::format_duration(ATTEMPT_TIMEOUT.min(left))
            ),
        };
        progress.port_checks += 1;
        if Instant::now() >= deadline {
            return Err(Outcome::TimedOut {
                name: progress.name.clone(),
                last,
            });
        }
        progress.not_ready(last, true);
        tokio::time::sleep_until((check_started + PORT_CHECK_EVERY).min(deadline).into()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    /// The logins of a wait whose every login gets `verdict`, for `length`, with the fastest
    /// jitter (0); the port opens again at each of `reopen` (offsets from the start).
    fn logins(verdict: Verdict, length: Duration, reopen: &[Duration]) -> Vec<Duration> {
        let t0 = Instant::now();
        let mut pace = Pace::new(t0);
        let mut reopen = reopen.iter().peekable();
        let mut at = Vec::new();
        while pace.next_login < t0 + length {
            let now = pace.next_login;
            if reopen.next_if(|r| t0 + **r <= now).is_some() {
                pace.port_opened();
            }
            at.push(now - t0);
            pace.logged_in(now, &verdict, 0.0);
        }
        at
    }

    /// The most logins in any one-second window [t, t + 1 s) that starts at or after `from`.
    fn most_in_a_second(at: &[Duration], from: Duration) -> usize {
        at.iter()
            .filter(|t| **t >= from)
            .map(|t| {
                at.iter()
                    .filter(|u| **u >= *t && **u < *t + Duration::from_secs(1))
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn after_starting_up_logins_come_every_10ms_for_300ms_then_at_most_20_a_second() {
        let at = logins(
            Verdict::StartingUp("57P03".into()),
            Duration::from_secs(5),
            &[],
        );
        let fast: Vec<_> = at.iter().take_while(|t| **t < STARTING_WINDOW).collect();
        assert_eq!(fast.len(), 30, "{at:?}");
        assert!(fast.windows(2).all(|w| *w[1] - *w[0] == STARTING_RETRY));
        assert_eq!(most_in_a_second(&at, STARTING_WINDOW), 20, "{at:?}");
        // Every second of the wait, the window's included: at most 30 + 14.
        assert!(most_in_a_second(&at, Duration::ZERO) <= 44, "{at:?}");
    }

    #[rstest]
    #[case::busy(Verdict::Transient("53300".into()))]
    #[case::refused(Verdict::Unreachable("refused".into()))]
    fn other_failures_never_log_in_more_than_20_times_a_second(#[case] verdict: Verdict) {
        let at = logins(verdict, Duration::from_secs(3), &[]);
        assert_eq!(most_in_a_second(&at, Duration::ZERO), 20, "{at:?}");
    }

    #[test]
    fn only_a_restart_opens_another_fast_window() {
        let starting = Verdict::StartingUp("57P03".into());
        let once = logins(starting.clone(), Duration::from_secs(2), &[]);
        let twice = logins(starting, Duration::from_secs(2), &[Duration::from_secs(1)]);
        let fast = |at: &[Duration]| {
            at.windows(2)
                .filter(|w| w[1] - w[0] == STARTING_RETRY)
                .count()
        };
        assert_eq!(fast(&once), 30);
        assert_eq!(fast(&twice), 60);
    }
}
