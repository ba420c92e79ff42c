//! Runs one child to its end as an init must: forward every signal to it, reap whatever dies,
//! and when a stop signal arrives or the child ends, see every remaining descendant out within
//! the grace period, SIGKILLing what is left after it (tini #180, dumb-init #212).

use std::io;
use std::time::{Duration, Instant};

use libc::{c_int, pid_t};
use tracing::{debug, info, warn};

use crate::children::{ChildExit, Reaper, signal_descendants};
use crate::signals::{self, ForwardPolicy, Role, SignalSource};

/// After SIGKILL, how often to sweep again for processes forked in the meantime, and how many
/// sweeps before giving up on processes the kernel cannot kill (stuck in D state).
const KILL_SWEEP: Duration = Duration::from_millis(100);
const KILL_SWEEPS: u32 = 50;

/// How long the child must have run before `Supervisor::settled` is called: a short-lived
/// child (`true`, a hook) exits before and never pays for it.
const SETTLE: Duration = Duration::from_millis(100);

/// What the supervisor needs from the boot: the stop trigger, the reaper, the policy.
pub struct Supervisor<'a> {
    pub signals: &'a mut SignalSource,
    pub reaper: &'a mut Reaper,
    pub forward: &'a ForwardPolicy,
    pub stop_grace: Duration,
    /// Called once when the child has run for `SETTLE` with nothing to do: the boot is over.
    pub settled: Option<&'a dyn Fn()>,
    /// Log the child's end at info (the app) rather than debug (a hook or migration command,
    /// whose stage logs its own summary).
    pub announce_exit: bool,
}

/// How a supervised child ended, and whether a stop signal asked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    pub exit: ChildExit,
    /// The first stop signal (TERM or INT, as received) during the run.
    pub stopped_by: Option<c_int>,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// The child runs; nothing is being stopped.
    Running,
    /// A stop was asked for, or the child ended with descendants left: SIGKILL at `until`.
    Grace { until: Instant },
    /// SIGKILL sent; sweep again at `next`.
    Killing { sweeps: u32, next: Instant },
}

impl Supervisor<'_> {
    /// Supervises `pid` (already registered with the reaper) until it and every descendant
    /// are gone. `name` is for log lines.
    pub fn run(&mut self, pid: pid_t, name: &str) -> io::Result<Ended> {
        let mut exit: Option<ChildExit> = None;
        let mut stopped_by = None;
        let mut stops = 0u32;
        let mut leftovers_told = false;
        let mut phase = Phase::Running;
        let mut settle_at = self.settled.map(|f| (Instant::now() + SETTLE, f));
        // A SIGCHLD read (and dropped) by an earlier async stage would otherwise leave its
        // zombie until the next one, and a child that died at once is already waiting: sweep
        // once first.
        self.collect(pid, name, &mut exit);
        loop {
            let deadline = match phase {
                Phase::Running => settle_at.map(|(at, _)| at),
                Phase::Grace { until } => Some(until),
                Phase::Killing { next, .. } => Some(next),
            };
            match self.signals.next(deadline)? {
                None if matches!(phase, Phase::Running) => {
                    if let Some((_, settled)) = settle_at.take() {
                        settled();
                    }
                }
                None => match phase {
                    Phase::Killing { sweeps, .. } if sweeps >= KILL_SWEEPS => {
                        warn!("processes survived SIGKILL for 5s; exiting without them");
                        break;
                    }
                    Phase::Killing { sweeps, .. } => {
                        self.kill_all(pid, exit.is_none());
                        phase = killing(sweeps + 1);
                    }
                    _ => {
                        info!(
                            "stop grace of {} over: sending SIGKILL to what is left",
                            humantime::format_duration(self.stop_grace)
                        );
                        self.kill_all(pid, exit.is_none());
                        phase = killing(1);
                    }
                },
                Some(received) => match signals::role(received.signal) {
                    Role::Reap => self.collect(pid, name, &mut exit),
                    Role::Forward if received.is_self_raised() => {}
                    Role::Forward => {
                        let to = self.forward.rewrite(received.signal);
                        let from = signals::name(received.signal);
                        match to {
                            None => debug!("SIG{from} dropped (--rewrite-signal {from}:0)"),
                            Some(_) if exit.is_some() => {
                                debug!("SIG{from} not forwarded: {name} has exited")
                            }
                            Some(to) => self.send(pid, to),
                        }
                        if self.forward.is_stop_request(received.signal) {
                            stops += 1;
                            stopped_by.get_or_insert(received.signal);
                            match phase {
                                Phase::Killing { .. } => {}
                                _ if stops >= 2 => {
                                    info!("second stop signal: sending SIGKILL now");
                                    self.kill_all(pid, exit.is_none());
                                    phase = killing(1);
                                }
                                Phase::Grace { .. } => {}
                                Phase::Running => {
                                    info!(
                                        "SIG{from} received: stopping {name}, SIGKILL in {}",
                                        humantime::format_duration(self.stop_grace)
                                    );
                                    phase = Phase::Grace {
                                        until: Instant::now() + self.stop_grace,
                                    };
                                }
                            }
                        }
                    }
                    Role::Untouched => {}
                },
            }
            if exit.is_some() {
                if !self.reaper.children_left() {
                    break;
                }
                if !leftovers_told {
                    leftovers_told = true;
                    let n = signal_descendants(libc::SIGTERM);
                    // Often a helper that exits on its own a moment later (Python's
                    // multiprocessing resource tracker): only a SIGKILL is worth an info line.
                    debug!(
                        "{name} has exited; sent SIGTERM to what it left behind, SIGKILL in {}",
                        humantime::format_duration(self.stop_grace)
                    );
                    debug!(signalled = n, "{n} leftover processes signalled");
                    if let Phase::Running = phase {
                        phase = Phase::Grace {
                            until: Instant::now() + self.stop_grace,
                        };
                    }
                }
            }
        }
        let exit = exit.unwrap_or_else(|| {
            warn!("{name} could not be reaped after SIGKILL; reporting it as killed");
            ChildExit::Signaled(libc::SIGKILL)
        });
        Ok(Ended { exit, stopped_by })
    }

    /// Reaps whatever has ended; records (and logs) `pid`'s end in `exit`.
    fn collect(&mut self, pid: pid_t, name: &str, exit: &mut Option<ChildExit>) {
        for (ended, status) in self.reaper.reap_all() {
            if ended == pid {
                if self.announce_exit {
                    info!("{name} {status}");
                } else {
                    debug!("{name} {status}");
                }
                *exit = Some(status);
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

    fn kill_all(&self, pid: pid_t, app_alive: bool) {
        if app_alive {
            self.send(pid, libc::SIGKILL);
        }
        signal_descendants(libc::SIGKILL);
    }
}

fn killing(sweeps: u32) -> Phase {
    Phase::Killing {
        sweeps,
        next: Instant::now() + KILL_SWEEP,
    }
}
