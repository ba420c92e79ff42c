//! A throwaway PostgreSQL per test: its own data directory (copied from a template that is
//! initdb'd once per machine), its own port on 127.0.0.1 and ::1, its own socket directory,
//! fsync off. It runs as the `postgres` user (initdb refuses root). On a failed test the data
//! directory and log are kept and their path printed.
//!
//! Roles in every cluster: `roadie` / ROADIE_PASSWORD owns database `app`; `special` has a
//! password full of URL-reserved characters; `blocked` is rejected by pg_hba.conf.

use super::server::{Engine, Server, StartedAt, copy_of_template, remove_unless_failed};
use super::{run, text};
use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub const BIN: &str = "/usr/lib/postgresql/15/bin";
pub use super::server::{ROADIE_PASSWORD, SPECIAL_PASSWORD, escape};
/// Bump when the template's contents change, so machines build it again.
const TEMPLATE: &str = "/tmp/roadie-test-pg15-template-v1";

pub struct Postgres {
    pub port: u16,
    /// Holds `data/`, the socket and `log`.
    pub dir: PathBuf,
    /// More server options for `start`, e.g. `-c log_connections=on`.
    pub options: Vec<String>,
    running: bool,
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

impl Postgres {
    /// A new cluster, not yet started.
    pub fn new() -> Self {
        ensure_template();
        let dir = copy_of_template(TEMPLATE, "roadie-pg-");
        chown_postgres(&dir);
        Postgres {
            port: free_port(),
            dir,
            options: Vec::new(),
            running: false,
        }
    }

    /// A new cluster, started and accepting logins.
    pub fn started() -> Self {
        let mut pg = Self::new();
        pg.start();
        pg
    }

    pub fn socket_dir(&self) -> String {
        self.dir.to_string_lossy().into_owned()
    }

    /// Starts the server listening on loopback and on `address` too (the host side of a test's
    /// own veth pair), accepting role `roadie` with its password from `network` (its /30).
    pub fn start_also_on(&mut self, address: &str, network: &str) {
        let hba = self.dir.join("data/pg_hba.conf");
        let mut rules = fs::read_to_string(&hba).expect("pg_hba.conf");
        rules.push_str(&format!("host all roadie {network} scram-sha-256\n"));
        fs::write(&hba, rules).expect("pg_hba.conf");
        self.start_on(&format!("127.0.0.1,::1,{address}"));
    }

    fn start_on(&mut self, listen: &str) {
        let options = format!(
            "-p {} -k {} -c listen_addresses='{listen}' -c fsync=off -c log_line_prefix='%n [%p] ' {}",
            self.port,
            self.socket_dir(),
            self.options.join(" ")
        );
        let out = pg_ctl(
            &self.data(),
            &[
                "-l",
                &self.log_path().to_string_lossy(),
                "-o",
                &options,
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\n{}",
            text(&out),
            self.log()
        );
        self.running = true;
    }

    /// A crash: `pg_ctl stop -m immediate` kills every server process without a checkpoint,
    /// so the next start replays the WAL (crash recovery).
    pub fn crash(&mut self) {
        let out = pg_ctl(&self.data(), &["-m", "immediate", "-w", "stop"]);
        assert!(
            out.status.success(),
            "pg_ctl stop -m immediate: {}",
            text(&out)
        );
        self.running = false;
    }

    /// Starts a crashed cluster that stays in recovery until `promote`: it replays the WAL,
    /// then waits for more as a standby (`standby.signal`) that takes no logins
    /// (`hot_standby = off`), answering every login 57P03, as a long crash recovery does.
    /// Returns once the server listens on TCP.
    pub fn start_recovering(&mut self) {
        let signal = self.dir.join("data/standby.signal");
        fs::write(&signal, "").expect("standby.signal");
        chown_postgres(&signal);
        self.options.push("-c hot_standby=off".into());
        self.start_with(true);
        self.options.pop();
    }

    /// Ends the recovery `start_recovering` began: the server accepts logins once this returns.
    pub fn promote(&self) {
        let out = pg_ctl(&self.data(), &["-w", "-t", "30", "promote"]);
        assert!(
            out.status.success(),
            "pg_ctl promote: {}\n{}",
            text(&out),
            self.log()
        );
    }

    /// The times (Unix ms, log_line_prefix %n) of the TCP connections the server logged
    /// (`log_connections = on`) from byte `from` of its log on: every login attempt, failed
    /// or not, and every bare connect (not pg_ctl's own, over the socket).
    pub fn connections_since(&self, from: usize) -> Vec<f64> {
        let log = self.log();
        log.get(from..)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("connection received: host=") && !l.contains("[local]"))
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .map(|seconds: f64| seconds * 1000.0)
            .collect()
    }

    /// Runs SQL as the superuser over the socket; panics on an error.
    pub fn psql(&self, sql: &str) -> String {
        let out = as_postgres(&[
            &format!("{BIN}/psql"),
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            &self.socket_dir(),
            "-p",
            &self.port.to_string(),
            "-d",
            "app",
            "-c",
            sql,
        ]);
        assert!(out.status.success(), "psql {sql:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Whether `table` exists in the database `app`.
    pub fn table_exists(&self, table: &str) -> bool {
        self.psql(&format!("SELECT to_regclass('{table}') IS NOT NULL")) == "t"
    }

    /// How many sessions database `db` has seen end, once the count stops moving (a backend
    /// adds its session when it exits, a moment after its client has gone). Asked from the
    /// `postgres` database, so the asking is not counted.
    pub fn settled_sessions(&self, db: &str) -> i64 {
        let read = || {
            let out = as_postgres(&[
                &format!("{BIN}/psql"),
                "-XqAt",
                "-h",
                &self.socket_dir(),
                "-p",
                &self.port.to_string(),
                "-d",
                "postgres",
                "-c",
                &format!("SELECT sessions FROM pg_stat_database WHERE datname = '{db}'"),
            ]);
            assert!(out.status.success(), "psql: {}", text(&out));
            let count = String::from_utf8_lossy(&out.stdout).trim().to_string();
            count.parse::<i64>().expect("a session count")
        };
        let mut last = read();
        loop {
            std::thread::sleep(std::time::Duration::from_millis(300));
            let now = read();
            if now == last {
                return now;
            }
            last = now;
        }
    }

    /// When the server last said it accepts connections, in Unix milliseconds (log_line_prefix %n).
    pub fn ready_at_ms(&self) -> Option<f64> {
        self.log()
            .lines()
            .rfind(|l| l.contains("database system is ready to accept connections"))
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
    }

    /// A streaming standby of this (started) server: `pg_basebackup -R` over the socket, on
    /// its own port, started and accepting read-only logins.
    pub fn standby(&self) -> Postgres {
        let hba = self.dir.join("data/pg_hba.conf");
        let mut rules = fs::read_to_string(&hba).expect("pg_hba");
        if !rules.contains("replication") {
            rules.push_str("local replication all trust\n");
            fs::write(&hba, rules).expect("pg_hba");
            self.psql("SELECT pg_reload_conf()");
        }
        let dir = tempfile::Builder::new()
            .prefix("roadie-pg-standby-")
            .tempdir()
            .expect("tempdir")
            .keep();
        chown_postgres(&dir);
        let data = dir.join("data");
        let out = as_postgres(&[
            &format!("{BIN}/pg_basebackup"),
            "-h",
            &self.socket_dir(),
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
            "-D",
            &data.to_string_lossy(),
            "-R",
            "-X",
            "stream",
        ]);
        assert!(out.status.success(), "pg_basebackup: {}", text(&out));
        let mut standby = Postgres {
            port: free_port(),
            dir,
            running: false,
            options: Vec::new(),
        };
        standby.start();
        standby
    }

    fn data(&self) -> String {
        self.dir.join("data").to_string_lossy().into_owned()
    }
}

impl Server for Postgres {
    fn engine(&self) -> Engine {
        Engine::Postgres
    }

    fn port(&self) -> u16 {
        self.port
    }

    fn dir(&self) -> &Path {
        &self.dir
    }

    fn start_with(&mut self, tcp: bool) {
        self.start_on(if tcp { "127.0.0.1,::1" } else { "" });
    }

    /// The server's own word: the time it logged that it accepts connections.
    fn start_timed(&mut self) -> StartedAt {
        self.start();
        let ready = self
            .ready_at_ms()
            .expect("the server logged when it was ready")
            * 1000.0;
        StartedAt {
            not_before: ready,
            accepting: ready,
        }
    }

    fn stop(&mut self) {
        if self.running {
            pg_ctl(&self.data(), &["-m", "fast", "-w", "stop"]);
            self.running = false;
        }
    }

    fn socket_in_url(&self) -> String {
        self.socket_dir()
    }

    fn sql(&self, sql: &str) -> String {
        self.psql(sql)
    }

    fn failed_logins(&self) -> usize {
        self.log().matches("password authentication failed").count()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.running {
            pg_ctl(&self.data(), &["-m", "immediate", "-w", "stop"]);
        }
        remove_unless_failed("PostgreSQL", &self.dir);
    }
}

/// initdb once per machine (serialised with a lock file): roles, database and pg_hba rules.
fn ensure_template() {
    super::once_per_machine(TEMPLATE, build_template);
}

fn build_template() {
    let _ = fs::remove_dir_all(TEMPLATE);
    fs::create_dir_all(TEMPLATE).expect("template dir");
    chown_postgres(Path::new(TEMPLATE));
    let data = format!("{TEMPLATE}/data");
    let out = as_postgres(&[
        &format!("{BIN}/initdb"),
        "--no-sync",
        "-U",
        "postgres",
        "--auth-local=trust",
        "--auth-host=scram-sha-256",
        "-D",
        &data,
    ]);
    assert!(out.status.success(), "initdb: {}", text(&out));
    let hba = "local all all trust\n\
               host all blocked 127.0.0.1/32 reject\n\
               host all blocked ::1/128 reject\n\
               host all all 127.0.0.1/32 scram-sha-256\n\
               host all all ::1/128 scram-sha-256\n";
    fs::write(format!("{data}/pg_hba.conf"), hba).expect("pg_hba");
    chown_postgres(Path::new(&format!("{data}/pg_hba.conf")));
    let port = free_port().to_string();
    let start = pg_ctl(
        &data,
        &[
            "-o",
            &format!("-p {port} -k {TEMPLATE} -c listen_addresses=''"),
            // A log file: without one the server inherits our pipes and output() never ends.
            "-l",
            &format!("{TEMPLATE}/build.log"),
            "-w",
            "start",
        ],
    );
    assert!(start.status.success(), "template start: {}", text(&start));
    // One -c per statement: psql runs a multi-statement -c in one transaction, and CREATE
    // DATABASE refuses to run in one.
    let statements = [
        format!("CREATE ROLE roadie LOGIN PASSWORD '{ROADIE_PASSWORD}'"),
        format!("CREATE ROLE special LOGIN PASSWORD '{SPECIAL_PASSWORD}'"),
        "CREATE ROLE blocked LOGIN PASSWORD 'blocked'".to_string(),
        "CREATE DATABASE app OWNER roadie".to_string(),
    ];
    let psql_bin = format!("{BIN}/psql");
    let mut argv: Vec<&str> = vec![
        &psql_bin,
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        TEMPLATE,
    ];
    argv.extend(["-p", &port, "-d", "postgres"]);
    for statement in &statements {
        argv.extend(["-c", statement]);
    }
    let psql = as_postgres(&argv);
    pg_ctl(&data, &["-m", "fast", "-w", "stop"]);
    assert!(psql.status.success(), "template roles: {}", text(&psql));
    fs::write(format!("{TEMPLATE}/ready"), "").expect("ready marker");
}

fn chown_postgres(path: &Path) {
    run(
        "chown",
        &["-R", "postgres:postgres", &path.to_string_lossy()],
    );
    let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
}

/// `pg_ctl -D DATA ARGS...` as `postgres`.
fn pg_ctl(data: &str, args: &[&str]) -> Output {
    let pg_ctl = format!("{BIN}/pg_ctl");
    as_postgres(&[&[pg_ctl.as_str(), "-D", data], args].concat())
}

fn as_postgres(argv: &[&str]) -> Output {
    Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .args(argv)
        .current_dir("/")
        .output()
        .expect("runuser")
}

/// Waits until `f` holds, for at most `limit`.
pub fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}
