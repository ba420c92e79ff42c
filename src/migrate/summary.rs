//! How a migrate stage ended well, as the one line that says so.

use std::fmt;
use std::time::Duration;

/// How a migrate stage ended well.
#[derive(Debug, Clone, PartialEq)]
pub enum Summary {
    UpToDate {
        lock_waited: Option<Duration>,
    },
    Applied {
        count: usize,
        took: Duration,
        lock_waited: Duration,
    },
    Command {
        took: Duration,
        lock_waited: Duration,
    },
    /// `--wait-for-schema`: another process migrated; this one waited this long for it.
    Awaited {
        waited: Duration,
    },
    /// `alembic upgrade head` with the database at `head`: alembic was not started.
    AlembicAtHead {
        head: String,
        lock_waited: Option<Duration>,
    },
}

impl Summary {
    /// How long the stage waited for the lock, when it took it.
    pub fn lock_waited(&self) -> Option<Duration> {
        match self {
            Summary::UpToDate { lock_waited } => *lock_waited,
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
            Summary::UpToDate { lock_waited: None } => f.write_str("schema up to date"),
            Summary::UpToDate {
                lock_waited: Some(w),
            } => write!(
                f,
                "schema up to date (another replica migrated it; lock waited {:.2}s)",
                w.as_secs_f64()
            ),
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
            Summary::AlembicAtHead { head, lock_waited } => {
                write!(
                    f,
                    "schema up to date (alembic at head {head}; alembic not started"
                )?;
                match lock_waited {
                    Some(w) => write!(
                        f,
                        "; another replica migrated it, lock waited {:.2}s)",
                        w.as_secs_f64()
                    ),
                    None => f.write_str(")"),
                }
            }
            Summary::Awaited { waited } => write!(
                f,
                "schema up to date, after {:.2}s waiting for it (--wait-for-schema)",
                waited.as_secs_f64()
            ),
            Summary::Command { took, lock_waited } => write!(
                f,
                "migration command done in {:.2}s, after {:.2}s waiting for the lock",
                took.as_secs_f64(),
                lock_waited.as_secs_f64()
            ),
        }
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
            Summary::UpToDate { lock_waited: None }.to_string(),
            "schema up to date"
        );
    }
}
