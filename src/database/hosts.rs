//! libpq's failover URLs: `postgres://u:p@h1:5432,h2:5432/db?target_session_attrs=read-write`.
//! The hosts are tried in order (shuffled with `load_balance_hosts=random`), each attempt bounded
//! by `connect_timeout` (seconds; libpq waits at least 2), and a connection is kept only when
//! the server is what `target_session_attrs` asks for, as libpq defines it
//! (https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNECT-TARGET-SESSION-ATTRS).

use std::io;
use std::time::Duration;

use url::Url;

use super::Connection;

/// The libpq parameters roadie reads itself and sqlx never sees.
pub const LIBPQ_ONLY: &[&str] = &[
    "target_session_attrs",
    "connect_timeout",
    "load_balance_hosts",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attrs {
    Any,
    ReadWrite,
    ReadOnly,
    Primary,
    Standby,
    PreferStandby,
}

/// How to choose among the hosts. The default (any host, no bound of its own, in order) is a
/// MySQL URL's, which has one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub attrs: Attrs,
    pub connect_timeout: Option<Duration>,
    pub random_order: bool,
}

impl Default for Session {
    fn default() -> Self {
        Session {
            attrs: Attrs::Any,
            connect_timeout: None,
            random_order: false,
        }
    }
}

impl Session {
    /// Reads the libpq parameters of `url`'s query; an unknown value is an error naming it.
    pub fn from_url(url: &Url) -> Result<Self, String> {
        let mut session = Session {
            attrs: Attrs::Any,
            connect_timeout: None,
            random_order: false,
        };
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "target_session_attrs" => {
                    session.attrs = match value.as_ref() {
                        "any" => Attrs::Any,
                        "read-write" => Attrs::ReadWrite,
                        "read-only" => Attrs::ReadOnly,
                        "primary" => Attrs::Primary,
                        "standby" => Attrs::Standby,
                        "prefer-standby" => Attrs::PreferStandby,
                        other => {
                            return Err(format!(
                                "target_session_attrs={other:?}: expected any, read-write, \
                                 read-only, primary, standby or prefer-standby"
                            ));
                        }
                    }
                }
                "connect_timeout" => {
                    let seconds: i64 = value.trim().parse().map_err(|_| {
                        format!("connect_timeout={value:?}: expected whole seconds")
                    })?;
                    // libpq: zero or less waits forever; less than 2 means 2.
                    session.connect_timeout =
                        (seconds > 0).then(|| Duration::from_secs(seconds.max(2) as u64));
                }
                "load_balance_hosts" => {
                    session.random_order = match value.as_ref() {
                        "disable" => false,
                        "random" => true,
                        other => {
                            return Err(format!(
                                "load_balance_hosts={other:?}: expected disable or random"
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(session)
    }
}

/// libpq's multi-host form: the URL once per host of `//user:pw@h1:5432,h2:5433/db?...`
/// (just the URL when it names one host).
pub fn split(rest: &str) -> Vec<String> {
    let Some(body) = rest.strip_prefix("//") else {
        return vec![rest.to_string()];
    };
    let end = body.find(['/', '?', '#']).unwrap_or(body.len());
    let (authority, tail) = body.split_at(end);
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(at) => authority.split_at(at + 1),
        None => ("", authority),
    };
    if !hosts.contains(',') {
        return vec![rest.to_string()];
    }
    hosts
        .split(',')
        .map(|host| format!("//{userinfo}{host}{tail}"))
        .collect()
}

/// Whether a server that is (or is not) in recovery and read-only fits `attrs`.
fn fits(attrs: Attrs, in_recovery: bool, read_only: bool) -> bool {
    match attrs {
        Attrs::Any | Attrs::PreferStandby => true,
        Attrs::ReadWrite => !read_only,
        Attrs::ReadOnly => read_only,
        Attrs::Primary => !in_recovery,
        Attrs::Standby => in_recovery,
    }
}

/// Connects to the first host that answers and fits, in `session`'s order; `open` makes one
/// attempt at one host. Nothing fitting is transient (a failover may be under way).
pub async fn connect<'a, F>(
    hosts: Vec<(&'a Url, String)>,
    session: &Session,
    open: impl Fn(&'a Url) -> F,
) -> Result<Connection, sqlx::Error>
where
    F: Future<Output = Result<Connection, sqlx::Error>>,
{
    let mut hosts = hosts;
    if session.random_order {
        fastrand::shuffle(&mut hosts);
    }
    // prefer-standby: a standby if any, else any server (libpq's two passes).
    let passes: &[Attrs] = match session.attrs {
        Attrs::PreferStandby => &[Attrs::Standby, Attrs::Any],
        attrs => &[attrs][..],
    };
    let passes: Vec<Attrs> = passes.to_vec();
    let mut last = None;
    let mut unfit = Vec::new();
    for attrs in passes {
        for (url, name) in &hosts {
            let opened = bounded_attempt(open(url), session.connect_timeout, name).await;
            let mut conn = match opened {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::debug!("{name}: {e}");
                    last = Some(e);
                    continue;
                }
            };
            if attrs == Attrs::Any {
                return Ok(conn);
            }
            let (in_recovery, read_only) = state(&mut conn).await?;
            if fits(attrs, in_recovery, read_only) {
                return Ok(conn);
            }
            conn.close().await;
            unfit.push(format!("{name} is {}", role_of(in_recovery, read_only)));
        }
    }
    if !unfit.is_empty() {
        return Err(sqlx::Error::Io(io::Error::other(format!(
            "no host fits target_session_attrs={} ({})",
            session.attrs.as_libpq(),
            unfit.join(", ")
        ))));
    }
    Err(last.unwrap_or_else(|| sqlx::Error::Configuration("no host in the URL".into())))
}

/// One attempt, within libpq's `connect_timeout` when the URL sets one.
async fn bounded_attempt(
    attempt: impl Future<Output = Result<Connection, sqlx::Error>>,
    limit: Option<Duration>,
    name: &str,
) -> Result<Connection, sqlx::Error> {
    let Some(limit) = limit else {
        return attempt.await;
    };
    tokio::time::timeout(limit, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(sqlx::Error::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{name}: no connection within connect_timeout={}s",
                    limit.as_secs()
                ),
            )))
        })
}

/// What a server is, for the line that says no host fits.
fn role_of(in_recovery: bool, read_only: bool) -> &'static str {
    if in_recovery {
        "a standby"
    } else if read_only {
        "read-only"
    } else {
        "a primary"
    }
}

impl Attrs {
    /// The value as libpq spells it.
    fn as_libpq(self) -> &'static str {
        match self {
            Attrs::Any => "any",
            Attrs::ReadWrite => "read-write",
            Attrs::ReadOnly => "read-only",
            Attrs::Primary => "primary",
            Attrs::Standby => "standby",
            Attrs::PreferStandby => "prefer-standby",
        }
    }
}

/// `pg_is_in_recovery()` and `transaction_read_only` (PostgreSQL; a primary elsewhere).
// A Postgres-only build has one driver: its `if let` always matches.
#[cfg_attr(
    not(any(feature = "mysql", feature = "sqlite")),
    allow(irrefutable_let_patterns)
)]
async fn state(conn: &mut Connection) -> Result<(bool, bool), sqlx::Error> {
    #[cfg(feature = "postgres")]
    if let Connection::Postgres(c) = conn {
        return super::postgres::recovery_state(c).await;
    }
    Ok((false, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("//u:p@h1:5432,h2:5433/db?x=1", &["//u:p@h1:5432/db?x=1", "//u:p@h2:5433/db?x=1"])]
    #[case("//h1,h2/db", &["//h1/db", "//h2/db"])]
    #[case("//u:p@h1:5432/db", &["//u:p@h1:5432/db"])]
    #[case("//u:p,w@h1/db", &["//u:p,w@h1/db"])]
    fn a_multi_host_url_is_one_url_per_host(#[case] rest: &str, #[case] urls: &[&str]) {
        assert_eq!(split(rest), urls);
    }

    proptest::proptest! {
        /// Whatever hosts a failover URL lists, each comes back once, in order, with the same
        /// user, password, database and query, and no URL of them holds a comma in its hosts.
        #[test]
        fn every_listed_host_becomes_one_url(
            hosts in proptest::collection::vec("[a-z0-9.-]{1,12}(:[0-9]{1,5})?", 1..5),
            password in "[a-zA-Z0-9%,;:!*]{0,12}",
            tail in "(/[a-z]{0,8})?(\\?[a-z_=&-]{0,20})?",
        ) {
            let rest = format!("//u:{password}@{}{tail}", hosts.join(","));
            let urls = split(&rest);
            if hosts.len() == 1 {
                proptest::prop_assert_eq!(urls, vec![rest]);
            } else {
                let expected: Vec<String> = hosts
                    .iter()
                    .map(|h| format!("//u:{password}@{h}{tail}"))
                    .collect();
                proptest::prop_assert_eq!(urls, expected);
            }
        }

        /// A multi-host URL is either read or refused, and a refusal never repeats it.
        #[test]
        fn a_multi_host_url_never_leaks_its_password(
            hosts in proptest::collection::vec("[a-z0-9:.,\\[\\]-]{0,14}", 1..4),
            query in "[a-z_=&0-9-]{0,30}",
        ) {
            let text = format!("postgres://u:secret-pw@{}/app?{query}", hosts.join(","));
            match crate::database::DatabaseUrl::parse(&text, "DATABASE_URL") {
                Ok(url) => {
                    let shown = format!("{url} {url:?}");
                    proptest::prop_assert!(!shown.contains("secret-pw"), "{}", shown)
                }
                Err(e) => proptest::prop_assert!(!e.contains("secret-pw"), "{}", e),
            }
        }
    }

    #[rstest]
    #[case(Attrs::ReadWrite, false, false, true)]
    #[case(Attrs::ReadWrite, true, true, false)]
    #[case(Attrs::Primary, false, true, true)]
    #[case(Attrs::Primary, true, true, false)]
    #[case(Attrs::Standby, true, true, true)]
    #[case(Attrs::Standby, false, false, false)]
    #[case(Attrs::ReadOnly, false, true, true)]
    #[case(Attrs::Any, true, true, true)]
    fn target_session_attrs_as_libpq_defines_them(
        #[case] attrs: Attrs,
        #[case] in_recovery: bool,
        #[case] read_only: bool,
        #[case] fit: bool,
    ) {
        assert_eq!(fits(attrs, in_recovery, read_only), fit);
    }

    #[rstest]
    #[case("postgres://h/db?connect_timeout=1", Some(2))]
    #[case("postgres://h/db?connect_timeout=10", Some(10))]
    #[case("postgres://h/db?connect_timeout=0", None)]
    #[case("postgres://h/db", None)]
    fn connect_timeout_reads_as_libpq_reads_it(#[case] url: &str, #[case] seconds: Option<u64>) {
        let session = Session::from_url(&Url::parse(url).unwrap()).unwrap();
        assert_eq!(session.connect_timeout, seconds.map(Duration::from_secs));
    }

    #[rstest]
    #[case("postgres://h/db?target_session_attrs=writable")]
    #[case("postgres://h/db?connect_timeout=soon")]
    #[case("postgres://h/db?load_balance_hosts=yes")]
    fn a_bad_libpq_parameter_is_named(#[case] url: &str) {
        assert!(Session::from_url(&Url::parse(url).unwrap()).is_err());
    }
}
