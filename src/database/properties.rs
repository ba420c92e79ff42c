//! Property tests of database URLs in every form and of the `POSTGRES_*` variables: never a
//! panic, never the password in `Display`, `Debug` or an error, and what parses reaches sqlx as
//! written (see `test_text.rs`).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use rstest::rstest;
use sqlx::ConnectOptions as _;

use proptest::prelude::*;

use crate::test_text::*;

use crate::database::{self, ConnectOptions, DatabaseUrl};

#[derive(Debug, Clone)]
enum Host {
    Name(String),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
    /// libpq's `postgres://user@/db?host=/run/postgresql`: a socket directory instead.
    Socket(String),
}

impl Host {
    fn in_url(&self) -> String {
        match self {
            Host::Name(name) => name.clone(),
            Host::V4(ip) => ip.to_string(),
            Host::V6(ip) => format!("[{ip}]"),
            Host::Socket(_) => String::new(),
        }
    }
}

/// The ssl setting as written (`sslmode=`, or asyncpg's `ssl=`) and the mode sqlx should get,
/// by its Debug name.
type Ssl = Option<(&'static str, &'static str, &'static str)>;

/// A Postgres or MySQL URL in one of the forms applications write, from its parts.
#[derive(Debug, Clone)]
struct ServerUrl {
    postgres: bool,
    scheme: &'static str,
    user: Option<String>,
    password: Option<String>,
    host: Host,
    port: Option<u16>,
    database: Option<String>,
    ssl: Ssl,
    /// `password=` in the query: libpq's form, which wins over the userinfo's. sqlx's MySQL
    /// driver ignores it, but it must be masked all the same.
    query_password: Option<String>,
}

impl ServerUrl {
    fn text(&self) -> String {
        let mut text = format!("{}://", self.scheme);
        match (&self.user, &self.password) {
            (None, None) => {}
            (user, None) => text += &format!("{}@", encode(user.as_deref().unwrap_or(""))),
            (user, Some(pw)) => {
                text += &format!("{}:{}@", encode(user.as_deref().unwrap_or("")), encode(pw))
            }
        }
        text += &self.host.in_url();
        if let Some(port) = self.port {
            text += &format!(":{port}");
        }
        text += "/";
        text += &encode(self.database.as_deref().unwrap_or(""));
        let mut query = Vec::new();
        if let Host::Socket(dir) = &self.host {
            query.push(format!("host={}", encode(dir)));
        }
        if let Some((key, value, _)) = self.ssl {
            query.push(format!("{key}={value}"));
        }
        if let Some(pw) = &self.query_password {
            query.push(format!("password={}", encode(pw)));
        }
        if !query.is_empty() {
            text += &format!("?{}", query.join("&"));
        }
        text
    }

    /// The password sqlx should get.
    fn expected_password(&self) -> Option<&String> {
        if self.postgres {
            self.query_password.as_ref().or(self.password.as_ref())
        } else {
            self.password.as_ref()
        }
    }
}

/// A database name: any printable text but the path segments `.` and `..`, which a URL
/// resolves away (`postgres://h/..` names no database, for the url crate as for a browser).
fn database_name() -> impl Strategy<Value = String> {
    unmarked(1, 10).prop_filter("not a dot segment", |d| d != "." && d != "..")
}

/// Every server URL form: any user, password, database and ssl setting, encoded as needed.
fn server_url() -> impl Strategy<Value = ServerUrl> {
    let postgres = (
        prop::sample::select(vec![
            "postgres",
            "postgresql",
            "postgresql+asyncpg",
            "postgresql+psycopg2",
            "postgresql+psycopg",
            "PostgreSQL",
        ]),
        prop_oneof![
            3 => host_name().prop_map(Host::Name),
            1 => any::<[u8; 4]>().prop_map(|b| Host::V4(b.into())),
            1 => any::<[u16; 8]>().prop_map(|s| Host::V6(s.into())),
            1 => "/[a-z]{1,8}(/[a-z]{1,8}){0,2}".prop_map(Host::Socket),
        ],
        prop::option::of(prop::sample::select(vec![
            ("sslmode", "disable", "Disable"),
            ("sslmode", "allow", "Allow"),
            ("sslmode", "prefer", "Prefer"),
            ("sslmode", "require", "Require"),
            ("sslmode", "verify-ca", "VerifyCa"),
            ("sslmode", "verify-full", "VerifyFull"),
            ("ssl", "true", "Require"),
            ("ssl", "false", "Disable"),
            ("ssl", "require", "Require"),
            ("ssl", "disable", "Disable"),
        ])),
    )
        .prop_map(|(scheme, host, ssl)| (true, scheme, host, ssl));
    let mysql = (
        prop::sample::select(vec![
            "mysql",
            "mariadb",
            "mysql+pymysql",
            "mysql+aiomysql",
            "mariadb+mariadbconnector",
            "MySQL",
        ]),
        prop_oneof![
            3 => host_name().prop_map(Host::Name),
            1 => any::<[u8; 4]>().prop_map(|b| Host::V4(b.into())),
            1 => any::<[u16; 8]>().prop_map(|s| Host::V6(s.into())),
        ],
        prop::option::of(prop::sample::select(vec![
            ("ssl-mode", "DISABLED", "Disabled"),
            ("ssl-mode", "PREFERRED", "Preferred"),
            ("sslmode", "required", "Required"),
            ("ssl-mode", "VERIFY_CA", "VerifyCa"),
            ("ssl-mode", "VERIFY_IDENTITY", "VerifyIdentity"),
        ])),
    )
        .prop_map(|(scheme, host, ssl)| (false, scheme, host, ssl));
    (
        prop_oneof![postgres, mysql],
        prop::option::of(unmarked(1, 10)),
        prop::option::of(password()),
        prop::option::of(any::<u16>()),
        prop::option::weighted(0.9, database_name()),
        prop::option::weighted(0.3, password()),
    )
        .prop_map(
            |((postgres, scheme, host, ssl), user, password, port, database, query_password)| {
                ServerUrl {
                    postgres,
                    scheme,
                    user,
                    password,
                    host,
                    port,
                    database,
                    ssl,
                    query_password,
                }
            },
        )
}

/// What a user gets wrong in a URL: each must fail (or parse) without showing the password.
#[derive(Debug, Clone, Copy)]
enum Slip {
    None,
    PortNotANumber,
    SpaceInHost,
    NoSlashes,
    UnknownScheme,
    UnknownSslMode,
    PortParameterNotANumber,
    Truncated(usize),
    /// The password written as it is, but for what would end the authority part (`/?#`):
    /// with those, what follows is the path, for libpq as for the url crate.
    PasswordNotEncoded,
}

fn slip() -> impl Strategy<Value = Slip> {
    prop_oneof![
        3 => Just(Slip::None),
        1 => Just(Slip::PortNotANumber),
        1 => Just(Slip::SpaceInHost),
        1 => Just(Slip::NoSlashes),
        1 => Just(Slip::UnknownScheme),
        1 => Just(Slip::UnknownSslMode),
        1 => Just(Slip::PortParameterNotANumber),
        1 => any::<usize>().prop_map(Slip::Truncated),
        2 => Just(Slip::PasswordNotEncoded),
    ]
}

impl Slip {
    fn apply(self, url: &ServerUrl) -> String {
        let text = url.text();
        let (scheme, rest) = text.split_once("://").expect("UNWRAP: generated with ://");
        match self {
            Slip::None => text,
            Slip::PortNotANumber => {
                let at = rest.find('/').expect("UNWRAP: generated with a path");
                format!("{scheme}://{}:notaport{}", &rest[..at], &rest[at..])
            }
            Slip::SpaceInHost => text.replacen(&url.host.in_url(), "db host", 1),
            Slip::NoSlashes => format!("{scheme}:{rest}"),
            Slip::UnknownScheme => format!("redis://{rest}"),
            Slip::UnknownSslMode => format!("{text}{}sslmode=bogus", sep(&text)),
            Slip::PortParameterNotANumber => format!("{text}{}port=x", sep(&text)),
            Slip::PasswordNotEncoded => match &url.password {
                Some(pw) => text.replacen(&encode(pw), &pw.replace(['/', '?', '#'], ""), 1),
                None => text,
            },
            Slip::Truncated(at) => {
                let cut = text.char_indices().map(|(i, _)| i).collect::<Vec<_>>();
                text[..cut[at % cut.len()]].to_string()
            }
        }
    }
}

fn sep(text: &str) -> &'static str {
    if text.contains('?') { "&" } else { "?" }
}

/// What sqlx will connect with, as far as its options show it.
#[derive(Debug, PartialEq)]
struct Seen {
    host: String,
    socket: Option<PathBuf>,
    port: u16,
    user: String,
    database: Option<String>,
    password: Option<String>,
    ssl: String,
}

fn seen(options: &ConnectOptions) -> Seen {
    match options {
        ConnectOptions::Postgres(o) => Seen {
            host: o.get_host().to_string(),
            socket: o.get_socket().cloned(),
            port: o.get_port(),
            user: o.get_username().to_string(),
            database: o.get_database().map(str::to_string),
            password: password_in(o.clone().username("u").host("h").to_url_lossy()),
            ssl: format!("{:?}", o.get_ssl_mode()),
        },
        ConnectOptions::MySql(o) => Seen {
            host: o.get_host().to_string(),
            socket: o.get_socket().cloned(),
            port: o.get_port(),
            user: o.get_username().to_string(),
            database: o.get_database().map(str::to_string),
            password: password_in(o.clone().username("u").host("h").to_url_lossy()),
            ssl: format!("{:?}", o.get_ssl_mode()),
        },
        ConnectOptions::Sqlite(_) => panic!("a server URL gave SQLite options"),
    }
}

/// sqlx keeps the password private, but its own URL of the options carries it. That URL does
/// not encode the user name or host (it panics on some), hence the plain ones `seen` sets.
fn password_in(url: url::Url) -> Option<String> {
    url.password().map(decode)
}

fn connect_options(url: &DatabaseUrl) -> ConnectOptions {
    url.connect_options()
        .unwrap_or_else(|e| panic!("sqlx refuses {url}: {e}"))
}

/// Parses `text` and shows the result every way it can be shown.
fn every_showing(text: &str) -> Vec<(&'static str, String)> {
    match DatabaseUrl::parse(text, "DATABASE_URL") {
        Err(e) => vec![("the parse error", e)],
        Ok(url) => {
            let mut shown = vec![
                ("Display", url.to_string()),
                ("Debug", format!("{url:?}")),
                ("the user", url.user()),
                ("the database name", url.database_name()),
            ];
            if let Err(e) = url.connect_options() {
                shown.push(("sqlx's error", e.to_string()));
            }
            shown
        }
    }
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn a_database_url_never_panics(
        text in anything(
            (
                prop::sample::select(vec![
                    "postgres://", "postgresql+asyncpg://", "mysql://", "mariadb:", "sqlite:",
                    "sqlite:///", "SQLITE3://", "postgres", "+",
                ]),
                tricky(30),
            )
                .prop_map(|(scheme, rest)| format!("{scheme}{rest}")),
        )
    ) {
        every_showing(&text);
    }

    #[test]
    fn a_database_url_never_shows_its_password(url in server_url(), slip in slip()) {
        let text = slip.apply(&url);
        for (what, shown) in every_showing(&text) {
            assert_unmarked(what, &shown)?;
        }
    }

    #[test]
    fn a_database_url_gives_sqlx_what_it_says(url in server_url()) {
        let parsed = DatabaseUrl::parse(&url.text(), "DATABASE_URL")
            .unwrap_or_else(|e| panic!("{}: {e}", url.text()));
        let seen = seen(&connect_options(&parsed));
        match &url.host {
            Host::Name(name) => prop_assert_eq!(&seen.host, name),
            Host::V4(ip) => prop_assert_eq!(&seen.host, &ip.to_string()),
            // sqlx resolves the bare address; the brackets are the URL's.
            Host::V6(ip) => prop_assert_eq!(&seen.host, &ip.to_string()),
            Host::Socket(dir) => prop_assert_eq!(seen.socket, Some(PathBuf::from(dir))),
        }
        if let Some(port) = url.port {
            prop_assert_eq!(seen.port, port);
        }
        if let Some(user) = &url.user {
            prop_assert_eq!(&seen.user, user);
        }
        if let Some(database) = &url.database {
            prop_assert_eq!(seen.database.as_ref(), Some(database));
        }
        prop_assert_eq!(seen.password.as_ref(), url.expected_password());
        if let Some((_, _, mode)) = url.ssl {
            prop_assert_eq!(seen.ssl, mode);
        }
    }

    /// parse -> sqlx's options -> sqlx's URL of them -> parse -> the same options. sqlx writes
    /// the user name and database of that URL unencoded: generated here from what survives it.
    #[test]
    fn a_database_url_survives_sqlx_s_own_url_of_it(
        url in server_url(),
        user in "[A-Za-z0-9_-]{1,10}",
        database in "[A-Za-z0-9_-]{1,10}",
    ) {
        // sqlx writes an IPv6 address into its URL without brackets, and then panics on it.
        let host = match url.host {
            Host::V6(_) => Host::Name("db".into()),
            host => host,
        };
        let url = ServerUrl {
            user: Some(user),
            database: Some(database),
            host,
            ..url
        };
        let first = connect_options(&DatabaseUrl::parse(&url.text(), "DATABASE_URL").unwrap());
        let written = match &first {
            ConnectOptions::Postgres(o) => o.to_url_lossy(),
            ConnectOptions::MySql(o) => o.to_url_lossy(),
            ConnectOptions::Sqlite(o) => o.to_url_lossy(),
        };
        let again = DatabaseUrl::parse(written.as_str(), "DATABASE_URL")
            .unwrap_or_else(|e| panic!("{}: {e}", database::masked(&written)));
        prop_assert_eq!(seen(&connect_options(&again)), seen(&first));
    }
}

// ---------------------------------------------------------------------------------------------
// The POSTGRES_* variables

fn env_of(pairs: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    }
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn the_database_variables_never_panic_nor_show_the_password(
        flag in prop::option::weighted(0.1, server_url().prop_map(|u| u.text())),
        database_url in prop::option::weighted(0.2, prop_oneof![
            server_url().prop_map(|u| u.text()),
            tricky(30),
        ]),
        host in prop::option::weighted(0.9, prop_oneof![host_name(), unmarked(0, 12)]),
        port in prop::option::of(prop_oneof![any::<u16>().prop_map(|p| p.to_string()), unmarked(0, 6)]),
        user in prop::option::of(unmarked(0, 12)),
        password in prop::option::of(password()),
        db in prop::option::of(unmarked(0, 12)),
    ) {
        let mut env = Vec::new();
        let named = [
            ("DATABASE_URL", database_url),
            ("POSTGRES_HOST", host),
            ("POSTGRES_PORT", port),
            ("POSTGRES_USER", user),
            ("POSTGRES_PASSWORD", password),
            ("POSTGRES_DB", db),
        ];
        for (name, value) in named {
            if let Some(value) = value {
                env.push((name, value));
            }
        }
        match database::resolve(flag.as_deref(), &env_of(env)) {
            Err(e) => assert_unmarked("the error", &e)?,
            Ok(None) => {}
            Ok(Some(url)) => {
                assert_unmarked("Display", &url.to_string())?;
                assert_unmarked("Debug", &format!("{url:?}"))?;
                if let Err(e) = url.connect_options() {
                    assert_unmarked("sqlx's error", &e.to_string())?;
                }
            }
        }
    }

    #[test]
    fn the_postgres_variables_reach_sqlx_as_written(
        host in host_name(),
        port in any::<u16>(),
        user in unmarked(1, 12),
        password in password(),
        db in database_name(),
    ) {
        let env = env_of(vec![
            ("POSTGRES_HOST", host.clone()),
            ("POSTGRES_PORT", port.to_string()),
            ("POSTGRES_USER", user.clone()),
            ("POSTGRES_PASSWORD", password.clone()),
            ("POSTGRES_DB", db.clone()),
        ]);
        let url = database::resolve(None, &env).unwrap().expect("configured");
        let seen = seen(&connect_options(&url));
        prop_assert_eq!(seen.host, host);
        prop_assert_eq!(seen.port, port);
        prop_assert_eq!(seen.user, user);
        prop_assert_eq!(seen.database, Some(db));
        prop_assert_eq!(seen.password, Some(password));
    }
}

/// Found by `the_postgres_variables_reach_sqlx_as_written`: url's `set_username` and
/// `set_password` leave `%` as it is, so sqlx decoded `%41` to `A`: a wrong password.
#[rstest]
#[case("%41", "p%41ss")]
#[case("50%", "100%")]
#[case("a%2Fb", "%%")]
fn a_percent_sign_in_the_postgres_variables_stays_one(#[case] user: &str, #[case] pw: &str) {
    let env = env_of(vec![
        ("POSTGRES_HOST", "db".into()),
        ("POSTGRES_USER", user.into()),
        ("POSTGRES_PASSWORD", pw.into()),
    ]);
    let url = database::resolve(None, &env).unwrap().unwrap();
    let seen = seen(&connect_options(&url));
    assert_eq!(seen.user, user);
    assert_eq!(seen.password.as_deref(), Some(pw));
}

/// Found by `a_database_url_gives_sqlx_what_it_says`: libpq takes an empty host before a port
/// (the socket in `host=`), which the url crate refuses as "empty host".
#[rstest]
#[case("postgres://:0/?host=%2Fa", None, 0, "/a")]
#[case(
    "postgresql://app:pw@:5433/app?host=/run/postgresql",
    Some("app"),
    5433,
    "/run/postgresql"
)]
fn an_empty_host_before_a_port_means_the_socket_in_the_query(
    #[case] text: &str,
    #[case] database: Option<&str>,
    #[case] port: u16,
    #[case] socket: &str,
) {
    let url = DatabaseUrl::parse(text, "DATABASE_URL").unwrap();
    assert!(!url.to_string().contains(":pw@"), "{url}");
    let seen = seen(&connect_options(&url));
    assert_eq!(seen.database.as_deref(), database);
    assert_eq!(seen.port, port);
    assert_eq!(seen.socket, Some(PathBuf::from(socket)));
}
