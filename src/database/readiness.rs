//! "Ready" means usable: log in to the target database and run `SELECT 1`. Every failure is
//! classified: transient ones are retried until the deadline, permanent ones end the wait at
//! once, naming the cause and what to check (pg_isready calls a wrong password "ready"; wait4x
//! and dbmate retry it until they time out).

use std::io;

#[cfg(feature = "mysql")]
use sqlx::mysql::MySqlDatabaseError;

use super::{Connection, DatabaseUrl, Driver, sqlstate};

/// Why an attempt failed, and whether another may succeed. The wait stage paces its next
/// attempt by it: see `wait.rs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing answered: the port refuses, the socket file or the host name does not exist
    /// (yet). The attempt never reached a server, so it cost the server nothing.
    Unreachable(String),
    /// The server answered "starting up" (Postgres 57P03): it is nearly ready, or in a crash
    /// recovery that may last minutes.
    StartingUp(String),
    /// Worth another attempt: the server is restarting, busy, or hung up.
    Transient(String),
    /// Will not get better by waiting.
    Permanent { cause: String, hint: String },
}

/// One attempt: connect and `SELECT 1`; the open connection is the caller's. The query goes
/// as a simple query: one round trip, where a prepared statement takes two.
pub async fn probe(url: &DatabaseUrl) -> Result<Connection, sqlx::Error> {
    let mut connection = url.connect().await?;
    connection.execute("SELECT 1").await?;
    Ok(connection)
}

/// The classification table. Messages name the user and database, never the password.
pub fn classify(error: &sqlx::Error, url: &DatabaseUrl) -> Verdict {
    match error {
        sqlx::Error::Io(e) => classify_io(e),
        sqlx::Error::Database(e) => {
            #[cfg(feature = "mysql")]
            if let Some(mysql) = e.try_downcast_ref::<MySqlDatabaseError>() {
                return classify_mysql(mysql.number(), mysql.message(), url);
            }
            classify_sqlstate(e.code().as_deref().unwrap_or(""), e.message(), url)
        }
        sqlx::Error::Tls(e) => Verdict::Permanent {
            cause: format!("TLS failed: {e}"),
            hint: format!(
                "check {} in the URL against what the server offers and its certificate",
                if url.driver() == Driver::MySql {
                    "ssl-mode"
                } else {
                    "sslmode"
                }
            ),
        },
        sqlx::Error::Configuration(e) => Verdict::Permanent {
            cause: format!("the URL cannot be used: {e}"),
            hint: format!("check {}", url.source),
        },
        // The server hung up mid-handshake: it is starting or stopping.
        sqlx::Error::Protocol(message) => Verdict::Transient(format!("protocol: {message}")),
        sqlx::Error::WorkerCrashed => Verdict::Transient("the SQLite worker stopped".into()),
        other => Verdict::Permanent {
            cause: other.to_string(),
            hint: "this is unexpected: please report it".into(),
        },
    }
}

pub fn classify_io(e: &io::Error) -> Verdict {
    use io::ErrorKind::*;
    match e.kind() {
        PermissionDenied => Verdict::Permanent {
            cause: format!("permission denied: {e}"),
            hint: "check the socket's or file's permissions".into(),
        },
        // The kernel answered for the server (RST, no socket file, no route), or the name does
        // not resolve yet: compose starts services in any order. std's lookup error has no
        // kind of its own, only this message (std's `LookupHost`, from getaddrinfo).
        ConnectionRefused | NotFound | AddrNotAvailable | HostUnreachable | NetworkUnreachable
        | NetworkDown => Verdict::Unreachable(e.to_string()),
        _ if e.to_string().starts_with("failed to lookup address") => {
            Verdict::Unreachable(e.to_string())
        }
        // Reset, aborted, timed out: a server was there.
        _ => Verdict::Transient(e.to_string()),
    }
}

/// Postgres SQLSTATEs (https://www.postgresql.org/docs/current/errcodes-appendix.html).
fn classify_sqlstate(code: &str, message: &str, url: &DatabaseUrl) -> Verdict {
    let (user, database) = (url.user(), url.database_name());
    let permanent = |cause: String, hint: String| Verdict::Permanent { cause, hint };
    match code {
        // Starting up, in (crash) recovery, or not yet consistent; the postmaster also
        // answers it while shutting down, which the next attempt then sees as a refused port.
        c if sqlstate::is_starting_up(c) => Verdict::StartingUp(format!("{message} ({code})")),
        c if sqlstate::is_server_unavailable(c) || sqlstate::is_too_many_connections(c) => {
            Verdict::Transient(format!("{message} ({code})"))
        }
        "28P01" => permanent(
            format!("wrong password for user {user:?} (28P01)"),
            format!("check the password in {}", url.source),
        ),
        "28000" => permanent(
            format!("the server refuses this connection: {message} (28000)"),
            "check pg_hba.conf on the server (host, user, database, SSL) and the user name".into(),
        ),
        "3D000" => permanent(
            format!("database {database:?} does not exist (3D000)"),
            format!("create it, or fix the database name in {}", url.source),
        ),
        _ => permanent(
            format!("{message} ({code})"),
            "the server rejected the login; waiting will not change that".into(),
        ),
    }
}

/// MySQL and MariaDB error numbers (https://mariadb.com/kb/en/mariadb-error-codes/).
#[cfg_attr(not(feature = "mysql"), allow(dead_code))]
fn classify_mysql(number: u16, message: &str, url: &DatabaseUrl) -> Verdict {
    let (user, database) = (url.user(), url.database_name());
    let permanent = |cause: String, hint: String| Verdict::Permanent { cause, hint };
    match number {
        // too many connections, server shutdown in progress, connection errors
        // ... and per-user connection limits (1203) and a Galera node not yet synced (1047).
        1040 | 1047 | 1053 | 1077 | 1152 | 1158..=1161 | 1203 | 2002 | 2003 | 2006 | 2013 => {
            Verdict::Transient(format!("{message} ({number})"))
        }
        1045 => permanent(
            format!("access denied for user {user:?}: wrong password or user (1045)"),
            format!("check the user and password in {}", url.source),
        ),
        // MariaDB does not tell a missing database from one the user may not use.
        1044 => permanent(
            format!(
                "user {user:?} may not use database {database:?}: it does not exist or has no grant (1044)"
            ),
            format!(
                "create it and grant it to the user, or fix the database name in {}",
                url.source
            ),
        ),
        1049 => permanent(
            format!("database {database:?} does not exist (1049)"),
            format!("create it, or fix the database name in {}", url.source),
        ),
        1130 | 1129 => permanent(
            format!("the server refuses this host: {message} ({number})"),
            "check the user's allowed hosts on the server".into(),
        ),
        _ => permanent(
            format!("{message} ({number})"),
            "the server rejected the login; waiting will not change that".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn url() -> DatabaseUrl {
        DatabaseUrl::parse("postgres://app:secret-pw@db/shop", "DATABASE_URL").unwrap()
    }

    #[rstest]
    #[case("57P03", true)]
    #[case("53300", true)]
    #[case("57P01", true)]
    #[case("08006", true)]
    #[case("28P01", false)]
    #[case("28000", false)]
    #[case("3D000", false)]
    #[case("42501", false)]
    fn postgres_errors_are_transient_or_permanent(#[case] code: &str, #[case] transient: bool) {
        let verdict = classify_sqlstate(code, "message", &url());
        assert_eq!(
            !matches!(verdict, Verdict::Permanent { .. }),
            transient,
            "{verdict:?}"
        );
    }

    #[rstest]
    #[case(1040, true)]
    #[case(1203, true)]
    #[case(1047, true)]
    #[case(1044, false)]
    #[case(1053, true)]
    #[case(1045, false)]
    #[case(1049, false)]
    #[case(1130, false)]
    fn mysql_errors_are_transient_or_permanent(#[case] number: u16, #[case] transient: bool) {
        let verdict = classify_mysql(number, "message", &url());
        assert_eq!(
            !matches!(verdict, Verdict::Permanent { .. }),
            transient,
            "{verdict:?}"
        );
    }

    #[rstest]
    #[case(io::ErrorKind::ConnectionRefused, true)]
    #[case(io::ErrorKind::ConnectionReset, true)]
    #[case(io::ErrorKind::TimedOut, true)]
    #[case(io::ErrorKind::NotFound, true)]
    #[case(io::ErrorKind::Other, true)]
    #[case(io::ErrorKind::PermissionDenied, false)]
    fn io_errors_are_transient_but_permissions(
        #[case] kind: io::ErrorKind,
        #[case] transient: bool,
    ) {
        let verdict = classify(&sqlx::Error::Io(kind.into()), &url());
        assert_eq!(
            !matches!(verdict, Verdict::Permanent { .. }),
            transient,
            "{verdict:?}"
        );
    }

    #[rstest]
    #[case::refused(io::ErrorKind::ConnectionRefused.into(), "unreachable")]
    #[case::no_socket_file(io::ErrorKind::NotFound.into(), "unreachable")]
    #[case::no_route(io::ErrorKind::HostUnreachable.into(), "unreachable")]
    #[case::name_not_resolving(
        io::Error::other("failed to lookup address information: Name or service not known"),
        "unreachable"
    )]
    #[case::reset(io::ErrorKind::ConnectionReset.into(), "transient")]
    #[case::timed_out(io::ErrorKind::TimedOut.into(), "transient")]
    fn io_errors_tell_an_unreachable_server_from_one_that_hung_up(
        #[case] error: io::Error,
        #[case] expected: &str,
    ) {
        let verdict = classify(&sqlx::Error::Io(error), &url());
        let kind = match verdict {
            Verdict::Unreachable(_) => "unreachable",
            Verdict::Transient(_) => "transient",
            _ => "other",
        };
        assert_eq!(kind, expected, "{verdict:?}");
    }

    #[rstest]
    #[case("57P03", true)]
    #[case("53300", false)]
    #[case("57P01", false)]
    #[case("08006", false)]
    fn only_57p03_says_starting_up(#[case] code: &str, #[case] starting: bool) {
        let verdict = classify_sqlstate(code, "message", &url());
        assert_eq!(
            matches!(verdict, Verdict::StartingUp(_)),
            starting,
            "{verdict:?}"
        );
    }

    #[test]
    fn permanent_causes_name_user_and_database_but_not_the_password() {
        for code in ["28P01", "3D000", "28000"] {
            let Verdict::Permanent { cause, hint } = classify_sqlstate(code, "m", &url()) else {
                panic!("{code} is permanent");
            };
            assert!(!cause.contains("secret-pw") && !hint.contains("secret-pw"));
            assert!(cause.contains(code), "{cause}");
        }
        let Verdict::Permanent { cause, hint } = classify_sqlstate("28P01", "m", &url()) else {
            unreachable!()
        };
        assert!(
            cause.contains("\"app\"") && hint.contains("DATABASE_URL"),
            "{cause} / {hint}"
        );
    }
}
