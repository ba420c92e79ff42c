//! Other sessions on a test's PostgreSQL beside roadie: a blocker that holds a lock in an open
//! transaction until the test commits it, and an ordinary query whose wait is measured.

use std::io::Write;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use super::postgres::{BIN, Postgres, ROADIE_PASSWORD, eventually};

/// A superuser session, named by its `application_name`, that ran some SQL inside an open
/// transaction and holds what it took until `commit` (or its drop, which kills it).
pub struct Blocker {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Blocker {
    /// Runs `sql` after `BEGIN` in a session named `name` and returns once the session is
    /// idle in its transaction (its locks taken).
    pub fn hold(pg: &Postgres, name: &str, sql: &str) -> Self {
        let mut child = Command::new("runuser")
            .args(["-u", "postgres", "--", &format!("{BIN}/psql"), "-X", "-q"])
            .args(["-v", "ON_ERROR_STOP=1"])
            // roadie's own role: roadie sees its sessions' state and query (another role's
            // only with pg_read_all_stats).
            .arg(format!(
                "host=127.0.0.1 port={} dbname=app user=roadie password={ROADIE_PASSWORD} \
                 application_name={name}",
                pg.port
            ))
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("psql");
        let mut stdin = child.stdin.take().expect("piped");
        writeln!(stdin, "BEGIN;\n{sql}").expect("write to psql");
        stdin.flush().expect("flush");
        let held = eventually(Duration::from_secs(20), || {
            pg.psql(&format!(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE application_name = '{name}' AND state = 'idle in transaction'"
            )) == "1"
        });
        assert!(held, "the blocker {name} never held its locks");
        Blocker {
            child,
            stdin: Some(stdin),
        }
    }

    /// Commits its transaction and ends the session.
    pub fn commit(mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = writeln!(stdin, "COMMIT;");
        }
        let _ = self.child.wait();
    }
}

impl Drop for Blocker {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// How long `sql` took on the server, as psql's `\timing` measures it (connecting excluded).
pub fn query_time(pg: &Postgres, sql: &str) -> Duration {
    let out = Command::new("runuser")
        .args([
            "-u",
            "postgres",
            "--",
            &format!("{BIN}/psql"),
            "-X",
            "-A",
            "-t",
        ])
        .args([
            "-h",
            &pg.socket_dir(),
            "-p",
            &pg.port.to_string(),
            "-d",
            "app",
        ])
        .args(["-c", "\\timing on", "-c", sql])
        .current_dir("/")
        .output()
        .expect("psql");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "psql {sql:?}: {text}");
    let ms: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("Time: "))
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no timing in {text:?}"));
    Duration::from_secs_f64(ms / 1000.0)
}

/// The longest of `sql`'s times, run back to back for `span`.
pub fn longest_query_time(pg: &Postgres, sql: &str, span: Duration) -> Duration {
    let until = Instant::now() + span;
    let mut longest = Duration::ZERO;
    while Instant::now() < until {
        longest = longest.max(query_time(pg, sql));
    }
    longest
}
