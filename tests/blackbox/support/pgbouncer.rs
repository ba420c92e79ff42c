//! A real PgBouncer (Debian's package) in front of a test's PostgreSQL: its own ini, port and
//! socket directory, run as the `postgres` user, in transaction or session pooling mode, with
//! two server connections per pool so clients really share them.

use std::fs;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::postgres::{Postgres, ROADIE_PASSWORD, escape, eventually, free_port};
use super::text;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    Transaction,
    Session,
}

pub struct PgBouncer {
    pub port: u16,
    dir: PathBuf,
}

impl PgBouncer {
    /// PgBouncer in `mode` in front of `pg`'s database `app`, two server connections a pool.
    pub fn start(pg: &Postgres, mode: PoolMode) -> Self {
        Self::start_with(pg, mode, 2)
    }

    /// PgBouncer with `pool_size` server connections a pool, started and accepting.
    pub fn start_with(pg: &Postgres, mode: PoolMode, pool_size: u32) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("roadie-pgbouncer-")
            .tempdir()
            .expect("tempdir")
            .keep();
        let port = free_port();
        let mode = match mode {
            PoolMode::Transaction => "transaction",
            PoolMode::Session => "session",
        };
        let d = dir.display();
        let ini = format!(
            "[databases]\n\
             app = host=127.0.0.1 port={pg_port} dbname=app\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir = {d}\n\
             auth_type = scram-sha-256\n\
             auth_file = {d}/userlist.txt\n\
             pool_mode = {mode}\n\
             default_pool_size = {pool_size}\n\
             max_client_conn = 500\n\
             logfile = {d}/pgbouncer.log\n\
             pidfile = {d}/pgbouncer.pid\n",
            pg_port = pg.port,
        );
        fs::write(dir.join("pgbouncer.ini"), ini).expect("ini");
        fs::write(
            dir.join("userlist.txt"),
            format!("\"roadie\" \"{ROADIE_PASSWORD}\"\n"),
        )
        .expect("userlist");
        super::run("chown", &["-R", "postgres:postgres", &d.to_string()]);
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--", "/usr/sbin/pgbouncer", "-d"])
            .arg(dir.join("pgbouncer.ini"))
            .current_dir("/")
            .output()
            .expect("runuser pgbouncer");
        assert!(out.status.success(), "pgbouncer: {}", text(&out));
        let bouncer = PgBouncer { port, dir };
        assert!(
            eventually(Duration::from_secs(10), || {
                TcpStream::connect(("127.0.0.1", port)).is_ok()
            }),
            "pgbouncer did not listen: {}",
            bouncer.log()
        );
        bouncer
    }

    /// `postgres://roadie:...@127.0.0.1:PORT/app` through the pooler.
    pub fn app_url(&self) -> String {
        format!(
            "postgres://roadie:{}@127.0.0.1:{}/app",
            escape(ROADIE_PASSWORD),
            self.port
        )
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }

    fn pid(&self) -> Option<i32> {
        fs::read_to_string(self.dir.join("pgbouncer.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            // SAFETY: a plain kill(2) of the daemon this harness started (its pidfile).
            unsafe { libc::kill(pid, libc::SIGTERM) };
            eventually(Duration::from_secs(5), || unsafe {
                libc::kill(pid, 0) != 0
            });
        }
        if std::thread::panicking() {
            eprintln!("kept PgBouncer's directory and log: {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}
