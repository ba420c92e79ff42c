//! Signalling every process below roadie, for the end of a run. As PID 1 of a namespace that
//! is `kill(-1)`, which the kernel limits to the namespace; as a subreaper `kill(-1)` would reach
//! the whole host, so the /proc tree is walked instead.

use crate::process_tree;

/// Sends `signal` to every descendant of roadie; returns how many were signalled (as PID 1,
/// 1 when any process was there to signal).
pub fn signal_descendants(signal: libc::c_int) -> usize {
    let me = std::process::id() as libc::pid_t;
    if me == 1 {
        // SAFETY: kill(-1) from a namespace's init signals every process in it but init.
        return usize::from(unsafe { libc::kill(-1, signal) } == 0);
    }
    process_tree::tree(me)[1..]
        .iter()
        // SAFETY: plain kill(2); a process that is already gone gives ESRCH.
        .filter(|&&pid| unsafe { libc::kill(pid, signal) } == 0)
        .count()
}
