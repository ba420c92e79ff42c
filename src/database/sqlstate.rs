//! What the server's errors mean to roadie (PostgreSQL's SQLSTATEs above all), written once: the wait stage retries what is
//! transient, the migrate stage calls the same codes a lost connection
//! (https://www.postgresql.org/docs/current/errcodes-appendix.html).

/// The server cannot serve this connection now, but may soon: cannot_connect_now (starting up,
/// shutting down, in recovery), admin_shutdown and crash_shutdown (a restart), and the whole
/// connection_exception class (08).
pub fn is_server_unavailable(code: &str) -> bool {
    matches!(code, "57P03" | "57P01" | "57P02") || code.starts_with("08")
}

/// cannot_connect_now (57P03): the server is starting up or recovering, so nearly ready (the
/// wait stage retries it quickly for a moment).
pub fn is_starting_up(code: &str) -> bool {
    code == "57P03"
}

/// Too many connections (53300): transient at login, where another attempt may find a slot.
pub fn is_too_many_connections(code: &str) -> bool {
    code == "53300"
}

/// Whether `e` means the connection itself is gone (rather than a statement failing on it).
pub fn is_connection_loss(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::PoolClosed => true,
        sqlx::Error::Database(d) => d.code().is_some_and(|c| is_server_unavailable(&c)),
        _ => false,
    }
}

/// Whether a login failed because a pooler refuses the startup `options` parameter (PgBouncer
/// answers 08P01 "unsupported startup parameter: options" unless told to ignore it).
pub fn refuses_startup_options(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            d.code().as_deref() == Some("08P01")
                && d.message().contains("unsupported startup parameter")
        }
        _ => false,
    }
}

/// The server's message and code (MySQL's error number, which users look up), without sqlx's
/// wrapping.
pub fn server_message(e: &sqlx::Error) -> String {
    let sqlx::Error::Database(d) = e else {
        return e.to_string();
    };
    #[cfg(feature = "mysql")]
    if let Some(mysql) = d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return format!("{} ({})", mysql.message(), mysql.number());
    }
    match d.code() {
        Some(code) => format!("{} ({code})", d.message()),
        None => d.message().to_string(),
    }
}

/// Where in the statement the server says the error is, as a 1-based character offset
/// (PostgreSQL alone reports it).
pub fn error_position(e: &sqlx::Error) -> Option<usize> {
    #[cfg(feature = "postgres")]
    {
        use sqlx::postgres::{PgDatabaseError, PgErrorPosition};
        let sqlx::Error::Database(d) = e else {
            return None;
        };
        let pg = d.try_downcast_ref::<PgDatabaseError>()?;
        match pg.position() {
            Some(PgErrorPosition::Original(position)) => Some(position),
            _ => None,
        }
    }
    #[cfg(not(feature = "postgres"))]
    {
        let _ = e;
        None
    }
}

/// PostgreSQL's lock_not_available (55P03): `lock_timeout` expired (or a `NOWAIT` lock was
/// refused).
pub fn is_lock_timeout(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("55P03"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("57P03", true)]
    #[case("57P01", true)]
    #[case("08006", true)]
    #[case("53300", false)]
    #[case("28P01", false)]
    #[case("42P01", false)]
    fn unavailable_servers_are_told_from_failed_statements(
        #[case] code: &str,
        #[case] unavailable: bool,
    ) {
        assert_eq!(is_server_unavailable(code), unavailable);
    }
}
