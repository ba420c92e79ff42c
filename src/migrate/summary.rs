//! How a migrate stage ended well, as the one line that says so.

use std::fmt;
use std::time::Duration;

/// How a migrate stage ended well.
#[derive(Debug, Clone, PartialEq)]
pub enum Summary {
    UpToDate {
        lock_waited: Option<Duration>,
        /// The lock was taken for `--locked-hooks`, not because the schema looked behind:
        /// nobody else need have migrated it.
        for_hooks: bool,
    },
    Applied {
        count: usize,
        took: Duration,
        lock_waited: Duration,
    },
    Command {
        took: Duration,
        lock_waited: Duration,
        /// The head(s) the version table was read at after the command exited 0, when
        /// roadie can read the command's project (alembic, Flask-Migrate).
        landed: Option<String>,
    },
    /// `--wait-for-schema`: another process migrated; this one waited this long for it.
    Awaited { waited: Duration },
    /// `alembic upgrade head` with the database at `head`: alembic was not started.
    AlembicAtHead {
        head: String,
        lock_waited: Option<Duration>,
        /// As in `UpToDate`: the lock was taken for `--locked-hooks` with the schema at head.
        for_hooks: bool,
    },
}

impl Summary {
    /// How long the stage waited for the lock, when it took it.
    pub fn lock_waited(&self) -> Option<Duration> {
        match self {
            Summary::UpToDate { lock_waited, .. } => *lock_waited,
            Summary::Awaited { .. } => None,
            Summary::AlembicAtHead { lock_waited, .. } => *lock_waited,
            Summary::Applied { lock_waited, .. } | Summary::Command { lock_waited, .. } => {
                Some(*lock_waited)
            }
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Summary::UpToDate {
                lock_waited: None, ..
            } => f.write_str("schema up to date"),
            Summary::UpToDate {
                lock_waited: Some(w),
                for_hooks,
            } => write!(f, "schema up to date ({})", locked(*w, *for_hooks)),
            Summary::Applied {
                count,
                took,
                lock_waited,
            } => write!(
                f,
                "{count} migration{} applied in {:.2}s, after {:.2}s waiting for the lock",
                if *count == 1 { "" } else { "s" },
                took.as_secs_f64(),
                lock_waited.as_secs_f64()
            ),
            Summary::AlembicAtHead {
                head,
                lock_waited,
                for_hooks,
            } => {
                write!(
                    f,
                    "schema up to date (alembic at head {head}; alembic not started"
                )?;
                match lock_waited {
                    Some(w) => write!(f, "; {})", locked(*w, *for_hooks)),
                    None => f.write_str(")"),
                }
            }
            Summary::Awaited { waited } => write!(
                f,
                "schema up to date, after {:.2}s waiting for it (--wait-for-schema)",
                waited.as_secs_f64()
            ),
            Summary::Command {
                took,
                lock_waited,
                landed,
            } => {
                write!(
                    f,
                    "migration command done in {:.2}s, after {:.2}s waiting for the lock",
                    took.as_secs_f64(),
                    lock_waited.as_secs_f64()
                )?;
                match landed {
                    Some(head) => write!(f, "; alembic at head {head}, read back"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// Why a replica with nothing to migrate held the lock: `--locked-hooks` wanted it, or the
/// schema looked behind until another replica's migration ended.
fn locked(waited: Duration, for_hooks: bool) -> String {
    let waited = waited.as_secs_f64();
    match for_hooks {
        true => format!("lock taken for --locked-hooks after {waited:.2}s"),
        false => format!("another replica migrated it; lock waited {waited:.2}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_read_as_the_issue_writes_them() {
        let applied = Summary::Applied {
            count: 2,
            took: Duration::from_millis(310),
            lock_waited: Duration::ZERO,
        };
        assert_eq!(
            applied.to_string(),
            "2 migrations applied in 0.31s, after 0.00s waiting for the lock"
        );
        assert_eq!(
            Summary::UpToDate {
                lock_waited: None,
                for_hooks: false
            }
            .to_string(),
            "schema up to date"
        );
    }

    #[rstest::rstest]
    #[case(
        false,
        "schema up to date (alembic at head 0005; alembic not started; another replica migrated it; lock waited 0.01s)"
    )]
    #[case(
        true,
        "schema up to date (alembic at head 0005; alembic not started; lock taken for --locked-hooks after 0.01s)"
    )]
    fn a_lock_taken_for_the_hooks_is_not_said_as_another_replicas_migration(
        #[case] for_hooks: bool,
        #[case] line: &str,
    ) {
        let summary = Summary::AlembicAtHead {
            head: "0005".into(),
            lock_waited: Some(Duration::from_millis(10)),
            for_hooks,
        };
        assert_eq!(summary.to_string(), line);
        let native = Summary::UpToDate {
            lock_waited: Some(Duration::from_millis(10)),
            for_hooks,
        };
        assert_eq!(
            native.to_string().contains("another replica"),
            !for_hooks,
            "{native}"
        );
    }
}
