//! A throwaway MariaDB per test: its own data directory (copied from a template that
//! mariadb-install-db builds once per machine), its own port on 127.0.0.1 and ::1, its own socket,
//! nothing synced to disk. `mariadbd` runs directly (no service scripts, no my.cnf) as a child
//! of the test, as the `mysql` user. On a failed test the data directory and log are kept and
//! their path printed.
//!
//! Accounts in every server, as the official image makes them: `roadie` / ROADIE_PASSWORD may
//! use database `app` only; `special` has a password full of URL-reserved characters and the
//! same grant; `root` / ROOT_PASSWORD may do anything from any host. The server only knows
//! host `%` (and `localhost` for root on the socket): it never resolves names.

use super::{run, text};
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::DEADLINE;
use super::postgres::free_port;
use super::server::{Engine, Server, StartedAt, copy_of_template, remove_unless_failed, unix_ms};

pub const SERVER: &str = "/usr/sbin/mariadbd";
pub use super::server::{ROADIE_PASSWORD, SPECIAL_PASSWORD};
pub const ROOT_PASSWORD: &str = "root-secret-pw";
/// Bump when the template's contents change, so machines build it again.
const TEMPLATE: &str = "/tmp/roadie-test-mariadb-template-v1";
/// The redo log is fixed when the data directory is made and must match at every start; the
/// default 96 MiB would make each copy of the template 100 MiB.
const REDO_LOG_SIZE: &str = "--innodb-log-file-size=4M";

pub struct MariaDb {
    pub port: u16,
    /// Holds `data/`, the socket and `log`.
    pub dir: PathBuf,
    /// More `mariadbd` options for the next start, e.g. `--max-connections=1`.
    pub options: Vec<String>,
    server: Option<Child>,
}

impl MariaDb {
    /// A new server, not yet started.
    pub fn new() -> Self {
        ensure_template();
        let dir = copy_of_template(TEMPLATE, "roadie-mariadb-");
        chown_mysql(&dir);
        MariaDb {
            port: free_port(),
            dir,
            options: Vec::new(),
            server: None,
        }
    }

    /// A new server, started and accepting logins.
    pub fn started() -> Self {
        let mut db = Self::new();
        db.start();
        db
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("socket")
    }

    /// `Server::start_with`: waits until `roadie` can log in (over TCP, else the socket). Call
    /// it on the test's own thread: the server dies with the thread that started it, so a test
    /// killed at its deadline leaves no server behind.
    fn start_server(&mut self, tcp: bool) {
        assert!(self.server.is_none(), "MariaDB is already running");
        let log = fs::File::create(self.log_path()).expect("log file");
        let (uid, gid) = mysql_ids();
        let mut command = Command::new(SERVER);
        command
            // --no-defaults must come first: no /etc/mysql/my.cnf, only what is here.
            .arg("--no-defaults")
            .arg(format!("--datadir={}", self.data()))
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!("--pid-file={}", self.dir.join("pid").display()))
            .arg(format!("--port={}", self.port))
            .arg(format!("--skip-networking={}", u8::from(!tcp)))
            .arg("--bind-address=127.0.0.1,::1")
            .arg("--skip-name-resolve")
            .arg(REDO_LOG_SIZE)
            // Speed, not durability: these servers live for one test.
            .args([
                "--innodb-flush-log-at-trx-commit=0",
                "--innodb-doublewrite=0",
                "--innodb-buffer-pool-size=32M",
                "--innodb-temp-data-file-path=ibtmp1:1M:autoextend",
            ])
            // io_uring is often denied in containers and limited per user; tests need no AIO.
            .arg("--innodb-use-native-aio=0")
            .args(&self.options)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            // Without --log-error the server logs to stderr.
            .stdout(log.try_clone().expect("log file"))
            .stderr(log);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(move || {
                // As `mysql` (mariadbd refuses root); the death signal is set after the user
                // change, which would clear it.
                if libc::setgroups(1, &gid) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                    || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let server = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {SERVER}: {e}"));
        self.server = Some(server);
        let until = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.server.as_mut().and_then(|s| s.try_wait().ok()?) {
                self.server = None;
                panic!(
                    "mariadbd exited with {status} while starting:\n{}",
                    self.log()
                );
            }
            let port = self.port.to_string();
            let socket = format!("--socket={}", self.socket().display());
            let via: &[&str] = if tcp {
                &["--protocol=tcp", "-h", "127.0.0.1", "-P", &port]
            } else {
                &["--protocol=socket", &socket]
            };
            let password = format!("--password={ROADIE_PASSWORD}");
            let login =
                self.client(&[via, &["-u", "roadie", &password, "app", "-e", "SELECT 1"]].concat());
            if login.status.success() {
                return;
            }
            assert!(
                Instant::now() < until,
                "MariaDB did not accept logins within {DEADLINE:?}: {}\n{}",
                text(&login),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Runs SQL as root in database `app` over the socket; panics on an error.
    pub fn sql(&self, sql: &str) -> String {
        self.try_sql(sql)
            .unwrap_or_else(|e| panic!("mariadb {sql:?}: {e}"))
    }

    /// Runs SQL as root in database `app` over the socket: its output, or the client's error.
    pub fn try_sql(&self, sql: &str) -> Result<String, String> {
        let socket = format!("--socket={}", self.socket().display());
        let out = self.client(&[&socket, "-u", "root", "-N", "-B", "-e", sql, "app"]);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(text(&out))
        }
    }

    /// A client logged in as `roadie` over TCP that holds its connection (a long `SLEEP`)
    /// until it is killed on the server, and that connection's id. A login refused because
    /// the server still counts a connection that just closed is tried again.
    pub fn hold_connection(&self) -> (Child, String) {
        let port = self.port.to_string();
        let password = format!("--password={ROADIE_PASSWORD}");
        let until = Instant::now() + DEADLINE;
        loop {
            let mut client = Command::new("mariadb")
                .args([
                    "--no-defaults",
                    "--connect-timeout=2",
                    "--protocol=tcp",
                    "-h",
                    "127.0.0.1",
                    "-P",
                    &port,
                ])
                .args(["-u", "roadie", &password, "app"])
                // Unbuffered: the id arrives while the client sleeps.
                .args(["--unbuffered", "-N", "-B"])
                .args(["-e", "SELECT CONNECTION_ID(); SELECT SLEEP(600)"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("mariadb client");
            let mut id = String::new();
            let stdout = client.stdout.take().expect("piped stdout");
            let _ = BufReader::new(stdout).read_line(&mut id);
            if !id.trim().is_empty() {
                return (client, id.trim().to_string());
            }
            let out = client.wait_with_output().expect("mariadb client");
            assert!(
                Instant::now() < until,
                "no connection to hold within {DEADLINE:?}: {}",
                text(&out)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn data(&self) -> String {
        self.dir.join("data").to_string_lossy().into_owned()
    }

    fn client(&self, args: &[&str]) -> Output {
        Command::new("mariadb")
            .arg("--no-defaults")
            .args(["--connect-timeout=2"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("mariadb client")
    }
}

impl Server for MariaDb {
    fn engine(&self) -> Engine {
        Engine::MariaDb
    }

    fn port(&self) -> u16 {
        self.port
    }

    fn dir(&self) -> &Path {
        &self.dir
    }

    fn start_with(&mut self, tcp: bool) {
        self.start_server(tcp);
    }

    /// The server logs no time it accepts logins: the span is from before its spawn to our own
    /// client's first login (polled every 10 ms).
    fn start_timed(&mut self) -> StartedAt {
        let not_before = unix_ms();
        self.start();
        StartedAt {
            not_before,
            accepting: unix_ms(),
        }
    }

    fn stop(&mut self) {
        let Some(mut server) = self.server.take() else {
            return;
        };
        // SAFETY: plain kill(2) of our own child.
        unsafe {
            libc::kill(server.id() as i32, libc::SIGTERM);
        }
        let until = Instant::now() + DEADLINE;
        while server.try_wait().expect("try_wait").is_none() {
            if Instant::now() > until {
                let _ = server.kill();
                let _ = server.wait();
                panic!("mariadbd did not stop within {DEADLINE:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn socket_in_url(&self) -> String {
        self.socket().to_string_lossy().into_owned()
    }

    fn sql(&self, sql: &str) -> String {
        MariaDb::sql(self, sql)
    }

    /// The server's count of failed logins (wrong password, or a database the user may not use).
    fn failed_logins(&self) -> usize {
        self.sql("SHOW GLOBAL STATUS LIKE 'Access_denied_errors'")
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .expect("a count")
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
        remove_unless_failed("MariaDB", &self.dir);
    }
}

/// mariadb-install-db once per machine (serialised with a lock file), then the accounts.
fn ensure_template() {
    super::once_per_machine(TEMPLATE, build_template);
}

fn build_template() {
    let _ = fs::remove_dir_all(TEMPLATE);
    fs::create_dir_all(TEMPLATE).expect("template dir");
    chown_mysql(Path::new(TEMPLATE));
    let data = format!("{TEMPLATE}/data");
    let datadir = format!("--datadir={data}");
    let install = Command::new("mariadb-install-db")
        .args(["--no-defaults", "--user=mysql", &datadir])
        // root@localhost without a password (no unix_socket plugin); no `test` database.
        .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
        .args(["--skip-name-resolve", REDO_LOG_SIZE])
        .current_dir("/")
        .output()
        .expect("mariadb-install-db");
    assert!(
        install.status.success(),
        "mariadb-install-db: {}",
        text(&install)
    );
    // Bootstrap mode: the server runs the SQL on stdin and exits, no socket, no port. It starts
    // without grant tables; FLUSH PRIVILEGES loads them so that CREATE USER works.
    let accounts = format!(
        "FLUSH PRIVILEGES;
         DELETE FROM mysql.global_priv WHERE Host NOT IN ('localhost', '%');
         DELETE FROM mysql.proxies_priv WHERE Host NOT IN ('localhost', '%');
         FLUSH PRIVILEGES;
         CREATE DATABASE app;
         CREATE USER 'roadie'@'%' IDENTIFIED BY '{ROADIE_PASSWORD}';
         GRANT ALL ON app.* TO 'roadie'@'%';
         CREATE USER 'special'@'%' IDENTIFIED BY '{SPECIAL_PASSWORD}';
         GRANT ALL ON app.* TO 'special'@'%';
         CREATE USER 'root'@'%' IDENTIFIED BY '{ROOT_PASSWORD}';
         GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;
        "
    );
    let mut bootstrap = Command::new(SERVER)
        .args(["--no-defaults", "--user=mysql", &datadir, REDO_LOG_SIZE])
        .args(["--bootstrap", "--skip-networking", "--log-warnings=0"])
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mariadbd --bootstrap");
    use std::io::Write;
    bootstrap
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(accounts.as_bytes())
        .expect("writing the accounts");
    let out = bootstrap.wait_with_output().expect("mariadbd --bootstrap");
    assert!(out.status.success(), "template accounts: {}", text(&out));
    fs::write(format!("{TEMPLATE}/ready"), "").expect("ready marker");
}

/// The uid and gid of `mysql`, which the mariadb-server package creates.
fn mysql_ids() -> (libc::uid_t, libc::gid_t) {
    let user = nix::unistd::User::from_name("mysql")
        .expect("reading the user database")
        .expect("no user mysql: install mariadb-server (scripts/test.sh does)");
    (user.uid.as_raw(), user.gid.as_raw())
}

fn chown_mysql(path: &Path) {
    run("chown", &["-R", "mysql:mysql", &path.to_string_lossy()]);
}
