//! Which signals roadie forwards, which it keeps for itself, and what they are called.
//! The policy is the table in [`role`]; `source.rs` is the mechanism that delivers them.
//! Nothing here sends a signal: the supervisor does, after asking [`ForwardPolicy`].

mod source;

use libc::c_int;
pub use source::{SignalSource, reset_for_exec};

/// What roadie does with a signal delivered to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A child changed state: run the reaper. Never forwarded.
    Reap,
    /// Passed on to the app (after `--rewrite-signal`).
    Forward,
    /// Left to the kernel: cannot be caught, is a synchronous fault that only a bug in roadie
    /// itself could raise, or is reserved by the C library.
    Untouched,
}

/// The forwarding table. Everything a process can catch is forwarded, except:
///
/// | signal | role | why |
/// | --- | --- | --- |
/// | CHLD | reap | the reaper's wake-up; the app's children are the app's business |
/// | KILL STOP | untouched | cannot be caught |
/// | SEGV BUS FPE ILL TRAP SYS | untouched | synchronous faults: raised by roadie's own code, never meant for the app |
/// | 32, 33 | untouched | glibc's internal signals (thread cancellation, setxid) |
///
/// TSTP, TTIN and TTOU are forwarded too: roadie blocks them for itself, so it is never stopped,
/// and the kernel does not send them to a process that blocks them (tty_check_change).
pub fn role(signal: c_int) -> Role {
    match signal {
        libc::SIGCHLD => Role::Reap,
        libc::SIGKILL | libc::SIGSTOP => Role::Untouched,
        libc::SIGSEGV
        | libc::SIGBUS
        | libc::SIGFPE
        | libc::SIGILL
        | libc::SIGTRAP
        | libc::SIGSYS => Role::Untouched,
        s if (1..=31).contains(&s) => Role::Forward,
        s if (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&s) => Role::Forward,
        _ => Role::Untouched,
    }
}

/// Every signal roadie takes delivery of: the ones it forwards and CHLD.
pub fn handled() -> impl Iterator<Item = c_int> {
    (1..=libc::SIGRTMAX()).filter(|&s| role(s) != Role::Untouched)
}

/// Signals 1-31 by number (index = number - 1), as Linux on x86_64 and aarch64 numbers them.
const NAMES: [&str; 31] = [
    "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
    "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG",
    "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
];

/// The signal's name without `SIG`: `TERM`, `RTMIN+3`; the number for anything else.
pub fn name(signal: c_int) -> String {
    let (rtmin, rtmax) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    match signal {
        1..=31 => NAMES[signal as usize - 1].to_string(),
        s if s == rtmin => "RTMIN".to_string(),
        s if s == rtmax => "RTMAX".to_string(),
        s if s > rtmin && s < rtmax => format!("RTMIN+{}", s - rtmin),
        s => s.to_string(),
    }
}

/// Reads a signal as users write it: `TERM`, `SIGTERM`, `term`, `15`, `RTMIN+2`, `RTMAX-1`.
pub fn parse(text: &str) -> Result<c_int, String> {
    let upper = text.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    let (rtmin, rtmax) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    let number = if let Ok(n) = bare.parse::<c_int>() {
        Some(n)
    } else if let Some(i) = NAMES.iter().position(|&n| n == bare) {
        Some(i as c_int + 1)
    } else {
        match bare {
            "IOT" => Some(libc::SIGABRT),
            "POLL" => Some(libc::SIGIO),
            "CLD" => Some(libc::SIGCHLD),
            "RTMIN" => Some(rtmin),
            "RTMAX" => Some(rtmax),
            _ => rt_offset(bare, rtmin, rtmax),
        }
    };
    match number {
        Some(n) if (1..=rtmax).contains(&n) => Ok(n),
        _ => Err(format!("unknown signal {text:?}")),
    }
}

fn rt_offset(bare: &str, rtmin: c_int, rtmax: c_int) -> Option<c_int> {
    let (base, offset) = if let Some(rest) = bare.strip_prefix("RTMIN+") {
        (rtmin, rest.parse::<c_int>().ok()?)
    } else {
        let offset = bare.strip_prefix("RTMAX-")?.parse::<c_int>().ok()?;
        (rtmax, offset.checked_neg()?)
    };
    // Checked: `RTMIN+2147483614` must be refused, not overflow.
    let n = base.checked_add(offset)?;
    (rtmin..=rtmax).contains(&n).then_some(n)
}

/// Where forwarded signals go and how they are rewritten on the way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardPolicy {
    /// `--rewrite-signal FROM:TO`; `TO` = 0 drops the signal.
    pub rewrites: Vec<(c_int, c_int)>,
    /// `--signal-group`: signal the app's whole process group, not only the app.
    pub group: bool,
}

impl ForwardPolicy {
    /// The signal to send for a received one; `None` when it is dropped.
    pub fn rewrite(&self, signal: c_int) -> Option<c_int> {
        let to = self
            .rewrites
            .iter()
            .rev()
            .find(|(from, _)| *from == signal)
            .map_or(signal, |&(_, to)| to);
        (to != 0).then_some(to)
    }
}

/// Reads `FROM:TO` as `--rewrite-signal` takes it.
pub fn parse_rewrite(text: &str) -> Result<(c_int, c_int), String> {
    let (from, to) = text
        .split_once(':')
        .ok_or_else(|| format!("--rewrite-signal {text:?}: expected FROM:TO, e.g. TERM:QUIT"))?;
    let from = parse(from).map_err(|e| format!("--rewrite-signal {text:?}: {e}"))?;
    if role(from) != Role::Forward {
        return Err(format!(
            "--rewrite-signal {text:?}: {} is never forwarded, so it cannot be rewritten",
            name(from)
        ));
    }
    let to = if to.trim() == "0" {
        0
    } else {
        parse(to).map_err(|e| format!("--rewrite-signal {text:?}: {e}"))?
    };
    Ok((from, to))
}

/// TERM and INT ask the app to stop: they start the grace period, and a second one ends it.
fn is_stop(signal: c_int) -> bool {
    signal == libc::SIGTERM || signal == libc::SIGINT
}

impl ForwardPolicy {
    /// Whether a received signal asks roadie to stop: TERM or INT as received or as rewritten,
    /// unless `--rewrite-signal` drops it.
    pub fn is_stop_request(&self, received: c_int) -> bool {
        self.rewrite(received)
            .is_some_and(|to| is_stop(received) || is_stop(to))
    }
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("TERM", libc::SIGTERM)]
    #[case("SIGTERM", libc::SIGTERM)]
    #[case("term", libc::SIGTERM)]
    #[case("15", libc::SIGTERM)]
    #[case("sigusr1", libc::SIGUSR1)]
    #[case("WINCH", libc::SIGWINCH)]
    #[case("IOT", libc::SIGABRT)]
    #[case("RTMIN", libc::SIGRTMIN())]
    #[case("RTMIN+3", libc::SIGRTMIN() + 3)]
    #[case("SIGRTMAX-1", libc::SIGRTMAX() - 1)]
    fn parses_signal_names_as_users_write_them(#[case] text: &str, #[case] expected: c_int) {
        assert_eq!(parse(text), Ok(expected));
    }

    #[rstest]
    #[case("")]
    #[case("TERMINATE")]
    #[case("0")]
    #[case("65")]
    #[case("-1")]
    #[case("RTMIN+99")]
    fn rejects_what_is_not_a_signal(#[case] text: &str) {
        assert!(parse(text).is_err(), "{text:?} parsed");
    }

    #[rstest]
    #[case(libc::SIGTERM, "TERM")]
    #[case(libc::SIGRTMIN() + 2, "RTMIN+2")]
    #[case(libc::SIGRTMAX(), "RTMAX")]
    fn names_round_trip(#[case] signal: c_int, #[case] expected: &str) {
        assert_eq!(name(signal), expected);
        assert_eq!(parse(expected), Ok(signal));
    }

    #[rstest]
    #[case(libc::SIGHUP, Role::Forward)]
    #[case(libc::SIGINT, Role::Forward)]
    #[case(libc::SIGQUIT, Role::Forward)]
    #[case(libc::SIGABRT, Role::Forward)]
    #[case(libc::SIGUSR1, Role::Forward)]
    #[case(libc::SIGUSR2, Role::Forward)]
    #[case(libc::SIGALRM, Role::Forward)]
    #[case(libc::SIGTERM, Role::Forward)]
    #[case(libc::SIGWINCH, Role::Forward)]
    #[case(libc::SIGTSTP, Role::Forward)]
    #[case(libc::SIGTTIN, Role::Forward)]
    #[case(libc::SIGCONT, Role::Forward)]
    #[case(libc::SIGRTMIN(), Role::Forward)]
    #[case(libc::SIGRTMAX(), Role::Forward)]
    #[case(libc::SIGCHLD, Role::Reap)]
    #[case(libc::SIGKILL, Role::Untouched)]
    #[case(libc::SIGSTOP, Role::Untouched)]
    #[case(libc::SIGSEGV, Role::Untouched)]
    #[case(libc::SIGBUS, Role::Untouched)]
    #[case(libc::SIGFPE, Role::Untouched)]
    #[case(libc::SIGILL, Role::Untouched)]
    #[case(libc::SIGTRAP, Role::Untouched)]
    #[case(libc::SIGSYS, Role::Untouched)]
    #[case(32, Role::Untouched)]
    #[case(33, Role::Untouched)]
    fn forwarding_table(#[case] signal: c_int, #[case] expected: Role) {
        assert_eq!(role(signal), expected, "signal {}", name(signal));
    }

    #[rstest]
    #[case("TERM:QUIT", Ok((libc::SIGTERM, libc::SIGQUIT)))]
    #[case("INT:0", Ok((libc::SIGINT, 0)))]
    #[case("SIGHUP:SIGUSR1", Ok((libc::SIGHUP, libc::SIGUSR1)))]
    #[case("1:31", Ok((libc::SIGHUP, libc::SIGSYS)))]
    #[case("TERM", Err(()))]
    #[case("TERM:", Err(()))]
    #[case(":QUIT", Err(()))]
    #[case("TERM::QUIT", Err(()))]
    #[case("CHLD:TERM", Err(()))]
    #[case("KILL:TERM", Err(()))]
    #[case("TERM:NOPE", Err(()))]
    fn parses_rewrites(#[case] text: &str, #[case] expected: Result<(c_int, c_int), ()>) {
        assert_eq!(parse_rewrite(text).map_err(|_| ()), expected, "{text}");
    }

    #[test]
    fn rewrites_map_drop_and_pass_through() {
        let policy = ForwardPolicy {
            rewrites: vec![(libc::SIGTERM, libc::SIGQUIT), (libc::SIGWINCH, 0)],
            group: false,
        };
        assert_eq!(policy.rewrite(libc::SIGTERM), Some(libc::SIGQUIT));
        assert_eq!(policy.rewrite(libc::SIGWINCH), None);
        assert_eq!(policy.rewrite(libc::SIGHUP), Some(libc::SIGHUP));
    }

    #[rstest]
    #[case(libc::SIGTERM, &[], true)]
    #[case(libc::SIGINT, &[], true)]
    #[case(libc::SIGHUP, &[], false)]
    #[case(libc::SIGTERM, &[(libc::SIGTERM, libc::SIGQUIT)], true)]
    #[case(libc::SIGUSR1, &[(libc::SIGUSR1, libc::SIGTERM)], true)]
    #[case(libc::SIGTERM, &[(libc::SIGTERM, 0)], false)]
    fn stop_requests(
        #[case] received: c_int,
        #[case] rewrites: &[(c_int, c_int)],
        #[case] stop: bool,
    ) {
        let policy = ForwardPolicy {
            rewrites: rewrites.to_vec(),
            group: false,
        };
        assert_eq!(policy.is_stop_request(received), stop);
    }

    #[test]
    fn the_last_rewrite_of_a_signal_wins() {
        let policy = ForwardPolicy {
            rewrites: vec![
                (libc::SIGTERM, libc::SIGQUIT),
                (libc::SIGTERM, libc::SIGINT),
            ],
            group: false,
        };
        assert_eq!(policy.rewrite(libc::SIGTERM), Some(libc::SIGINT));
    }
}
