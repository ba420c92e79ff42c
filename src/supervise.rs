//! The supervision context: the only way roadie runs a child. It owns the signal source, the
//! reaper, the forward policy, the stop grace and `--user`; `run` spawns a program, registers it
//! with the reaper and supervises it to its end (every signal forwarded, whatever dies reaped,
//! what is left after a stop or the child's end SIGKILLed after the grace: tini #180, dumb-init
//! #212), and `until_stopped` runs the boot's async work until a stop signal ends it.

use std::ffi::OsString;
use std::future::Future;
use std::io;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use libc::{c_int, pid_t};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tracing::{debug, info, warn};

use crate::children::{self, ChildExit, ExecError, Launch, Program, Reaper, signal_descendants};
use crate::signals::{self, ForwardPolicy, Role, SignalSource};
use crate::user::RunAs;

/// After SIGKILL, how often to sweep again for processes forked in the meantime, and how many
/// sweeps before giving up on processes the kernel cannot kill (stuck in D state).
const KILL_SWEEP: Duration = Duration::from_millis(100);
const KILL_SWEEPS: u32 = 50;

/// How long the app must have run before its `settled` is called: a short-lived app (`true`)
/// exits before and never pays for it.
const SETTLE: Duration = Duration::from_millis(100);

/// What a child is to the boot: how it starts and how its life is told.
pub enum Child<'a> {
    /// An executable of `--hooks`: its stage logs the summary.
    Hook,
    /// The migration command, run under the migration lock, with `env` set in (or replacing)
    /// roadie's environment: `PGOPTIONS` for `--ddl-lock-timeout`, the direct URL of
    /// `--migrate-database-url`.
    Migrator { env: &'a [(OsString, OsString)] },
    /// The app: it gets the terminal; `announce` logs its start line (with the boot's
    /// timings); `settled` is called with its pid once it has run for a moment (the boot is
    /// over).
    App {
        announce: &'a dyn Fn(pid_t),
        settled: &'a dyn Fn(pid_t),
        /// `--success-exit-code`: its end line says when its code is reported as 0.
        success_codes: &'a [u8],
    },
}

/// A stop signal ended the boot's async work, or the signals could not be read.
#[derive(Debug)]
pub enum Stop {
    Signal(c_int),
    Unreadable(io::Error),
}

/// A stage the boot runs before the app, as a stop signal's line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Wait,
    Migrate,
    Hooks,
}

/// A stop signal (TERM, INT) that ended a stage before the app started: exit 128+S. The one
/// way roadie says so, whatever the stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    pub signal: c_int,
    pub during: Stage,
}

impl Stopped {
    /// 128+S, the shell's rule, as for the app.
    pub fn exit_code(&self) -> u8 {
        ChildExit::Signaled(self.signal).code()
    }
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let signal = signals::name(self.signal);
        match self.during {
            Stage::Wait => write!(f, "stopped by SIG{signal} while waiting"),
            Stage::Migrate => write!(
                f,
                "stopped by SIG{signal} while migrating: lock released, the app is not started"
            ),
            Stage::Hooks => write!(
                f,
                "stopped by SIG{signal} while running hooks: the app is not started"
            ),
        }
    }
}

impl std::error::Error for Stopped {}

impl Stop {
    /// What the stop means to `stage`: the signal that ended it, or the signal source's
    /// failure.
    pub fn during(self, stage: Stage) -> Result<Stopped, io::Error> {
        match self {
            Stop::Signal(signal) => Ok(Stopped {
                signal,
                during: stage,
            }),
            Stop::Unreadable(source) => Err(source),
        }
    }
}

/// Why a child could not be run to its end.
#[derive(Debug)]
pub enum RunError {
    /// execve (or what precedes it) failed: the program, its interpreter, `--user`.
    Spawn(ExecError),
    /// The signal source failed while supervising.
    Signals(io::Error),
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Signal(signal) => write!(f, "stopped by SIG{}", signals::name(*signal)),
            Stop::Unreadable(_) => f.write_str("reading signals"),
        }
    }
}

impl std::error::Error for Stop {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Stop::Signal(_) => None,
            Stop::Unreadable(source) => Some(source),
        }
    }
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Spawn(_) => f.write_str("starting the child"),
            RunError::Signals(_) => f.write_str("waiting for signals"),
        }
    }
}

impl std::error::Error for RunError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RunError::Spawn(e) => Some(e),
            RunError::Signals(e) => Some(e),
        }
    }
}

/// How a supervised child ended, and whether a stop signal asked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    pub exit: ChildExit,
    /// The first stop signal (TERM or INT, as received) during the run.
    pub stopped_by: Option<c_int>,
}

impl Ended {
    /// The exit code roadie reports: the child's (128+S for a death by signal S), and 0 for a
    /// `--success-exit-code`.
    pub fn reported_code(&self, success_codes: &[u8]) -> u8 {
        let code = self.exit.code();
        if success_codes.contains(&code) {
            0
        } else {
            code
        }
    }
}

/// What the supervisor needs, resolved by `config.rs`.
#[derive(Debug)]
pub struct Settings {
    /// `--stop-grace`: how long a stopped child and what it left may take before SIGKILL.
    pub stop_grace: Duration,
    /// `--rewrite-signal` and `--signal-group`.
    pub forward: ForwardPolicy,
    /// `--success-exit-code`: app exit codes reported as 0.
    pub success_codes: Vec<u8>,
    /// `--user`.
    pub run_as: Option<RunAs>,
}

pub struct Supervision {
    signals: SignalSource,
    reaper: Reaper,
    forward: ForwardPolicy,
    stop_grace: Duration,
    run_as: Option<RunAs>,
}

impl Supervision {
    /// Takes over the signal source and becomes the reaper of every orphan below roadie.
    pub fn new(signals: SignalSource, settings: &Settings) -> Self {
        Supervision {
            signals,
            reaper: Reaper::adopt_orphans(),
            forward: settings.forward.clone(),
            stop_grace: settings.stop_grace,
            run_as: settings.run_as.clone(),
        }
    }

    /// Starts `program` as `child` and supervises it, and everything it leaves, to the end.
    pub fn run(&mut self, program: &Program, child: Child<'_>) -> Result<Ended, RunError> {
        let launch = Launch {
            run_as: self.run_as.as_ref(),
            take_terminal: matches!(child, Child::App { .. }),
            env: match child {
                Child::Migrator { env } => env,
                _ => &[],
            },
        };
        let spawned = children::spawn(program, launch).map_err(RunError::Spawn)?;
        let pid = self.reaper.watch(spawned);
        let name = program.display_name();
        match child {
            Child::Hook => {
                debug!("running hook {} (pid {pid})", program.path.display());
                self.supervise(pid, &name, None)
            }
            Child::Migrator { .. } => {
                info!(
                    "running {} (pid {pid}) under the migration lock",
                    program.command_line()
                );
                self.supervise(pid, &name, None)
            }
            Child::App {
                announce,
                settled,
                success_codes,
            } => {
                announce(pid);
                self.supervise(pid, &name, Some((&|| settled(pid), success_codes)))
            }
        }
        .map_err(RunError::Signals)
    }

    /// Supervises an app that an earlier image of roadie started (the handoff): same pid, same
    /// children, signals still pending.
    pub fn resume(
        &mut self,
        pid: pid_t,
        name: &str,
        success_codes: &[u8],
        settled: &dyn Fn(),
    ) -> io::Result<Ended> {
        self.reaper.watch_inherited(pid);
        self.supervise(pid, name, Some((settled, success_codes)))
    }

    /// Runs the boot's async `work` (the wait, the lock wait, a native run) until it ends or a
    /// stop signal (TERM or INT, as the policy decides) arrives: no app runs yet, so every other
    /// signal is dropped. A caller that must wind `work` down itself passes `&mut work`.
    pub async fn until_stopped<F: Future>(&self, work: F) -> Result<F::Output, Stop> {
        tokio::select! {
            done = work => Ok(done),
            stop = self.stop_requested() => Err(stop),
        }
    }

    async fn stop_requested(&self) -> Stop {
        // SAFETY: the descriptor is borrowed from `signals`, which outlives this AsyncFd.
        let fd = match unsafe {
            AsyncFd::register_with_interest(self.signals.as_fd(), Interest::READABLE)
        } {
            Ok(fd) => fd,
            Err(e) => return Stop::Unreadable(io::Error::from(e)),
        };
        loop {
            let mut ready = match fd.readable().await {
                Ok(ready) => ready,
                Err(e) => return Stop::Unreadable(e),
            };
            loop {
                match self.signals.try_read() {
                    Err(e) => return Stop::Unreadable(e),
                    Ok(None) => break,
                    Ok(Some(received)) => {
                        if signals::role(received.signal) != Role::Forward
                            || received.is_self_raised()
                        {
                            continue;
                        }
                        if self.forward.is_stop_request(received.signal) {
                            return Stop::Signal(received.signal);
                        }
                        debug!(
                            "SIG{} dropped: no app is running yet",
                            signals::name(received.signal)
                        );
                    }
                }
            }
            ready.clear_ready();
        }
    }
}

/// Where one supervised run stands.
#[derive(Debug, Clone, Copy)]
enum StopProgress {
    /// The child runs; nothing is being stopped.
    Running,
    /// A stop was asked for, or the child ended with descendants left: SIGKILL at `until`.
    Grace { until: Instant },
    /// SIGKILL sent; sweep again at `next`.
    Killing { sweeps: u32, next: Instant },
}

/// The state of one supervised run, one small method per event (watchexec's shape).
struct RunState<'n> {
    pid: pid_t,
    name: &'n str,
    exit: Option<ChildExit>,
    stopped_by: Option<c_int>,
    stops: u32,
    leftovers_told: bool,
    phase: StopProgress,
    settle_at: Option<Instant>,
    /// The app's `--success-exit-code`s; `None` for a hook or the migration command, whose end
    /// is logged at debug (their stage logs its own summary).
    app_success_codes: Option<&'n [u8]>,
}

/// What the loop does after an event.
enum Next {
    Continue,
    Done,
}

impl Supervision {
    /// Supervises `pid` (already watched by the reaper) until it and every descendant are gone.
    /// For the app, `settled` is called once it has run for `SETTLE` with nothing to do, and its
    /// end is logged at info.
    fn supervise(
        &mut self,
        pid: pid_t,
        name: &str,
        app: Option<(&dyn Fn(), &[u8])>,
    ) -> io::Result<Ended> {
        let settled = app.map(|(settled, _)| settled);
        let mut watch = RunState {
            pid,
            name,
            exit: None,
            stopped_by: None,
            stops: 0,
            leftovers_told: false,
            phase: StopProgress::Running,
            settle_at: settled.map(|_| Instant::now() + SETTLE),
            app_success_codes: app.map(|(_, codes)| codes),
        };
        // A SIGCHLD read (and dropped) by an earlier async stage would otherwise leave its
        // zombie until the next one, and a child that died at once is already waiting: sweep
        // once first.
        self.collect(&mut watch);
        loop {
            let next = match self.signals.next(watch.deadline())? {
                None => self.on_deadline(&mut watch, settled),
                Some(received) => {
                    match signals::role(received.signal) {
                        Role::Reap => self.collect(&mut watch),
                        Role::Forward if received.is_self_raised() => {}
                        Role::Forward => self.on_forwardable(&mut watch, received.signal),
                        Role::Untouched => {}
                    }
                    Next::Continue
                }
            };
            if matches!(next, Next::Done) || self.after_event(&mut watch) {
                break;
            }
        }
        let exit = watch.exit.unwrap_or_else(|| {
            warn!("{name} could not be reaped after SIGKILL; reporting it as killed");
            ChildExit::Signaled(libc::SIGKILL)
        });
        Ok(Ended {
            exit,
            stopped_by: watch.stopped_by,
        })
    }

    /// The settle time, the grace or a kill sweep is due.
    fn on_deadline(&mut self, watch: &mut RunState<'_>, settled: Option<&dyn Fn()>) -> Next {
        match watch.phase {
            StopProgress::Running => {
                if watch.settle_at.take().is_some()
                    && let Some(settled) = settled
                {
                    settled();
                }
            }
            StopProgress::Killing { sweeps, .. } if sweeps >= KILL_SWEEPS => {
                warn!("processes survived SIGKILL for 5s; exiting without them");
                return Next::Done;
            }
            StopProgress::Killing { sweeps, .. } => {
                self.kill_all(watch);
                watch.phase = killing(sweeps + 1);
            }
            StopProgress::Grace { .. } => {
                info!(
                    "stop grace of {} over: sending SIGKILL to what is left",
                    humantime::format_duration(self.stop_grace)
                );
                self.kill_all(watch);
                watch.phase = killing(1);
            }
        }
        Next::Continue
    }

    /// A signal for the app: forward it (rewritten), and start or shorten the stop on TERM/INT.
    fn on_forwardable(&mut self, watch: &mut RunState<'_>, signal: c_int) {
        let from = signals::name(signal);
        match self.forward.rewrite(signal) {
            None => debug!("SIG{from} dropped (--rewrite-signal {from}:0)"),
            Some(_) if watch.exit.is_some() => {
                debug!("SIG{from} not forwarded: {} has exited", watch.name)
            }
            Some(to) => self.send(watch.pid, to),
        }
        if !self.forward.is_stop_request(signal) {
            return;
        }
        watch.stops += 1;
        watch.stopped_by.get_or_insert(signal);
        match watch.phase {
            StopProgress::Killing { .. } => {}
            _ if watch.stops >= 2 => {
                info!("second stop signal: sending SIGKILL now");
                self.kill_all(watch);
                watch.phase = killing(1);
            }
            StopProgress::Grace { .. } => {}
            StopProgress::Running => {
                info!(
                    "SIG{from} received: stopping {}, SIGKILL in {}",
                    watch.name,
                    humantime::format_duration(self.stop_grace)
                );
                watch.phase = StopProgress::Grace {
                    until: Instant::now() + self.stop_grace,
                };
            }
        }
    }

    /// After every event: done once the child and all it left are gone; the first time the
    /// child is gone with descendants left, TERM them and start the grace.
    fn after_event(&mut self, watch: &mut RunState<'_>) -> bool {
        if watch.exit.is_none() {
            return false;
        }
        if !self.reaper.children_left() {
            return true;
        }
        if !watch.leftovers_told {
            watch.leftovers_told = true;
            let n = signal_descendants(libc::SIGTERM);
            // Often a helper that exits on its own a moment later (Python's multiprocessing
            // resource tracker): only a SIGKILL is worth an info line.
            debug!(
                "{} has exited; sent SIGTERM to what it left behind, SIGKILL in {}",
                watch.name,
                humantime::format_duration(self.stop_grace)
            );
            debug!(signalled = n, "{n} leftover processes signalled");
            if let StopProgress::Running = watch.phase {
                watch.phase = StopProgress::Grace {
                    until: Instant::now() + self.stop_grace,
                };
            }
        }
        false
    }

    /// Reaps whatever has ended; records (and logs) the watched child's end.
    fn collect(&mut self, watch: &mut RunState<'_>) {
        for (ended, status) in self.reaper.reap_all() {
            if ended == watch.pid {
                match watch.app_success_codes {
                    Some(codes) if status.code() != 0 && codes.contains(&status.code()) => {
                        info!(
                            "{} {status}, reported as 0 (--success-exit-code)",
                            watch.name
                        )
                    }
                    Some(_) => info!("{} {status}", watch.name),
                    None => debug!("{} {status}", watch.name),
                }
                watch.exit = Some(status);
            }
        }
    }

    /// Forwards `signal` to the app, or to its process group with `--signal-group`.
    fn send(&self, pid: pid_t, signal: c_int) {
        let target = if self.forward.group { -pid } else { pid };
        // SAFETY: plain kill(2). The pid is still ours: it is not reaped yet.
        if unsafe { libc::kill(target, signal) } == 0 {
            debug!("forwarded SIG{} to {target}", signals::name(signal));
        } else {
            debug!(
                "forwarding SIG{} to {target}: {}",
                signals::name(signal),
                io::Error::last_os_error()
            );
        }
    }

    fn kill_all(&self, watch: &RunState<'_>) {
        if watch.exit.is_none() {
            self.send(watch.pid, libc::SIGKILL);
        }
        signal_descendants(libc::SIGKILL);
    }
}

impl RunState<'_> {
    fn deadline(&self) -> Option<Instant> {
        match self.phase {
            StopProgress::Running => self.settle_at,
            StopProgress::Grace { until } => Some(until),
            StopProgress::Killing { next, .. } => Some(next),
        }
    }
}

fn killing(sweeps: u32) -> StopProgress {
    StopProgress::Killing {
        sweeps,
        next: Instant::now() + KILL_SWEEP,
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
        let ended = Ended {
            exit,
            stopped_by: None,
        };
        assert_eq!(ended.reported_code(success), code);
    }
}
