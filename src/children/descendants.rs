//! Signalling every process below roadie, for the end of a run. As PID 1 of a namespace that
//! is `kill(-1)`, which the kernel limits to the namespace; as a subreaper `kill(-1)` would reach
//! the whole host, so the /proc tree is walked instead.

use std::collections::HashMap;
use std::fs;

/// Sends `signal` to every descendant of roadie; returns how many were signalled (as PID 1,
/// 1 when any process was there to signal).
pub fn signal_descendants(signal: libc::c_int) -> usize {
    let me = std::process::id() as libc::pid_t;
    if me == 1 {
        // SAFETY: kill(-1) from a namespace's init signals every process in it but init.
        return usize::from(unsafe { libc::kill(-1, signal) } == 0);
    }
    let tree = parents();
    let mut found = vec![me];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            tree.iter()
                .filter(|&(_, &ppid)| ppid == parent)
                .map(|(&pid, _)| pid),
        );
        i += 1;
    }
    found[1..]
        .iter()
        // SAFETY: plain kill(2); a process that is already gone gives ESRCH.
        .filter(|&&pid| unsafe { libc::kill(pid, signal) } == 0)
        .count()
}

/// Every process's parent, from /proc/<pid>/stat.
fn parents() -> HashMap<libc::pid_t, libc::pid_t> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return HashMap::new();
    };
    entries
        .filter_map(|e| {
            let pid: libc::pid_t = e.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            Some((pid, parent_in_stat(&stat)?))
        })
        .collect()
}

/// The ppid field of a /proc/<pid>/stat line. The command name is in parentheses and may itself
/// hold spaces and parentheses, so fields are counted from the last ')'.
fn parent_in_stat(stat: &str) -> Option<libc::pid_t> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("12 (sleep) S 7 12 7 0 -1", Some(7))]
    #[case("12 (a b) c) R 99 12 7 0", Some(99))]
    #[case("12 (x", None)]
    fn reads_the_parent_from_a_stat_line(#[case] line: &str, #[case] ppid: Option<i32>) {
        assert_eq!(parent_in_stat(line), ppid);
    }
}
