//! Property tests for every parser of outside input (issue 10, "Parsers under attack"): database
//! URLs and the `POSTGRES_*` variables, durations, signal names, `--rewrite-signal`, exit codes,
//! migration file names and `--wait-for`. Each takes any text without panicking, never repeats a
//! password, and reads back what was written. The inputs these tests found are kept at the end
//! as example cases. The example tables stay beside each parser. (The handoff argv is JSON now,
//! read by serde_json; its tests are in handoff.rs.)
//!
//! The seed is fixed, so a run is reproducible and CI cannot fail by chance; explore other
//! inputs with `PROPTEST_RNG_SEED=<n>` (and more of them with `PROPTEST_CASES=<n>`).

// The URL properties need all three drivers, as the default build has them.
#![cfg(all(feature = "postgres", feature = "mysql", feature = "sqlite"))]

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser as _;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use rstest::rstest;
use sqlx::ConnectOptions as _;

use crate::cli::Args;
use crate::config::{self, ConfigError};
use crate::database::{self, ConnectOptions, DatabaseUrl};
use crate::migrate;
use crate::signals::{self, Role};
use crate::wait::Target;

/// In every generated password. A leak of the password, or of the part of it that holds the
/// marker, shows it in any encoding (it is alphanumeric); other generated text never holds it.
const MARK: &str = "SeCrEt";

/// 256 cases, no regression files (found inputs go in the tables below), a fixed seed unless
/// `PROPTEST_RNG_SEED` says otherwise.
fn config() -> Config {
    let mut config = Config {
        failure_persistence: None,
        ..Config::default()
    };
    if config.rng_seed == RngSeed::Random {
        config.rng_seed = RngSeed::Fixed(0x726f_6164_6965);
    }
    config
}

// ---------------------------------------------------------------------------------------------
// Text as users paste it

/// Any printable text, with the characters URLs and parsers care about often.
fn tricky(max: usize) -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => "[ -~]",
        1 => "\\PC",
        2 => prop::sample::select(vec![
            "%", "%41", "%2F", "%zz", "@", ":", "/", "?", "#", "&", "=", "+", " ", "[", "]",
            "\\", ".", "..", ",", "é", "😀",
        ])
        .prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..max).prop_map(|pieces| pieces.concat())
}

/// `tricky` text that holds no marker, so a marker found in output came from a password.
fn unmarked(min: usize, max: usize) -> impl Strategy<Value = String> {
    tricky(max).prop_filter("marker-free and long enough", move |t| {
        !t.contains(MARK) && t.chars().count() >= min
    })
}

/// A password: arbitrary printable characters around the marker.
fn password() -> impl Strategy<Value = String> {
    (tricky(8), tricky(8)).prop_map(|(a, b)| format!("{a}{MARK}{b}"))
}

/// Any text at all, control characters included, or text shaped like what `shaped` parses.
fn anything(shaped: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), tricky(24), shaped]
}

/// Percent-encodes all but the unreserved characters, as a careful user writes a URL.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Undoes `%XX`; anything else stays as it is.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn assert_unmarked(what: &str, shown: &str) -> Result<(), TestCaseError> {
    prop_assert!(!shown.contains(MARK), "{what} shows the password: {shown}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Database URLs

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

fn host_name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,10}(\\.[a-z][a-z0-9-]{0,8}){0,2}"
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
    #![proptest_config(config())]

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
    #![proptest_config(config())]

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

// ---------------------------------------------------------------------------------------------
// Durations, signals, exit codes

/// A unit humantime reads and what one of it is, in seconds.
fn unit() -> impl Strategy<Value = (&'static str, u64)> {
    prop::sample::select(vec![
        ("s", 1),
        ("sec", 1),
        ("m", 60),
        ("min", 60),
        ("h", 3600),
        ("hours", 3600),
        ("d", 86400),
    ])
}

/// Whitespace as it surrounds a value in a compose file.
fn padding() -> impl Strategy<Value = String> {
    "[ \t]{0,2}"
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_duration_never_panics(
        text in anything("([0-9]{1,25} ?(ns|us|ms|s|m|h|d|w|M|y|months|years|) ?){1,4}"),
    ) {
        if let Err(ConfigError::Invalid(message)) = config::duration("--stop-grace", &text) {
            prop_assert!(message.starts_with("--stop-grace"), "{}", message);
        }
    }

    #[test]
    fn a_duration_reads_back_what_was_written(
        terms in prop::collection::vec((0..100_000u64, unit()), 1..4),
        millis in prop::option::of(0..1000u64),
        (before, after) in (padding(), padding()),
    ) {
        let mut written: Vec<String> =
            terms.iter().map(|(n, (unit, _))| format!("{n}{unit}")).collect();
        let mut expected: Duration = terms.iter().map(|(n, (_, secs))| Duration::from_secs(n * secs)).sum();
        if let Some(ms) = millis {
            written.push(format!("{ms}ms"));
            expected += Duration::from_millis(ms);
        }
        let text = format!("{before}{}{after}", written.join(" "));
        prop_assert_eq!(config::duration("--wait-timeout", &text), Ok(expected));
    }

    #[test]
    fn a_duration_reads_back_as_humantime_writes_it(
        secs in 0..10_000_000_000u64,
        nanos in 0..1_000_000_000u32,
    ) {
        let duration = Duration::new(secs, nanos);
        let text = humantime::format_duration(duration).to_string();
        prop_assert_eq!(config::duration("--lock-timeout", &text), Ok(duration));
    }

    #[test]
    fn a_signal_name_never_panics(
        text in anything(prop_oneof![
            "(SIG)?(RTMIN|RTMAX|TERM|[0-9]{0,3})([+-]{1,2}[0-9]{1,12})?",
            (
                prop::sample::select(vec!["RTMIN+", "RTMAX-", "SIGRTMIN+", "rtmax-"]),
                prop_oneof![any::<i32>(), i32::MAX - 99..=i32::MAX, i32::MIN..=i32::MIN + 99],
            )
                .prop_map(|(base, offset)| format!("{base}{offset}")),
        ]),
    ) {
        if let Ok(signal) = signals::parse(&text) {
            prop_assert!((1..=libc::SIGRTMAX()).contains(&signal), "{} -> {}", text, signal);
        }
    }

    #[test]
    fn every_signal_reads_back_from_its_name_however_it_is_cased(
        signal in 1..=libc::SIGRTMAX(),
        sig in prop::sample::select(vec!["", "SIG", "sig", "Sig"]),
        lower in prop::collection::vec(any::<bool>(), 16),
        by_number in any::<bool>(),
        (before, after) in (padding(), padding()),
    ) {
        let name: String = if by_number {
            signal.to_string()
        } else {
            signals::name(signal)
                .chars()
                .zip(lower.iter().cycle())
                .map(|(c, &lower)| if lower { c.to_ascii_lowercase() } else { c })
                .collect()
        };
        let text = format!("{before}{sig}{name}{after}");
        prop_assert_eq!(signals::parse(&text), Ok(signal), "{:?}", text);
    }

    #[test]
    fn a_rewrite_never_panics(
        text in anything(
            (signal_text(), prop::sample::select(vec![":", "::", ""]), signal_text())
                .prop_map(|(a, colon, b)| format!("{a}{colon}{b}")),
        ),
    ) {
        if let Err(message) = signals::parse_rewrite(&text) {
            prop_assert!(message.starts_with("--rewrite-signal"), "{}", message);
        }
    }

    #[test]
    fn every_forwarded_signal_can_be_rewritten_to_any_signal_or_dropped(
        from in 1..=libc::SIGRTMAX(),
        to in 0..=libc::SIGRTMAX(),
        by_number in any::<(bool, bool)>(),
    ) {
        let write = |signal: libc::c_int, by_number: bool| {
            if by_number || signal == 0 { signal.to_string() } else { signals::name(signal) }
        };
        let text = format!("{}:{}", write(from, by_number.0), write(to, by_number.1));
        let parsed = signals::parse_rewrite(&text);
        if signals::role(from) == Role::Forward {
            prop_assert_eq!(parsed, Ok((from, to)), "{}", text);
        } else {
            let message = parsed.unwrap_err();
            prop_assert!(message.contains("never forwarded"), "{}", message);
        }
    }

    #[test]
    fn an_exit_code_never_panics(text in anything("[+-]?[0-9]{1,25}")) {
        if let Err(e) = config::success_code(&text) {
            let ConfigError::Invalid(message) = e else { panic!("{e:?}") };
            prop_assert!(message.starts_with("--success-exit-code"), "{}", message);
        }
    }

    #[test]
    fn every_exit_code_reads_back(
        code in any::<u8>(),
        zeros in "0{0,3}",
        plus in prop::sample::select(vec!["", "+"]),
        (before, after) in (padding(), padding()),
    ) {
        let text = format!("{before}{plus}{zeros}{code}{after}");
        prop_assert_eq!(config::success_code(&text), Ok(code));
    }

    #[test]
    fn an_exit_code_beyond_255_is_refused(code in 256..=u64::MAX) {
        prop_assert!(config::success_code(&code.to_string()).is_err());
        let negative = format!("-{}", code - 255);
        prop_assert!(config::success_code(&negative).is_err());
    }

    #[test]
    fn a_list_of_exit_codes_reads_back(
        codes in prop::collection::vec(any::<u8>(), 1..6),
        separator in prop::sample::select(vec![",", ", "]),
    ) {
        let list = codes.iter().map(u8::to_string).collect::<Vec<_>>().join(separator);
        let args = Args::try_parse_from(["roadie", "--success-exit-code", &list, "true"])
            .unwrap_or_else(|e| panic!("{list}: {e}"));
        let read: Vec<u8> = args
            .options
            .supervise
            .success_exit_code
            .iter()
            .map(|c| config::success_code(c).unwrap())
            .collect();
        prop_assert_eq!(read, codes);
    }
}

/// A signal as users might write it, right or wrong.
fn signal_text() -> impl Strategy<Value = String> {
    prop_oneof![
        (1..=libc::SIGRTMAX()).prop_map(signals::name),
        (-5..=100i32).prop_map(|n| n.to_string()),
        "(SIG)?(RTMIN|RTMAX)[+-]-?[0-9]{1,12}",
        tricky(6),
    ]
}

// ---------------------------------------------------------------------------------------------
// Migration file names

/// A file name in or near sqlx's `<VERSION>_<DESCRIPTION>.sql` form.
fn migration_name() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            any::<i64>().prop_map(|v| v.to_string()),
            "[0-9]{1,25}",
            "[+-]?[0-9]{1,4}",
            tricky(4),
        ],
        prop::sample::select(vec!["_", "__", "", "-", " _"]),
        tricky(10),
        prop::sample::select(vec![
            ".sql",
            ".up.sql",
            ".down.sql",
            "",
            ".SQL",
            ".sql.bak",
            ".sql ",
            "_.sql",
        ]),
    )
        .prop_map(|(version, sep, description, suffix)| {
            format!("{version}{sep}{description}{suffix}").replace('/', "")
        })
        .prop_filter("a file name", |n| {
            !n.is_empty() && n != "." && n != ".." && n.len() <= 255
        })
}

proptest! {
    #![proptest_config(config())]

    /// sqlx is the judge: a name roadie counts as a migration is one sqlx's own resolver reads
    /// as one, and a name roadie passes over, sqlx never runs.
    #[test]
    fn a_migration_file_name_is_read_as_sqlx_reads_it(name in migration_name()) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(&name), "SELECT 1;").expect("write");
        let ours = migrate::is_sqlx_migration_name(&name);
        prop_assert_eq!(migrate::has_sqlx_migrations(dir.path()), ours);
        let sqlx = sqlx::migrate::resolve_blocking(dir.path());
        if ours {
            prop_assert_eq!(sqlx.map(|m| m.len()).map_err(|e| e.to_string()), Ok(1));
        } else {
            prop_assert_eq!(sqlx.map(|m| m.len()).unwrap_or(0), 0);
        }
    }

    #[test]
    fn every_versioned_sql_file_is_a_migration(
        version in any::<i64>(),
        description in tricky(12),
        suffix in prop::sample::select(vec![".sql", ".up.sql", ".down.sql"]),
    ) {
        let name = format!("{version}_{description}{suffix}");
        prop_assert!(migrate::is_sqlx_migration_name(&name), "{}", name);
    }
}

// ---------------------------------------------------------------------------------------------
// --wait-for targets

/// A `--wait-for` value of any kind, with a password, and with or without a slip.
fn wait_target() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["tcp", "http", "https", "TCP", "postgres", "mysql"]),
        unmarked(0, 8),
        password(),
        host_name(),
        prop::option::of(any::<u16>()),
        unmarked(0, 10),
        prop::sample::select(vec!["", "//", "no-port", "bad-port", "space", "query"]),
    )
        .prop_map(|(scheme, user, pw, host, port, path, slip)| {
            let port = match (slip, port) {
                ("no-port", _) | (_, None) => String::new(),
                ("bad-port", _) => ":notaport".into(),
                (_, Some(p)) => format!(":{p}"),
            };
            let host = if slip == "space" {
                format!("{host} x")
            } else {
                host
            };
            let slashes = if slip == "//" { "" } else { "//" };
            let query = if slip == "query" {
                format!("?password={}", encode(&pw))
            } else {
                String::new()
            };
            format!(
                "{scheme}:{slashes}{}:{}@{host}{port}/{}{query}",
                encode(&user),
                encode(&pw),
                encode(&path)
            )
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_wait_target_never_panics(text in anything(wait_target())) {
        let _ = Target::parse(&text).map(|t| (t.name().to_string(), format!("{t:?}")));
    }

    #[test]
    fn a_wait_target_never_shows_its_password(text in wait_target()) {
        match Target::parse(&text) {
            Ok(target) => {
                assert_unmarked("its name", target.name())?;
                assert_unmarked("Debug", &format!("{target:?}"))?;
            }
            Err(e) => assert_unmarked("the error", &e)?,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// What these properties found, kept as examples

/// Found by `a_signal_name_never_panics`: the offset overflowed `c_int` (a panic in debug
/// builds, a wrapped number in release).
#[rstest]
#[case("RTMIN+2147483614")]
#[case("RTMIN+2147483647")]
#[case("RTMAX--2147483648")]
#[case("SIGRTMAX--2147483647")]
fn a_real_time_offset_past_the_integers_is_refused(#[case] text: &str) {
    assert!(signals::parse(text).is_err(), "{text} parsed");
    assert!(signals::parse_rewrite(&format!("{text}:TERM")).is_err());
}

/// Found by `a_wait_target_never_shows_its_password`: errors repeated the text, and Debug
/// showed an http URL whole.
#[rstest]
#[case(
    "tcp://:SeCrEt@a/",
    "--wait-for tcp://:***@a/: expected tcp://host:port"
)]
#[case("TCP::SeCrEt@a/", "--wait-for: expected tcp://host:port")]
#[case(
    "tcp://u:SeCrEt@a:x/",
    "--wait-for: malformed URL: invalid port number"
)]
#[case(
    "http://u:SeCrEt@a b/",
    "--wait-for: malformed URL: invalid international domain name"
)]
fn a_wait_target_refused_names_no_password(#[case] text: &str, #[case] error: &str) {
    assert_eq!(Target::parse(text).unwrap_err(), error);
}

#[test]
fn a_wait_target_shows_no_password_in_debug() {
    let target = Target::parse("http://:SeCrEt@a/").unwrap();
    assert_eq!(format!("{target:?}"), r#"Http { name: "http://:***@a/" }"#);
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
