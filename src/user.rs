//! `--user USER[:GROUP]`: who the children run as, resolved once at config time, like gosu and
//! `docker run --user`: names or numbers, supplementary groups from /etc/group, HOME from
//! /etc/passwd ("/" for a number with no entry).

use std::ffi::CString;
use std::path::PathBuf;

use nix::unistd::{Gid, Group, Uid, User, getgrouplist};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    /// Supplementary groups, the primary one included.
    pub groups: Vec<libc::gid_t>,
    pub home: PathBuf,
}

/// One side of `USER:GROUP`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Id<'a> {
    Number(u32),
    Name(&'a str),
}

fn id(s: &str) -> Option<Id<'_>> {
    match s {
        "" => None,
        s => Some(s.parse().map(Id::Number).unwrap_or(Id::Name(s))),
    }
}

fn parse_spec(spec: &str) -> Result<(Id<'_>, Option<Id<'_>>), String> {
    let (user, group) = match spec.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (spec, None),
    };
    let user = id(user).ok_or_else(|| format!("--user {spec:?}: expected USER[:GROUP]"))?;
    let group = match group {
        Some(g) => Some(id(g).ok_or_else(|| format!("--user {spec:?}: empty GROUP after ':'"))?),
        None => None,
    };
    Ok((user, group))
}

/// Resolves `USER[:GROUP]` against /etc/passwd and /etc/group.
pub fn resolve(spec: &str) -> Result<RunAs, String> {
    let (user, group) = parse_spec(spec)?;
    let lookup_err = |e: nix::Error| format!("--user {spec:?}: looking up the user: {e}");
    let entry = match user {
        Id::Number(n) => not_found_is_none(User::from_uid(Uid::from_raw(n))).map_err(lookup_err)?,
        Id::Name(name) => Some(
            not_found_is_none(User::from_name(name))
                .map_err(lookup_err)?
                .ok_or_else(|| format!("--user {spec:?}: no user {name:?} in /etc/passwd"))?,
        ),
    };
    let uid = match (&entry, user) {
        (Some(u), _) => u.uid.as_raw(),
        (None, Id::Number(n)) => n,
        (None, Id::Name(_)) => unreachable!("UNWRAP: a name without an entry returned above"),
    };
    let gid = match group {
        Some(Id::Number(n)) => n,
        Some(Id::Name(name)) => not_found_is_none(Group::from_name(name))
            .map_err(|e| format!("--user {spec:?}: looking up the group: {e}"))?
            .ok_or_else(|| format!("--user {spec:?}: no group {name:?} in /etc/group"))?
            .gid
            .as_raw(),
        // Docker's rule for a uid with no passwd entry: group 0.
        None => entry.as_ref().map_or(0, |u| u.gid.as_raw()),
    };
    let groups = match &entry {
        Some(u) => {
            let name = CString::new(u.name.as_bytes()).expect("UNWRAP: passwd names hold no NUL");
            getgrouplist(&name, Gid::from_raw(gid))
                .map_err(|e| format!("--user {spec:?}: reading supplementary groups: {e}"))?
                .into_iter()
                .map(Gid::as_raw)
                .collect()
        }
        None => vec![gid],
    };
    let home = entry.map_or_else(|| PathBuf::from("/"), |u| u.dir);
    if !Uid::effective().is_root()
        && (uid != Uid::current().as_raw() || gid != Gid::current().as_raw())
    {
        return Err(format!(
            "--user {spec:?}: switching user needs roadie to run as root (it runs as uid {})",
            Uid::effective()
        ));
    }
    Ok(RunAs {
        uid,
        gid,
        groups,
        home,
    })
}

/// getpwuid_r(3) and friends report "no such entry" as ENOENT, ESRCH, EBADF or EPERM as well
/// as by an empty answer (an image with no /etc/passwd at all gives ENOENT): all mean none.
fn not_found_is_none<T>(found: nix::Result<Option<T>>) -> nix::Result<Option<T>> {
    use nix::errno::Errno;
    match found {
        Err(Errno::ENOENT | Errno::ESRCH | Errno::EBADF | Errno::EPERM) => Ok(None),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("app", Ok((Id::Name("app"), None)))]
    #[case("1000", Ok((Id::Number(1000), None)))]
    #[case("app:staff", Ok((Id::Name("app"), Some(Id::Name("staff")))))]
    #[case("1000:50", Ok((Id::Number(1000), Some(Id::Number(50)))))]
    #[case("app:50", Ok((Id::Name("app"), Some(Id::Number(50)))))]
    #[case("", Err(()))]
    #[case(":staff", Err(()))]
    #[case("app:", Err(()))]
    fn reads_user_and_group(#[case] spec: &str, #[case] expected: Result<(Id, Option<Id>), ()>) {
        assert_eq!(parse_spec(spec).map_err(|_| ()), expected);
    }

    #[test]
    fn a_number_without_an_entry_gets_group_0_and_home_slash() {
        if !Uid::effective().is_root() {
            return; // switching user needs root: covered by the black-box tests
        }
        let run_as = resolve("54321").expect("numeric uid");
        assert_eq!((run_as.uid, run_as.gid, run_as.groups), (54321, 0, vec![0]));
        assert_eq!(run_as.home, PathBuf::from("/"));
    }

    #[test]
    fn an_unknown_name_is_refused_by_name() {
        let err = resolve("no-such-user-roadie").unwrap_err();
        assert!(err.contains("no user \"no-such-user-roadie\""), "{err}");
    }
}
