//! The process tree as `/proc` shows it: every process's parent, and the processes below one.
//! Public for the black-box tests, which walk the same tree (a test's roadie and its children).

use std::collections::HashMap;
use std::fs;

/// `root` and every process below it, parents before their children.
pub fn tree(root: libc::pid_t) -> Vec<libc::pid_t> {
    let parents = parents();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|&(_, &ppid)| ppid == parent)
                .map(|(&pid, _)| pid),
        );
        i += 1;
    }
    found
}

/// Every process's parent, from /proc/<pid>/stat.
pub fn parents() -> HashMap<libc::pid_t, libc::pid_t> {
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
