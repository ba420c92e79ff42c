//! The harness: runs the real roadie binary as a black box, either as a subreaper (a child of
//! the test) or as real PID 1 of a fresh PID namespace (`unshare --pid --fork --mount-proc`,
//! which is what a container is). Everything has a deadline; a failure prints all the evidence.

pub mod dns;
pub mod http;
pub mod mariadb;
pub mod netns;
pub mod pgbouncer;
pub mod postgres;
pub mod server;
pub mod sessions;
pub mod terminal;

use std::ffi::OsString;
use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long any one step may take before the test fails with its evidence.
pub const DEADLINE: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// roadie is a child of the test and makes itself a subreaper.
    Subreaper,
    /// roadie is PID 1 of its own PID namespace.
    Pid1,
}

pub fn roadie_bin() -> &'static str {
    env!("CARGO_BIN_EXE_roadie")
}

/// A tiny app from tests/blackbox/apps.
pub fn app(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/blackbox/apps")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// `roadie ARGS...` in `mode`, to configure and then start.
pub fn roadie<I, S>(mode: Mode, args: I) -> Roadie
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    Roadie {
        mode,
        program: roadie_bin().into(),
        args: args.into_iter().map(Into::into).collect(),
        env: Vec::new(),
        stdin: None,
        before_exec: None,
        cwd: PathBuf::from("/"),
    }
}

/// roadie in `Mode::Subreaper` migrating `url` from the folder `dir`, with `extra` flags,
/// then running an app that prints `app-started`: the native-migration boot most tests start.
pub fn migrating(url: &str, dir: &Path, extra: &[&str]) -> Roadie {
    let mut args = vec![
        "--database-url".to_string(),
        url.to_string(),
        "--migrations".into(),
        dir.to_string_lossy().into_owned(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(["sh".into(), "-c".into(), "echo app-started".into()]);
    roadie(Mode::Subreaper, args)
}

/// roadie in `Mode::Subreaper` with debug logs (a `not ready:` line per failed attempt) waiting
/// for the database at `url`, then running an app that prints `app-started`.
pub fn waiting_for(url: &str) -> Roadie {
    roadie(
        Mode::Subreaper,
        [
            "--log-level",
            "debug",
            "--database-url",
            url,
            "sh",
            "-c",
            "echo app-started",
        ],
    )
}

/// `roadie ARGS...` started through `script`, an image's ENTRYPOINT script that execs roadie
/// (found on the `PATH` the test gives it), in `mode`.
pub fn entrypoint<I, S>(mode: Mode, script: &Path, args: I) -> Roadie
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    Roadie {
        program: script.into(),
        ..roadie(mode, args)
    }
}

pub struct Roadie {
    mode: Mode,
    /// What is started: roadie itself, or an entrypoint script that execs it.
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(String, String)>,
    stdin: Option<Vec<u8>>,
    before_exec: Option<Box<dyn FnMut() -> std::io::Result<()> + Send + Sync>>,
    /// roadie's working directory: `/` unless a test says otherwise, so nothing (alembic.ini,
    /// migrations/) is auto-detected by accident.
    cwd: PathBuf,
}

impl Roadie {
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = dir.into();
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Bytes to write to roadie's stdin (then closed). Without it stdin is /dev/null.
    pub fn stdin(mut self, bytes: &[u8]) -> Self {
        self.stdin = Some(bytes.to_vec());
        self
    }

    /// Runs in the forked test child just before it execs (roadie, or unshare in Pid1 mode).
    pub fn before_exec(
        mut self,
        f: impl FnMut() -> std::io::Result<()> + Send + Sync + 'static,
    ) -> Self {
        self.before_exec = Some(Box::new(f));
        self
    }

    fn argv(&self) -> Vec<OsString> {
        let mut argv: Vec<OsString> = match self.mode {
            Mode::Subreaper => vec![],
            Mode::Pid1 => ["unshare", "--pid", "--fork", "--mount-proc"]
                .iter()
                .map(Into::into)
                .collect(),
        };
        argv.push(self.program.clone());
        argv.extend(self.args.iter().cloned());
        argv
    }

    pub fn start(mut self) -> Running {
        let argv = self.argv();
        let mut command = Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so the deadline can take down everything it started.
            .process_group(0)
            .current_dir(&self.cwd);
        for (k, v) in &self.env {
            command.env(k, v);
        }
        if let Some(f) = self.before_exec.take() {
            // SAFETY: the hooks given by tests only make async-signal-safe calls.
            unsafe {
                command.pre_exec(f);
            }
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {argv:?}: {e}"));
        if let Some(bytes) = self.stdin.take() {
            let mut stdin = child.stdin.take().expect("piped stdin");
            thread::spawn(move || {
                let _ = stdin.write_all(&bytes);
            });
        }
        let (lines_tx, lines) = channel();
        let stdout_all = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().expect("piped stdout");
        let all = Arc::clone(&stdout_all);
        let stdout_reader = thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut all = all.lock().unwrap();
                all.push_str(&line);
                all.push('\n');
                let _ = lines_tx.send(line);
            }
        });
        let stderr_all = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().expect("piped stderr");
        let all = Arc::clone(&stderr_all);
        let stderr_reader = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                all.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Running {
            argv,
            mode: self.mode,
            child,
            lines,
            stdout_all,
            stderr_all,
            readers: vec![stdout_reader, stderr_reader],
            started: Instant::now(),
        }
    }

    /// Starts roadie and waits for it to exit.
    pub fn run(self) -> Finished {
        self.start().finish()
    }
}

/// A roadie that runs.
pub struct Running {
    argv: Vec<OsString>,
    pub mode: Mode,
    child: Child,
    lines: Receiver<String>,
    stdout_all: Arc<Mutex<String>>,
    stderr_all: Arc<Mutex<String>>,
    readers: Vec<thread::JoinHandle<()>>,
    started: Instant,
}

impl Running {
    /// roadie's pid as the test sees it (in Pid1 mode: the child of `unshare`).
    pub fn pid(&self) -> i32 {
        match self.mode {
            Mode::Subreaper => self.child.id() as i32,
            Mode::Pid1 => {
                let unshare = self.child.id();
                let until = Instant::now() + DEADLINE;
                loop {
                    let children =
                        std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children"))
                            .unwrap_or_default();
                    if let Some(pid) = children.split_whitespace().next() {
                        return pid.parse().expect("pid");
                    }
                    if Instant::now() > until {
                        self.fail("unshare never started roadie");
                    }
                    thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }

    /// Sends `signal` to roadie.
    pub fn signal(&self, signal: i32) {
        let pid = self.pid();
        // SAFETY: plain kill(2).
        if unsafe { libc::kill(pid, signal) } != 0 {
            self.fail(&format!(
                "kill({pid}, {signal}): {}",
                std::io::Error::last_os_error()
            ));
        }
    }

    /// Waits for a stdout line containing `needle` and returns it.
    pub fn line_containing(&mut self, needle: &str) -> String {
        let until = Instant::now() + DEADLINE;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    self.fail(&format!("no stdout line containing {needle:?} in time"))
                }
                Err(RecvTimeoutError::Disconnected) => self.fail(&format!(
                    "stdout closed before a line containing {needle:?}"
                )),
            }
        }
    }

    /// Asserts that no stdout line arrives within `quiet`.
    pub fn no_line_within(&mut self, quiet: Duration) {
        if let Ok(line) = self.lines.recv_timeout(quiet) {
            self.fail(&format!("unexpected stdout line {line:?}"));
        }
    }

    pub fn stderr_so_far(&self) -> String {
        self.stderr_all.lock().unwrap().clone()
    }

    /// Waits until roadie's stderr contains `needle`.
    pub fn stderr_containing(&self, needle: &str) {
        let until = Instant::now() + DEADLINE;
        while !self.stderr_so_far().contains(needle) {
            if Instant::now() > until {
                self.fail(&format!("stderr never said {needle:?}"));
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// N in roadie's `database ready in 1.02s after N attempts`, once it said so.
    pub fn attempts_before_ready(&self) -> u32 {
        self.stderr_containing("database ready in");
        let stderr = self.stderr_so_far();
        let line = stderr
            .lines()
            .find(|l| l.contains("[roadie] ") && l.contains("database ready in"))
            .unwrap_or_default();
        line.rsplit("after ")
            .next()
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| self.fail(&format!("no attempt count in {line:?}")))
    }

    /// Whether roadie has exited, without waiting (its status is kept for `finish`).
    pub fn has_exited(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_some()
    }

    /// Waits for roadie to exit (killing everything at the deadline).
    pub fn finish(self) -> Finished {
        self.finish_within(DEADLINE)
    }

    pub fn finish_within(mut self, deadline: Duration) -> Finished {
        let until = Instant::now() + deadline;
        let status = loop {
            match self.child.try_wait().expect("try_wait") {
                Some(status) => break status,
                None if Instant::now() > until => {
                    self.fail(&format!("roadie did not exit within {deadline:?}"))
                }
                None => thread::sleep(Duration::from_millis(2)),
            }
        };
        let elapsed = self.started.elapsed();
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        Finished {
            argv: self.argv.clone(),
            code: status.code(),
            signal: status.signal(),
            elapsed,
            stdout: self.stdout_all.lock().unwrap().clone(),
            stderr: self.stderr_all.lock().unwrap().clone(),
        }
    }

    /// Fails the test with everything known so far, after killing all it started.
    pub fn fail(&self, why: &str) -> ! {
        kill_tree(self.child.id() as i32);
        thread::sleep(Duration::from_millis(50));
        panic!(
            "{why}\n  argv: {:?}\n  mode: {:?}\n  after: {:?}\n  stdout:\n{}\n  stderr:\n{}",
            self.argv,
            self.mode,
            self.started.elapsed(),
            indent(&self.stdout_all.lock().unwrap()),
            indent(&self.stderr_all.lock().unwrap()),
        );
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            kill_tree(self.child.id() as i32);
            let _ = self.child.wait();
        }
    }
}

/// How roadie ended, with all it printed.
pub struct Finished {
    pub argv: Vec<OsString>,
    /// Exit code; `None` when roadie itself died of a signal.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub elapsed: Duration,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// When the `PRINTS_START` app started, in Unix milliseconds.
    pub fn app_started_at_ms(&self) -> f64 {
        self.stdout
            .trim()
            .trim_start_matches("started-at=")
            .parse()
            .unwrap_or_else(|_| panic!("no start time\n{self}"))
    }

    /// Asserts the exit code, printing all the evidence when it differs.
    pub fn code(&self, expected: i32) -> &Self {
        if self.code != Some(expected) {
            panic!("expected exit code {expected}\n{self}");
        }
        self
    }

    pub fn stdout_has(&self, needle: &str) -> &Self {
        if !self.stdout.contains(needle) {
            panic!("stdout lacks {needle:?}\n{self}");
        }
        self
    }

    pub fn stderr_has(&self, needle: &str) -> &Self {
        if !self.stderr.contains(needle) {
            panic!("stderr lacks {needle:?}\n{self}");
        }
        self
    }

    pub fn stdout_lacks(&self, needle: &str) -> &Self {
        if self.stdout.contains(needle) {
            panic!("stdout has {needle:?}\n{self}");
        }
        self
    }

    pub fn stderr_lacks(&self, needle: &str) -> &Self {
        if self.stderr.contains(needle) {
            panic!("stderr has {needle:?}\n{self}");
        }
        self
    }

    pub fn faster_than(&self, limit: Duration) -> &Self {
        if self.elapsed > limit {
            panic!("took {:?}, more than {limit:?}\n{self}", self.elapsed);
        }
        self
    }

    pub fn slower_than(&self, limit: Duration) -> &Self {
        if self.elapsed < limit {
            panic!("took {:?}, less than {limit:?}\n{self}", self.elapsed);
        }
        self
    }
}

impl fmt::Display for Finished {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "  argv: {:?}\n  exit code: {:?}, signal: {:?}, after {:?}\n  stdout:\n{}\n  stderr:\n{}",
            self.argv,
            self.code,
            self.signal,
            self.elapsed,
            indent(&self.stdout),
            indent(&self.stderr)
        )
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

pub use roadie::process_tree::tree;

/// SIGKILLs `root` and everything below it.
pub fn kill_tree(root: i32) {
    for pid in tree(root).into_iter().rev() {
        // SAFETY: plain kill(2).
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

/// Whether a process exists (zombies count).
pub fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Builds `dir` with `build` unless an earlier test (or test process) did: serialised by a lock
/// file beside it; `build` writes `dir/ready` when it is done.
pub fn once_per_machine(dir: &str, build: impl FnOnce()) {
    use std::os::fd::AsRawFd;
    let lock = std::fs::File::create(format!("{dir}.lock")).expect("lock file");
    // SAFETY: flock on an open file; the lock goes with the descriptor.
    unsafe {
        libc::flock(lock.as_raw_fd(), libc::LOCK_EX);
    }
    if !Path::new(&format!("{dir}/ready")).exists() {
        build();
    }
}

/// An app (`sh -c` it) that prints when it started, in Unix milliseconds; read it back with
/// `Finished::app_started_at_ms`.
pub const PRINTS_START: &str = "echo started-at=$(date +%s%3N)";

/// Runs roadie against each of `urls` (all failing: refused, unreachable or malformed), the
/// URL given as the flag and as `DATABASE_URL`, with trace logging: it exits 69 or 78 and
/// `secret`, the password in every URL, appears nowhere in what it printed. The run with
/// `DATABASE_URL` must have used that URL: it exits with the flag's code and says what the flag's
/// run said (the host, port and database it waited for, the server's answer), naming
/// `DATABASE_URL` where that run named `--database-url`.
pub fn no_secret_in_any_failure(secret: &str, urls: &[String]) {
    for url in urls {
        let args = ["--log-level", "trace", "--wait-timeout", "300ms"];
        let finished = roadie(
            Mode::Subreaper,
            args.iter().chain(&["--database-url", url, "true"]),
        )
        .run();
        assert!(matches!(finished.code, Some(69 | 78)), "{finished}");
        finished.stderr_lacks(secret);
        let as_env = roadie(Mode::Subreaper, args.iter().chain(&["true"]))
            .env("DATABASE_URL", url)
            .run();
        as_env.stderr_lacks(secret);
        let said = said_about(&finished, "--database-url");
        assert!(
            said.iter().any(|l| l.contains("<source>")),
            "the flag's run never named --database-url\n{finished}"
        );
        assert!(
            as_env.code == finished.code && said_about(&as_env, "DATABASE_URL") == said,
            "with DATABASE_URL={url:?} roadie did not do what --database-url made it do\n\
             with the flag:\n{finished}\nwith the variable:\n{as_env}"
        );
    }
}

/// roadie's own INFO and ERROR lines, with `source` (where the URL came from) as `<source>` and
/// every duration (`41ms`, `1.02s`) as `#` and its unit.
fn said_about(finished: &Finished, source: &str) -> Vec<String> {
    finished
        .stderr
        .lines()
        .filter(|l| l.starts_with("[roadie] INFO ") || l.starts_with("[roadie] ERROR "))
        .map(|l| without_durations(&l.replace(source, "<source>")))
        .collect()
}

fn without_durations(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(at) = rest.find(|c: char| c.is_ascii_digit()) {
        out.push_str(&rest[..at]);
        let number = rest[at..]
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .map_or(rest.len(), |end| at + end);
        let after = &rest[number..];
        let unit = ["ns", "us", "ms", "s"]
            .into_iter()
            .find(|u| after.starts_with(u) && !after[u.len()..].starts_with(char::is_alphanumeric));
        match unit {
            Some(_) => out.push('#'),
            None => out.push_str(&rest[at..number]),
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// A `#!/bin/sh` script named `name` in `dir` with permissions `mode`: a hook (0o755), or a
/// file roadie must skip (0o644).
pub fn script(dir: &Path, name: &str, body: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("writing a script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Runs a set-up command that must succeed (the servers' harnesses).
fn run(program: &str, args: &[&str]) {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .expect(program);
    assert!(out.status.success(), "{program} {args:?}: {}", text(&out));
}

/// A command's stdout and stderr, for a failure message.
fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A scratch directory kept on failure (its path is printed by the test that uses it).
pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("roadie-test-")
        .tempdir()
        .expect("tempdir")
}

/// The repository's Python virtualenv's bin directory, with alembic in it (scripts/venv.sh makes
/// it; scripts/test.sh runs that).
pub fn venv_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin");
    assert!(
        bin.join("alembic").exists(),
        "run scripts/venv.sh first (scripts/test.sh does)"
    );
    bin
}

/// A copy of the alembic test project (revisions 0001 to 0005) in `dir`, to change at will.
pub fn alembic_project(dir: &Path) -> PathBuf {
    let project = dir.join("project");
    let copied = Command::new("cp")
        .args(["-r", &app("alembic"), &project.to_string_lossy()])
        .status()
        .unwrap();
    assert!(copied.success());
    project
}
