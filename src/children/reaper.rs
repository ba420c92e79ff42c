//! The only caller of `waitpid` in roadie. On every SIGCHLD it collects every child that has
//! ended (SIGCHLDs coalesce: one may stand for many exits), hands the statuses of the pids
//! someone watches to the caller, and reaps everything else as an orphan.

use tracing::debug;

use super::{ChildExit, Spawned};

#[derive(Debug, Default)]
pub struct Reaper {
    /// Pids whose exit someone waits for (the app, a hook, the migration command).
    watched: Vec<libc::pid_t>,
    /// Whether any child was still alive after the last sweep.
    children_left: bool,
}

impl Reaper {
    /// Makes roadie the reaper of every orphan below it: PID 1 is by definition; anywhere else
    /// roadie becomes a child subreaper, quietly (tini warns, s6 refuses; we do neither).
    pub fn adopt_orphans() -> Self {
        if std::process::id() != 1
            && let Err(e) = nix::sys::prctl::set_child_subreaper(true)
        {
            debug!("not a subreaper ({e}): orphans will go to the real init");
        }
        Reaper::default()
    }

    /// Watches a child roadie just started; returns its pid.
    pub fn watch(&mut self, child: Spawned) -> libc::pid_t {
        self.watch_inherited(child.pid);
        child.pid
    }

    /// Watches a child an earlier image of roadie started (the handoff).
    pub fn watch_inherited(&mut self, pid: libc::pid_t) {
        self.watched.push(pid);
        self.children_left = true;
    }

    /// Reaps every child that has ended. Returns the watched ones with their exits.
    pub fn reap_all(&mut self) -> Vec<(libc::pid_t, ChildExit)> {
        let mut ended = Vec::new();
        loop {
            let mut status = 0;
            // SAFETY: waitpid writes only `status`.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            match pid {
                0 => {
                    self.children_left = true;
                    break;
                }
                -1 => {
                    // ECHILD: no child at all. EINTR cannot happen with WNOHANG.
                    self.children_left = false;
                    break;
                }
                pid => {
                    let Some(exit) = ChildExit::from_wait_status(status) else {
                        continue;
                    };
                    if let Some(i) = self.watched.iter().position(|&w| w == pid) {
                        self.watched.swap_remove(i);
                        ended.push((pid, exit));
                    } else {
                        debug!(pid, "reaped orphan {pid} that {exit}");
                    }
                }
            }
        }
        ended
    }

    /// Whether roadie still has children (as of the last sweep). Descendants further down
    /// count too: a process whose parent dies is re-parented to roadie before that parent
    /// can be reaped, so "no child" means "no descendant".
    pub fn children_left(&self) -> bool {
        self.children_left
    }
}
