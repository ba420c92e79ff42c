//! The database roadie waits for and migrates: where its URL comes from (flag, env, `*_FILE`
//! secrets, the `POSTGRES_*` variables), the forms applications write it in, and a `Display`
//! that never shows the password. Nothing here connects; `readiness.rs` does.

mod connection;
pub mod history;
mod hosts;
pub mod lock;
#[cfg(feature = "mysql")]
mod mysql;
pub mod pooler;
#[cfg(feature = "postgres")]
mod postgres;
pub mod readiness;
pub mod silence;
mod source;
#[cfg(feature = "sqlite")]
mod sqlite;
pub mod sqlstate;
mod sqlx_shared;
pub mod standby;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use sqlx::ConnectOptions as _;
#[cfg(feature = "mysql")]
use sqlx::mysql::MySqlConnectOptions;
#[cfg(feature = "postgres")]
use sqlx::postgres::PgConnectOptions;
#[cfg(feature = "sqlite")]
use sqlx::sqlite::SqliteConnectOptions;
use url::Url;

pub(crate) use connection::on_each_driver;
pub use connection::{Blocked, Connection};
pub use source::{check_sqlite_directory, resolve, resolve_migrate};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Postgres,
    MySql,
    Sqlite,
}

/// What each driver can do, asked of the driver instead of matched on outside `database/`.
impl Driver {
    /// A server with sessions (PostgreSQL, MySQL), not a file (SQLite): sessions to watch,
    /// to cancel, to keep alive.
    pub fn has_server(self) -> bool {
        self != Driver::Sqlite
    }

    /// PostgreSQL's `lock_timeout` (`--ddl-lock-timeout`), its startup options and `PGOPTIONS`.
    pub fn has_lock_timeout(self) -> bool {
        self == Driver::Postgres
    }

    /// Whether a transaction pooler (PgBouncer) may sit in front of it, which native
    /// migrations cannot go through.
    pub fn has_transaction_poolers(self) -> bool {
        self == Driver::Postgres
    }

    /// MySQL and MariaDB commit DDL as they go: a failed migration may leave part of itself.
    pub fn commits_ddl_as_it_goes(self) -> bool {
        self == Driver::MySql
    }

    /// The cargo feature that builds this driver in, when this build lacks it: a smaller
    /// Postgres-only roadie refuses a mysql:// URL by name instead of failing to connect.
    fn missing_feature(self) -> Option<&'static str> {
        let (feature, built) = match self {
            Driver::Postgres => ("postgres", cfg!(feature = "postgres")),
            Driver::MySql => ("mysql", cfg!(feature = "mysql")),
            Driver::Sqlite => ("sqlite", cfg!(feature = "sqlite")),
        };
        (!built).then_some(feature)
    }
}

/// A database URL as sqlx takes it. The password is inside: show it only through `Display`,
/// which masks it.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    location: Location,
    /// As given (password and all), for a child that must reach the same database.
    given: String,
    /// Where the URL came from, for messages: `--database-url`, `DATABASE_URL_FILE`, ...
    pub source: String,
}

/// Where the database is: a server with its driver, or a SQLite file. Nothing else can be said.
#[derive(Clone, PartialEq, Eq)]
enum Location {
    /// Postgres or MySQL: the URL with the scheme sqlx knows and SQLAlchemy's `+driver` gone;
    /// with libpq's multi-host form, the first host's, and the same URL for each other host.
    Server {
        kind: Driver,
        url: Url,
        others: Vec<Url>,
        session: hosts::Session,
    },
    /// SQLite: the file (`None` for an in-memory database) and the query (`mode=ro`, ...).
    Sqlite {
        file: Option<PathBuf>,
        query: String,
    },
}

/// Where a server listens, as sqlx would connect to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listening {
    /// A Unix socket file (PostgreSQL's `.s.PGSQL.PORT` in its socket directory).
    Socket(PathBuf),
    Tcp {
        host: String,
        port: u16,
    },
}

impl ConnectOptions {
    /// Where the server listens; `None` for SQLite (a file, no server).
    pub fn listening(&self) -> Option<Listening> {
        match self {
            // sqlx: a socket directory (`host=/run/postgresql` or `socket=`) holds
            // `.s.PGSQL.PORT`.
            #[cfg(feature = "postgres")]
            ConnectOptions::Postgres(o) => {
                let directory = o.get_socket().cloned().or_else(|| {
                    o.get_host()
                        .starts_with('/')
                        .then(|| PathBuf::from(o.get_host()))
                });
                Some(match directory {
                    Some(dir) => Listening::Socket(dir.join(format!(".s.PGSQL.{}", o.get_port()))),
                    None => Listening::Tcp {
                        host: o.get_host().to_string(),
                        port: o.get_port(),
                    },
                })
            }
            #[cfg(feature = "mysql")]
            ConnectOptions::MySql(o) => Some(match o.get_socket() {
                Some(path) => Listening::Socket(path.clone()),
                None => Listening::Tcp {
                    host: o.get_host().to_string(),
                    port: o.get_port(),
                },
            }),
            #[cfg(feature = "sqlite")]
            ConnectOptions::Sqlite(_) => None,
        }
    }
}

/// sqlx's options for the three drivers.
#[derive(Debug, Clone)]
pub enum ConnectOptions {
    #[cfg(feature = "postgres")]
    Postgres(PgConnectOptions),
    #[cfg(feature = "mysql")]
    MySql(MySqlConnectOptions),
    #[cfg(feature = "sqlite")]
    Sqlite(SqliteConnectOptions),
}

impl DatabaseUrl {
    /// Reads a URL in any form applications write it: `postgres://`, `postgresql://`,
    /// SQLAlchemy's `postgresql+asyncpg://` (any `+driver` is dropped), `mysql://`, `mariadb://`,
    /// `mysql+pymysql://`, and `sqlite:` in sqlx's forms (`sqlite:data.db`, `sqlite://data.db`,
    /// `sqlite::memory:`) and SQLAlchemy's (`sqlite:///relative.db`, `sqlite:////abs/path.db`).
    /// Errors never repeat the text: it may hold a password.
    pub fn parse(text: &str, source: &str) -> Result<Self, String> {
        let text = text.trim();
        let Some((scheme, rest)) = text.split_once(':') else {
            return Err(format!(
                "{source} is not a database URL (expected postgres://, mysql:// or sqlite:...)"
            ));
        };
        let base = scheme
            .split('+')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let kind = match base.as_str() {
            "postgres" | "postgresql" => Driver::Postgres,
            "mysql" | "mariadb" => Driver::MySql,
            "sqlite" | "sqlite3" => Driver::Sqlite,
            _ => {
                return Err(format!(
                    "{source}: unsupported scheme {scheme:?} (expected postgres://, mysql:// or sqlite:...)"
                ));
            }
        };
        if let Some(feature) = kind.missing_feature() {
            return Err(format!(
                "{source}: this roadie was built without {base} support (cargo feature `{feature}`)"
            ));
        }
        let source = source.to_string();
        if kind == Driver::Sqlite {
            let (file, query) = sqlite_target(rest);
            return Ok(DatabaseUrl {
                location: Location::Sqlite { file, query },
                given: text.to_string(),
                source,
            });
        }
        let mut urls = server_urls(kind, &base, rest, &source)?;
        let url = urls.remove(0);
        let session = match kind {
            Driver::Postgres => {
                hosts::Session::from_url(&url).map_err(|e| format!("{source}: {e}"))?
            }
            _ => hosts::Session::default(),
        };
        Ok(DatabaseUrl {
            location: Location::Server {
                kind,
                url,
                others: urls,
                session,
            },
            given: text.to_string(),
            source,
        })
    }

    /// The URL as given, password included: only for a child's environment, never a log.
    pub fn as_given(&self) -> &str {
        &self.given
    }

    pub fn driver(&self) -> Driver {
        match &self.location {
            Location::Server { kind, .. } => *kind,
            Location::Sqlite { .. } => Driver::Sqlite,
        }
    }

    /// The SQLite file, when there is one.
    pub fn sqlite_file(&self) -> Option<&Path> {
        match &self.location {
            Location::Sqlite { file, .. } => file.as_deref(),
            Location::Server { .. } => None,
        }
    }

    /// The database name (Postgres, MySQL) or file name, for messages.
    pub fn database_name(&self) -> String {
        match &self.location {
            Location::Server { url, .. } => url.path().trim_start_matches('/').to_string(),
            Location::Sqlite {
                file: Some(path), ..
            } => path.display().to_string(),
            Location::Sqlite { file: None, .. } => ":memory:".into(),
        }
    }

    /// The user name, for messages.
    pub fn user(&self) -> String {
        match &self.location {
            Location::Server { url, .. } => url.username().to_string(),
            Location::Sqlite { .. } => String::new(),
        }
    }

    /// Where the database is, for the one info line that names it: host and database for a
    /// server (no user, no password), the file for SQLite.
    pub fn whereabouts(&self) -> String {
        match &self.location {
            Location::Server { url, others, .. } => {
                let at: Vec<String> = std::iter::once(url).chain(others).map(host_of).collect();
                format!("database {:?} on {}", self.database_name(), at.join(","))
            }
            Location::Sqlite { .. } => format!("SQLite database {}", self.database_name()),
        }
    }

    /// Connects: one attempt at each host in turn (libpq's multi-host URLs), keeping the
    /// first that answers and fits `target_session_attrs`; the last error otherwise.
    pub async fn connect(&self) -> Result<Connection, sqlx::Error> {
        self.connect_with_settings(&[]).await
    }

    /// Connects as `connect` does, with PostgreSQL `settings` given at connection start (the
    /// startup `options`, so a session's own `RESET` cannot undo them; `application_name` as
    /// its own startup parameter). A pooler that refuses the startup `options` (PgBouncer:
    /// "unsupported startup parameter: options") gets them as `SET`s once connected instead.
    /// Other databases ignore them.
    // A build with PostgreSQL alone has no other kind of options.
    #[allow(irrefutable_let_patterns)]
    pub async fn connect_with_settings(
        &self,
        settings: &[(&str, String)],
    ) -> Result<Connection, sqlx::Error> {
        match &self.location {
            Location::Server {
                kind,
                url,
                others,
                session,
            } => {
                let candidates = std::iter::once(url)
                    .chain(others)
                    .map(|u| (u, host_of(u)))
                    .collect();
                hosts::connect(candidates, session, |u| async move {
                    let options = server_options(*kind, u)?;
                    #[cfg(feature = "postgres")]
                    if let ConnectOptions::Postgres(o) = &options {
                        return connect_postgres_with(o, settings).await;
                    }
                    Connection::open(&options).await
                })
                .await
            }
            Location::Sqlite { .. } => Connection::open(&self.connect_options()?).await,
        }
    }

    /// sqlx's options, with statement logging off (roadie's queries are not the app's).
    pub fn connect_options(&self) -> Result<ConnectOptions, sqlx::Error> {
        match &self.location {
            Location::Server { kind, url, .. } => server_options(*kind, url),
            Location::Sqlite { file, query } => sqlite_options(file.as_deref(), query),
        }
    }
}

/// The URL of each host (libpq's multi-host form is PostgreSQL's; a MySQL URL has one), with
/// the scheme sqlx knows and the spellings of asyncpg and PyMySQL translated.
fn server_urls(kind: Driver, base: &str, rest: &str, source: &str) -> Result<Vec<Url>, String> {
    if !rest.starts_with("//") {
        return Err(format!(
            "{source}: expected {base}://[user[:password]@]host[:port]/database"
        ));
    }
    let postgres = kind == Driver::Postgres;
    let scheme = if postgres { "postgres" } else { "mysql" };
    let each = match postgres {
        true => hosts::split(rest),
        false => vec![rest.to_string()],
    };
    let mut urls = Vec::with_capacity(each.len());
    for rest in each {
        let mut url = match Url::parse(&format!("{scheme}:{rest}")) {
            // libpq takes `postgres://user@/db?host=/run/postgresql` and
            // `postgres://:5433/db`; the url crate wants a host there. Any stands in: the
            // `host` parameter (a socket) overrides it.
            Err(url::ParseError::EmptyHost) => {
                Url::parse(&format!("{scheme}:{}", with_placeholder_host(&rest)))
            }
            parsed => parsed,
        }
        .map_err(|e| format!("{source}: malformed URL: {e}"))?;
        match postgres {
            true => translate_asyncpg_ssl(&mut url),
            false => translate_pymysql_socket(&mut url),
        }
        urls.push(url);
    }
    Ok(urls)
}

/// One PostgreSQL connection with `settings` (see `connect_with_settings`).
#[cfg(feature = "postgres")]
async fn connect_postgres_with(
    options: &PgConnectOptions,
    settings: &[(&str, String)],
) -> Result<Connection, sqlx::Error> {
    let mut named = options.clone();
    let mut startup = Vec::new();
    for (name, value) in settings {
        match *name {
            "application_name" => named = named.application_name(value),
            _ => startup.push((*name, value.clone())),
        }
    }
    if startup.is_empty() {
        return Connection::open(&ConnectOptions::Postgres(named)).await;
    }
    let with_options = ConnectOptions::Postgres(named.clone().options(startup.iter().cloned()));
    match Connection::open(&with_options).await {
        Err(e) if sqlstate::refuses_startup_options(&e) => {
            let mut conn = Connection::open(&ConnectOptions::Postgres(named)).await?;
            for (name, value) in &startup {
                conn.set(name, value).await?;
            }
            Ok(conn)
        }
        opened => opened,
    }
}

/// `host:port`, or the socket of a `host=` parameter, for messages.
fn host_of(url: &Url) -> String {
    let host = url.host_str().unwrap_or("localhost");
    let socket = url
        .query_pairs()
        .find(|(k, _)| k == "host" || k == "socket")
        .map(|(_, v)| v.into_owned());
    match (socket, url.port()) {
        (Some(socket), _) => socket,
        (None, Some(port)) => format!("{host}:{port}"),
        (None, None) => host.to_string(),
    }
}

fn server_options(kind: Driver, url: &Url) -> Result<ConnectOptions, sqlx::Error> {
    // libpq's own parameters are roadie's to honour (hosts.rs); sqlx would warn about them.
    let mut url = url.clone();
    if url
        .query_pairs()
        .any(|(k, _)| hosts::LIBPQ_ONLY.contains(&k.as_ref()))
    {
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| !hosts::LIBPQ_ONLY.contains(&k.as_ref()))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.query_pairs_mut().clear().extend_pairs(kept);
        if url.query() == Some("") {
            url.set_query(None);
        }
    }
    let url = &url;
    // sqlx takes the host as url's host_str(), brackets and all, and then fails to resolve
    // "[::1]": hand it the bare address.
    let ipv6 = match url.host() {
        Some(url::Host::Ipv6(address)) => Some(address.to_string()),
        _ => None,
    };
    Ok(match kind {
        #[cfg(feature = "postgres")]
        Driver::Postgres => {
            // No application_name: a startup parameter stays on a pooler's server connection
            // after roadie is gone. No extra_float_digits (roadie reads no floats): PgBouncer
            // refuses a startup parameter it does not track unless told to ignore it. (sqlx
            // names every prepared statement, cache or not, and never closes it: whatever may
            // go through a transaction pooler is sent as a simple query instead.)
            let mut options = PgConnectOptions::from_url(url)?
                .extra_float_digits(None)
                .disable_statement_logging();
            if let Some(host) = ipv6 {
                options = options.host(&host);
            }
            ConnectOptions::Postgres(options)
        }
        #[cfg(feature = "mysql")]
        Driver::MySql => {
            let mut options = MySqlConnectOptions::from_url(url)?.disable_statement_logging();
            if let Some(host) = ipv6 {
                options = options.host(&host);
            }
            ConnectOptions::MySql(options)
        }
        // parse() refuses a URL whose driver is not built in, and gives SQLite no server.
        #[allow(unreachable_patterns)]
        kind => {
            return Err(sqlx::Error::Configuration(
                format!("{kind:?} is not a server this build speaks to").into(),
            ));
        }
    })
}

#[cfg(feature = "sqlite")]
fn sqlite_options(file: Option<&Path>, query: &str) -> Result<ConnectOptions, sqlx::Error> {
    let url = match file {
        None => "sqlite::memory:".to_string(),
        Some(path) if query.is_empty() => format!("sqlite://{}", path.display()),
        Some(path) => format!("sqlite://{}?{query}", path.display()),
    };
    let read_only = query.split('&').any(|p| p == "mode=ro");
    Ok(ConnectOptions::Sqlite(
        SqliteConnectOptions::from_str(&url)?
            .create_if_missing(!read_only)
            .disable_statement_logging(),
    ))
}

#[cfg(not(feature = "sqlite"))]
fn sqlite_options(_: Option<&Path>, _: &str) -> Result<ConnectOptions, sqlx::Error> {
    // parse() refuses a sqlite: URL in a build without it.
    Err(sqlx::Error::Configuration(
        "SQLite support is not built in".into(),
    ))
}

impl fmt::Display for DatabaseUrl {
    /// The URL with its password masked: `postgres://app:***@db:5432/app`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Location::Server { url, others, .. } => {
                let shown = masked(url).to_string();
                let authority = |u: &Url| match u.port() {
                    Some(port) => format!("{}:{port}", u.host_str().unwrap_or_default()),
                    None => u.host_str().unwrap_or_default().to_string(),
                };
                if others.is_empty() {
                    return f.write_str(&shown);
                }
                let first = authority(url);
                let all: Vec<String> = std::iter::once(url).chain(others).map(authority).collect();
                f.write_str(&shown.replacen(
                    &format!("@{first}"),
                    &format!("@{}", all.join(",")),
                    1,
                ))
            }
            Location::Sqlite {
                file: Some(path), ..
            } => write!(f, "sqlite:{}", path.display()),
            Location::Sqlite { file: None, .. } => f.write_str("sqlite::memory:"),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self} from {})", self.source)
    }
}

/// The file and query of a `sqlite:` URL, in sqlx's and SQLAlchemy's forms.
fn sqlite_target(rest: &str) -> (Option<PathBuf>, String) {
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let file = if let Some(abs) = path.strip_prefix("////") {
        Some(format!("/{abs}")) // SQLAlchemy: sqlite:////abs/path.db
    } else if let Some(rel) = path.strip_prefix("///") {
        Some(rel.to_string()) // SQLAlchemy: sqlite:///relative.db
    } else if let Some(rel) = path.strip_prefix("//") {
        Some(rel.to_string()) // sqlx: sqlite://data.db
    } else {
        Some(path.to_string()) // sqlx: sqlite:data.db, sqlite:/abs.db
    };
    let file = file
        .filter(|p| !p.is_empty() && p != ":memory:")
        .map(PathBuf::from);
    (file, query.to_string())
}

/// `//[userinfo@][:port]...` with `localhost` where the host is empty.
fn with_placeholder_host(rest: &str) -> String {
    let authority_end = rest[2..]
        .find(['/', '?', '#'])
        .map_or(rest.len(), |i| i + 2);
    let host_start = rest[..authority_end].rfind('@').map_or(2, |i| i + 1);
    format!("{}localhost{}", &rest[..host_start], &rest[host_start..])
}

/// asyncpg spells sslmode `ssl=require` (or `ssl=true`); sqlx knows only `sslmode`.
fn translate_asyncpg_ssl(url: &mut Url) {
    rewrite_query(url, "ssl", |value| {
        let mode = match value {
            "true" => "require",
            "false" => "disable",
            mode => mode,
        };
        ("sslmode".into(), mode.into())
    });
}

/// PyMySQL spells the socket `unix_socket=`; sqlx knows only `socket=`.
fn translate_pymysql_socket(url: &mut Url) {
    rewrite_query(url, "unix_socket", |value| ("socket".into(), value.into()));
}

/// Replaces every `key=value` of the query with what `rewrite` makes of the value; the other
/// pairs stay as they are, in order. A URL without `key` is left untouched.
fn rewrite_query(url: &mut Url, key: &str, rewrite: impl Fn(&str) -> (String, String)) {
    if !url.query_pairs().any(|(k, _)| k == key) {
        return;
    }
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            if k == key {
                rewrite(&v)
            } else {
                (k.into_owned(), v.into_owned())
            }
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
}

/// `url` fit to show: its password, and a `password=` parameter, replaced by `***`.
pub fn masked(url: &Url) -> Url {
    let mut shown = url.clone();
    if url.password().is_some() {
        let _ = shown.set_password(Some("***"));
    }
    rewrite_query(&mut shown, "password", |_| {
        ("password".into(), "***".into())
    });
    shown
}

// The URL properties need all three drivers, as the default build has them.
#[cfg(all(test, feature = "postgres", feature = "mysql", feature = "sqlite"))]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use std::collections::HashMap;

    #[rstest]
    #[case(
        "postgres://app:pw@db:5432/app",
        Driver::Postgres,
        "postgres://app:***@db:5432/app"
    )]
    #[case(
        "postgresql://app:pw@db/app",
        Driver::Postgres,
        "postgres://app:***@db/app"
    )]
    #[case(
        "postgresql+asyncpg://app:pw@db/app",
        Driver::Postgres,
        "postgres://app:***@db/app"
    )]
    #[case(
        "postgresql+psycopg2://app:pw@db/app",
        Driver::Postgres,
        "postgres://app:***@db/app"
    )]
    #[case(
        "postgresql+psycopg://app:pw@db/app",
        Driver::Postgres,
        "postgres://app:***@db/app"
    )]
    #[case(
        "postgres://app:p%40ss%2Fw%3Ard@db/app",
        Driver::Postgres,
        "postgres://app:***@db/app"
    )]
    #[case(
        "postgres://app:pw@[::1]:5433/app",
        Driver::Postgres,
        "postgres://app:***@[::1]:5433/app"
    )]
    #[case(
        "postgres://app@/app?host=/run/postgresql",
        Driver::Postgres,
        "postgres://app@localhost/app?host=/run/postgresql"
    )]
    #[case(
        "postgresql:///app?host=/run/postgresql",
        Driver::Postgres,
        "postgres:///app?host=/run/postgresql"
    )]
    #[case(
        "postgres://app:pw@db/app?sslmode=require",
        Driver::Postgres,
        "postgres://app:***@db/app?sslmode=require"
    )]
    #[case(
        "postgresql+asyncpg://app:pw@db/app?ssl=require",
        Driver::Postgres,
        "postgres://app:***@db/app?sslmode=require"
    )]
    #[case(
        "postgres://db/app?user=app&password=pw",
        Driver::Postgres,
        "postgres://db/app?user=app&password=***"
    )]
    #[case(
        "mysql://app:pw@db:3306/app",
        Driver::MySql,
        "mysql://app:***@db:3306/app"
    )]
    #[case("mariadb://app:pw@db/app", Driver::MySql, "mysql://app:***@db/app")]
    #[case(
        "mysql+pymysql://app:pw@db/app?charset=utf8mb4",
        Driver::MySql,
        "mysql://app:***@db/app?charset=utf8mb4"
    )]
    #[case(
        "mysql+pymysql://app:pw@localhost/app?unix_socket=/run/mysqld/mysqld.sock",
        Driver::MySql,
        "mysql://app:***@localhost/app?socket=%2Frun%2Fmysqld%2Fmysqld.sock"
    )]
    #[case(
        "postgresql://app:pw@h1:5432,h2:5433/app?target_session_attrs=read-write&connect_timeout=1",
        Driver::Postgres,
        "postgres://app:***@h1:5432,h2:5433/app?target_session_attrs=read-write&connect_timeout=1"
    )]
    #[case("sqlite:data.db", Driver::Sqlite, "sqlite:data.db")]
    #[case("sqlite://data.db", Driver::Sqlite, "sqlite:data.db")]
    #[case("sqlite:///relative.db", Driver::Sqlite, "sqlite:relative.db")]
    #[case("sqlite:////abs/path.db", Driver::Sqlite, "sqlite:/abs/path.db")]
    #[case("sqlite+pysqlite:///relative.db", Driver::Sqlite, "sqlite:relative.db")]
    #[case("sqlite:/abs.db?mode=ro", Driver::Sqlite, "sqlite:/abs.db")]
    #[case("sqlite::memory:", Driver::Sqlite, "sqlite::memory:")]
    #[case("sqlite://", Driver::Sqlite, "sqlite::memory:")]
    fn reads_every_url_form_and_masks_the_password(
        #[case] text: &str,
        #[case] kind: Driver,
        #[case] shown: &str,
    ) {
        let url = DatabaseUrl::parse(text, "DATABASE_URL").expect("parses");
        assert_eq!(url.driver(), kind);
        assert_eq!(url.to_string(), shown);
        assert!(!format!("{url:?}").contains("pw"));
        url.connect_options().expect("sqlx takes it");
    }

    #[test]
    fn sqlx_gets_the_password_decoded() {
        let url = DatabaseUrl::parse("postgres://app:p%40ss%2Fw%3Ard@db/app", "x").unwrap();
        let ConnectOptions::Postgres(options) = url.connect_options().unwrap() else {
            panic!("postgres");
        };
        // The options keep the password private: compare through the URL they give back.
        assert!(options.to_url_lossy().as_str().contains("p%40ss%2Fw%3Ard"));
    }

    #[rstest]
    #[case("")]
    #[case("not a url")]
    #[case("redis://cache:6379")]
    #[case("postgres:app@db")]
    #[case("postgres://app:secret-pw@db:notaport/app")]
    fn a_bad_url_is_refused_without_repeating_it(#[case] text: &str) {
        let err = DatabaseUrl::parse(text, "DATABASE_URL").unwrap_err();
        assert!(err.starts_with("DATABASE_URL"), "{err}");
        assert!(!err.contains("secret-pw"), "{err}");
    }

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[rstest]
    #[case(Some("postgres://f@h/f"), &[("DATABASE_URL", "postgres://e@h/e")], "postgres://f@h/f", "--database-url")]
    #[case(None, &[("ROADIE_DATABASE_URL", "postgres://r@h/r"), ("DATABASE_URL", "postgres://e@h/e")], "postgres://r@h/r", "ROADIE_DATABASE_URL")]
    #[case(None, &[("DATABASE_URL", "postgres://e@h/e")], "postgres://e@h/e", "DATABASE_URL")]
    #[case(None, &[("DATABASE_URL", ""), ("POSTGRES_HOST", "db")], "postgres://postgres@db:5432/postgres", "POSTGRES_* variables")]
    #[case(None, &[("POSTGRES_HOST", "db"), ("POSTGRES_USER", "app"), ("POSTGRES_PASSWORD", "p@ss word"), ("POSTGRES_DB", "shop"), ("POSTGRES_PORT", "6543")], "postgres://app:***@db:6543/shop", "POSTGRES_* variables")]
    fn the_database_comes_from_the_first_source_set(
        #[case] flag: Option<&str>,
        #[case] env: &[(&str, &str)],
        #[case] shown: &str,
        #[case] source: &str,
    ) {
        let url = resolve(flag, &env_of(env)).unwrap().expect("configured");
        assert_eq!(url.to_string(), shown);
        assert_eq!(url.source, source);
    }

    #[test]
    fn every_postgres_variable_may_come_from_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, value: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, format!("{value}\n")).unwrap();
            path.to_string_lossy().into_owned()
        };
        let (host, user, db, port) = (
            file("host", "db"),
            file("user", "app"),
            file("db", "shop"),
            file("port", "6543"),
        );
        let env = env_of(&[
            ("POSTGRES_HOST_FILE", &host),
            ("POSTGRES_USER_FILE", &user),
            ("POSTGRES_DB_FILE", &db),
            ("POSTGRES_PORT_FILE", &port),
        ]);
        let url = resolve(None, &env).unwrap().unwrap();
        assert_eq!(url.to_string(), "postgres://app@db:6543/shop");
        let both = env_of(&[
            ("POSTGRES_HOST", "db"),
            ("POSTGRES_USER", "app"),
            ("POSTGRES_USER_FILE", &user),
        ]);
        let err = resolve(None, &both).unwrap_err();
        assert!(
            err.contains("both POSTGRES_USER and POSTGRES_USER_FILE"),
            "{err}"
        );
    }

    #[rstest]
    #[case(&[("POSTGRES_SERVER", "srv")], "postgres://postgres@srv:5432/postgres")]
    #[case(&[("POSTGRES_SERVER", "srv"), ("POSTGRES_HOST", "host")], "postgres://postgres@host:5432/postgres")]
    fn postgres_server_is_a_synonym_of_postgres_host(
        #[case] env: &[(&str, &str)],
        #[case] shown: &str,
    ) {
        let url = resolve(None, &env_of(env)).unwrap().expect("configured");
        assert_eq!(url.to_string(), shown);
    }

    #[rstest]
    #[case::mariadb(&[("MARIADB_HOST", "db"), ("MARIADB_USER", "app"), ("MARIADB_PASSWORD", "pw"), ("MARIADB_DATABASE", "shop")], Ok("mysql://app:***@db:3306/shop"))]
    #[case::mysql(&[("MYSQL_HOST", "db"), ("MYSQL_USER", "app"), ("MYSQL_PASSWORD", "pw"), ("MYSQL_DATABASE", "shop"), ("MYSQL_PORT", "3307")], Ok("mysql://app:***@db:3307/shop"))]
    #[case::mariadb_wins_per_variable(&[("MYSQL_HOST", "old"), ("MARIADB_HOST", "new"), ("MYSQL_DATABASE", "shop"), ("MARIADB_USER", "app"), ("MYSQL_USER", "x")], Ok("mysql://app@new:3306/shop"))]
    #[case::root_with_its_password(&[("MARIADB_HOST", "db"), ("MARIADB_ROOT_PASSWORD", "rpw"), ("MARIADB_DATABASE", "shop")], Ok("mysql://root:***@db:3306/shop"))]
    #[case::root_password_is_roots_alone(&[("MARIADB_HOST", "db"), ("MARIADB_USER", "app"), ("MARIADB_ROOT_PASSWORD", "rpw"), ("MARIADB_DATABASE", "shop")], Ok("mysql://app@db:3306/shop"))]
    #[case::no_database(&[("MARIADB_HOST", "db"), ("MARIADB_USER", "app")], Err("MARIADB_HOST is set but no database is named: set MARIADB_DATABASE or MYSQL_DATABASE"))]
    #[case::bad_port(&[("MYSQL_HOST", "db"), ("MYSQL_DATABASE", "a"), ("MYSQL_PORT", "x")], Err("MYSQL_PORT \"x\": expected a port number"))]
    #[case::both_kinds(&[("POSTGRES_HOST", "pg"), ("MARIADB_HOST", "my"), ("MARIADB_DATABASE", "a")], Err("both POSTGRES_HOST and MARIADB_HOST are set"))]
    #[case::a_url_wins_over_both(&[("POSTGRES_HOST", "pg"), ("MYSQL_HOST", "my"), ("DATABASE_URL", "mysql://u:pw@x/app")], Ok("mysql://u:***@x/app"))]
    fn the_mariadb_and_mysql_images_variables_make_a_mysql_url(
        #[case] env: &[(&str, &str)],
        #[case] expected: Result<&str, &str>,
    ) {
        match (resolve(None, &env_of(env)), expected) {
            (Ok(Some(url)), Ok(shown)) => assert_eq!(url.to_string(), shown),
            (Err(e), Err(says)) => assert!(e.contains(says), "{e}"),
            (got, expected) => panic!("{got:?} vs {expected:?}"),
        }
    }

    #[test]
    fn every_mariadb_variable_may_come_from_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, value: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, format!("{value}\n")).unwrap();
            path.to_string_lossy().into_owned()
        };
        let (host, user, password, db, port) = (
            file("host", "db"),
            file("user", "app"),
            file("password", "p@ss/w:rd"),
            file("db", "shop"),
            file("port", "3307"),
        );
        let env = env_of(&[
            ("MARIADB_HOST_FILE", &host),
            ("MARIADB_USER_FILE", &user),
            ("MARIADB_PASSWORD_FILE", &password),
            ("MYSQL_DATABASE_FILE", &db),
            ("MARIADB_PORT_FILE", &port),
        ]);
        let url = resolve(None, &env).unwrap().unwrap();
        assert_eq!(url.to_string(), "mysql://app:***@db:3307/shop");
        assert_eq!(url.source, "MARIADB_*/MYSQL_* variables");
        let both = env_of(&[
            ("MARIADB_HOST", "db"),
            ("MARIADB_PASSWORD", "pw"),
            ("MARIADB_PASSWORD_FILE", &password),
        ]);
        let err = resolve(None, &both).unwrap_err();
        assert!(
            err.contains("both MARIADB_PASSWORD and MARIADB_PASSWORD_FILE"),
            "{err}"
        );
    }

    #[rstest]
    #[case(Some("postgres://d:pw@direct/app"), &[], Ok(Some("--migrate-database-url")))]
    #[case(None, &[("ROADIE_MIGRATE_DATABASE_URL", "postgres://d:pw@direct/app")], Ok(Some("ROADIE_MIGRATE_DATABASE_URL")))]
    #[case(None, &[], Ok(None))]
    #[case(Some("mysql://d:pw@direct/app"), &[], Err("must be the direct URL of the app's PostgreSQL server"))]
    #[case(Some("postgres://d:pw@direct:nope/app"), &[], Err("--migrate-database-url: malformed URL"))]
    #[case(None, &[("ROADIE_MIGRATE_DATABASE_URL", "postgres://d@h/a"), ("ROADIE_MIGRATE_DATABASE_URL_FILE", "/x")], Err("both ROADIE_MIGRATE_DATABASE_URL and ROADIE_MIGRATE_DATABASE_URL_FILE"))]
    fn the_direct_url_comes_from_the_flag_or_its_variable(
        #[case] flag: Option<&str>,
        #[case] env: &[(&str, &str)],
        #[case] expected: Result<Option<&str>, &str>,
    ) {
        let app = DatabaseUrl::parse("postgres://app:pw@pooler:6432/app", "DATABASE_URL").unwrap();
        let got = resolve_migrate(flag, &env_of(env), Some(&app));
        match (got, expected) {
            (Ok(url), Ok(source)) => assert_eq!(url.map(|u| u.source), source.map(String::from)),
            (Err(e), Err(says)) => {
                assert!(e.contains(says), "{e}");
                assert!(!e.contains(":pw@"), "{e}");
            }
            (got, expected) => panic!("{got:?} vs {expected:?}"),
        }
    }

    #[test]
    fn the_direct_url_may_come_from_a_file_and_needs_the_apps() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("direct");
        std::fs::write(&file, "postgres://d:pw@direct/app\n").unwrap();
        let path = file.to_string_lossy().into_owned();
        let env = env_of(&[("ROADIE_MIGRATE_DATABASE_URL_FILE", &path)]);
        let app = DatabaseUrl::parse("postgres://app:pw@pooler/app", "DATABASE_URL").unwrap();
        let url = resolve_migrate(None, &env, Some(&app)).unwrap().unwrap();
        assert_eq!(url.source, "ROADIE_MIGRATE_DATABASE_URL_FILE");
        assert_eq!(url.as_given(), "postgres://d:pw@direct/app");
        let err = resolve_migrate(None, &env, None).unwrap_err();
        assert!(err.contains("no database is"), "{err}");
    }

    #[test]
    fn nothing_set_means_no_database() {
        assert_eq!(
            resolve(None, &env_of(&[("POSTGRES_USER", "app")])).unwrap(),
            None
        );
    }

    #[test]
    fn the_postgres_variables_escape_what_they_hold() {
        let env = env_of(&[("POSTGRES_HOST", "db"), ("POSTGRES_PASSWORD", "p@ss/w:rd")]);
        let url = resolve(None, &env).unwrap().unwrap();
        let ConnectOptions::Postgres(options) = url.connect_options().unwrap() else {
            panic!("postgres");
        };
        assert!(options.to_url_lossy().as_str().contains("p%40ss%2Fw%3Ard"));
    }

    #[test]
    fn secrets_are_read_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("url");
        std::fs::write(&file, "postgres://app:filepw@db/app\n").unwrap();
        let path = file.to_string_lossy().into_owned();
        let url = resolve(None, &env_of(&[("DATABASE_URL_FILE", &path)]))
            .unwrap()
            .unwrap();
        assert_eq!(url.to_string(), "postgres://app:***@db/app");
        assert_eq!(url.source, "DATABASE_URL_FILE");

        let pw = dir.path().join("pw");
        std::fs::write(&pw, "filepw\n").unwrap();
        let pw = pw.to_string_lossy().into_owned();
        let env = env_of(&[("POSTGRES_HOST", "db"), ("POSTGRES_PASSWORD_FILE", &pw)]);
        let url = resolve(None, &env).unwrap().unwrap();
        let ConnectOptions::Postgres(options) = url.connect_options().unwrap() else {
            panic!("postgres");
        };
        assert!(options.to_url_lossy().as_str().contains(":filepw@"));
    }

    #[rstest]
    #[case(&[("DATABASE_URL_FILE", "/no/such/file")], "DATABASE_URL_FILE=/no/such/file: cannot read it")]
    #[case(&[("DATABASE_URL", "postgres://h/d"), ("DATABASE_URL_FILE", "/x")], "both DATABASE_URL and DATABASE_URL_FILE are set")]
    #[case(&[("POSTGRES_HOST", "db"), ("POSTGRES_PORT", "x")], "POSTGRES_PORT \"x\"")]
    fn bad_sources_are_named(#[case] env: &[(&str, &str)], #[case] says: &str) {
        let err = resolve(None, &env_of(env)).unwrap_err();
        assert!(err.contains(says), "{err}");
    }

    #[test]
    fn a_sqlite_file_needs_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        // sqlite:/abs (sqlx) and sqlite:////abs (SQLAlchemy) are absolute; sqlite:///x relative.
        let ok = format!("sqlite:{}/app.db", dir.path().display());
        check_sqlite_directory(&DatabaseUrl::parse(&ok, "x").unwrap()).unwrap();
        check_sqlite_directory(&DatabaseUrl::parse("sqlite:app.db", "x").unwrap()).unwrap();
        let missing = format!("sqlite:///{}/nope/app.db", dir.path().display());
        let err = check_sqlite_directory(&DatabaseUrl::parse(&missing, "x").unwrap()).unwrap_err();
        assert!(err.contains("does not exist"), "{err}");
    }
}
