//! A read-only standby is not a primary: after a failover, DNS may point at the old primary,
//! now a standby, for a while. Postgres says so with `pg_is_in_recovery()` (and a
//! `default_transaction_read_only` server says so with `transaction_read_only`); MySQL and
//! MariaDB with `@@read_only` (`super_read_only` implies it). `--on-standby` says what to do.

use super::Connection;

/// `--on-standby`: what a standby means for the boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStandby {
    /// Transient, until `--wait-timeout`: failover DNS converges.
    Wait,
    /// Exit 69 at once, naming the host.
    Fail,
    /// Start the app without migrating (a read-only replica deployment).
    Skip,
}

impl OnStandby {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "wait" => Ok(OnStandby::Wait),
            "fail" => Ok(OnStandby::Fail),
            "skip" => Ok(OnStandby::Skip),
            _ => Err(format!(
                "--on-standby {text:?}: expected wait, fail or skip (ROADIE_ON_STANDBY)"
            )),
        }
    }
}

/// Why the server cannot take writes, when it cannot: `pg_is_in_recovery()`, or MySQL's
/// `@@read_only`. Simple queries: a transaction pooler may sit in between.
pub async fn read_only(conn: &mut Connection) -> Result<Option<&'static str>, sqlx::Error> {
    conn.read_only().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("wait", Some(OnStandby::Wait))]
    #[case("FAIL", Some(OnStandby::Fail))]
    #[case(" skip ", Some(OnStandby::Skip))]
    #[case("ignore", None)]
    fn reads_the_policy(#[case] text: &str, #[case] policy: Option<OnStandby>) {
        assert_eq!(OnStandby::parse(text).ok(), policy);
    }
}
