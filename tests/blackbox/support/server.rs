//! One face for the database servers the tests start (postgres.rs, mariadb.rs), so a claim that
//! holds for every server is one test body run against each: `#[values(Engine::Postgres,
//! Engine::MariaDb)]`, or a `#[case]` per engine where the server's own words differ.
//!
//! Both servers have the same accounts: `roadie` / ROADIE_PASSWORD owns (or may use) database
//! `app`; `special` has a password full of URL-reserved characters and the same rights.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::mariadb::MariaDb;
use super::postgres::Postgres;
use super::run;

pub const ROADIE_PASSWORD: &str = "roadie-secret-pw";
pub const SPECIAL_PASSWORD: &str = "p@ss/w:rd%?#&";

/// A database server roadie waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Postgres,
    MariaDb,
}

impl Engine {
    /// A new server of this engine, not yet started.
    pub fn server(self) -> Box<dyn Server> {
        match self {
            Engine::Postgres => Box::new(Postgres::new()),
            Engine::MariaDb => Box::new(MariaDb::new()),
        }
    }

    /// A new server, started and accepting logins.
    pub fn started(self) -> Box<dyn Server> {
        let mut server = self.server();
        server.start();
        server
    }

    /// The URL scheme applications write for it.
    pub fn scheme(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
            Engine::MariaDb => "mysql",
        }
    }
}

/// When a server started (`Server::start_timed`), in Unix milliseconds.
pub struct StartedAt {
    /// Nothing could log in before this.
    pub not_before: f64,
    /// The server accepted logins by then.
    pub accepting: f64,
}

pub trait Server {
    fn engine(&self) -> Engine;

    fn port(&self) -> u16;

    /// Holds `data/`, the socket and `log`.
    fn dir(&self) -> &Path;

    /// Starts the server (`tcp`: listen on 127.0.0.1 and ::1, else the socket only, as the
    /// official images' first-boot servers do) and waits until it accepts logins.
    fn start_with(&mut self, tcp: bool);

    /// Starts the server on 127.0.0.1 and ::1 and waits until it accepts logins.
    fn start(&mut self) {
        self.start_with(true);
    }

    /// Starts the server and says when it began to accept logins, as closely as it can tell.
    fn start_timed(&mut self) -> StartedAt;

    /// A normal shutdown (clients disconnected, server down), and wait for it.
    fn stop(&mut self);

    /// What a URL names to reach the server over its socket: PostgreSQL's socket directory
    /// (`?host=DIR`), MariaDB's socket file (`?socket=PATH`).
    fn socket_in_url(&self) -> String;

    /// Runs SQL as the superuser in database `app`, over the socket; panics on an error.
    fn sql(&self, sql: &str) -> String;

    /// How many logins the server refused for a wrong password (or user) so far.
    fn failed_logins(&self) -> usize;

    /// `SCHEME://USER:PASSWORD@127.0.0.1:PORT/DB` with the password URL-escaped.
    fn url(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "{}://{user}:{}@127.0.0.1:{}/{db}",
            self.engine().scheme(),
            escape(password),
            self.port()
        )
    }

    /// The usual URL: user `roadie`, database `app`.
    fn app_url(&self) -> String {
        self.url("roadie", ROADIE_PASSWORD, "app")
    }

    fn log_path(&self) -> PathBuf {
        self.dir().join("log")
    }

    fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

/// A fresh directory `/tmp/<prefix>XXXX` holding a copy of `template`'s `data/`.
pub fn copy_of_template(template: &str, prefix: &str) -> PathBuf {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("tempdir")
        .keep();
    run(
        "cp",
        &[
            "-a",
            &format!("{template}/data"),
            &dir.join("data").to_string_lossy(),
        ],
    );
    dir
}

/// Removes a server's directory, or keeps it and prints its path when the test failed.
pub fn remove_unless_failed(what: &str, dir: &Path) {
    if std::thread::panicking() {
        eprintln!(
            "kept the {what} data directory and log of this failed test: {}",
            dir.display()
        );
    } else {
        let _ = fs::remove_dir_all(dir);
    }
}

/// Percent-escapes everything but unreserved characters.
pub fn escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Now, in Unix milliseconds.
pub fn unix_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
        * 1000.0
}
