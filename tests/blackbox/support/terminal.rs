//! roadie on a fresh pseudo-terminal, as `docker run -it` gives it one: the session leader with
//! the pty as its controlling terminal (TOSTOP on), driven by typing into the master side.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use nix::pty::openpty;
use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};

use super::{DEADLINE, Mode, kill_tree, roadie_bin};

pub struct OnTerminal {
    child: std::process::Child,
    master: File,
    /// What the terminal shows, as the reader thread gets it.
    output: Receiver<Vec<u8>>,
    /// Shown but not yet matched by `shows`.
    pub seen: String,
    /// Everything shown so far, for the evidence on failure.
    transcript: String,
}

impl OnTerminal {
    /// `roadie ARGS...` in `mode`, in `/` (as `roadie()` runs it: the repo's own migrations/
    /// folder must not count as the app's) and the test's environment.
    pub fn start(mode: Mode, args: &[&str]) -> Self {
        Self::start_with(mode, args, Some(Path::new("/")), &[])
    }

    /// `roadie ARGS...` in `mode`, in `cwd` (else the test's), with `env` added to the test's.
    pub fn start_with<S: AsRef<std::ffi::OsStr>>(
        mode: Mode,
        args: &[S],
        cwd: Option<&Path>,
        env: &[(&str, &str)],
    ) -> Self {
        let mut argv: Vec<OsString> = match mode {
            Mode::Subreaper => vec![roadie_bin().into()],
            Mode::Pid1 => ["unshare", "--pid", "--fork", "--mount-proc", roadie_bin()]
                .iter()
                .map(Into::into)
                .collect(),
        };
        argv.extend(args.iter().map(|a| a.as_ref().to_os_string()));
        Self::spawn(&argv, cwd, env)
    }

    /// `argv` on a fresh pseudo-terminal: roadie as above, or an engine that gives it one
    /// (`podman run -it`).
    pub fn spawn(argv: &[OsString], cwd: Option<&Path>, env: &[(&str, &str)]) -> Self {
        let pty = openpty(None, None).expect("openpty");
        let mut termios = tcgetattr(&pty.slave).expect("tcgetattr");
        termios.local_flags |= LocalFlags::TOSTOP;
        tcsetattr(&pty.slave, SetArg::TCSANOW, &termios).expect("tcsetattr");
        let slave: OwnedFd = pty.slave;
        let mut command = Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .env("TERM", "dumb")
            .env("PS1", "$ ")
            .envs(env.iter().copied())
            .stdin(Stdio::from(slave.try_clone().expect("dup")))
            .stdout(Stdio::from(slave.try_clone().expect("dup")))
            .stderr(Stdio::from(slave.try_clone().expect("dup")));
        if let Some(dir) = cwd {
            command.current_dir(dir);
        }
        // SAFETY: setsid and ioctl are async-signal-safe.
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("spawn on pty");
        drop(slave);
        let master = File::from(pty.master);
        let mut reader = master.try_clone().expect("dup master");
        let (tx, output) = channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once every slave descriptor is closed.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        OnTerminal {
            child,
            master,
            output,
            seen: String::new(),
            transcript: String::new(),
        }
    }

    pub fn type_in(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).expect("write to pty");
    }

    fn take(&mut self, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        self.seen.push_str(&text);
        self.transcript.push_str(&text);
    }

    /// Waits until the terminal has shown `needle` (after what was already matched).
    pub fn shows(&mut self, needle: &str) -> String {
        let until = Instant::now() + DEADLINE;
        loop {
            if let Some(at) = self.seen.find(needle) {
                let shown = self.seen[..at + needle.len()].to_string();
                self.seen.drain(..at + needle.len());
                return shown;
            }
            let left = until.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(bytes) => self.take(&bytes),
                Err(_) => self.fail(&format!("the terminal never showed {needle:?}")),
            }
        }
    }

    /// Everything the terminal has shown so far, matched or not.
    pub fn transcript(&self) -> &str {
        &self.transcript
    }

    /// Waits for roadie to exit and for the terminal's last output; roadie's exit code (128+S
    /// for a death by signal S).
    pub fn exit_code(&mut self) -> i32 {
        let until = Instant::now() + DEADLINE;
        let code = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status
                    .code()
                    .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
            }
            while let Ok(bytes) = self.output.try_recv() {
                self.take(&bytes);
            }
            if Instant::now() > until {
                self.fail("roadie did not exit");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        // The reader ends (EIO) once the last process holding the terminal is gone.
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(bytes) => self.take(&bytes),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    self.fail("the terminal stayed open after roadie exited")
                }
            }
        }
        code
    }

    /// Asks the shell on the terminal whether it has it, with job control (in the foreground).
    /// The quotes in the typed line keep its echo from matching the answer.
    pub fn shell_has_the_foreground(&mut self) {
        self.type_in(b"echo \"an\"\"swer tty=$(tty) flags=$-\"\n");
        self.shows("answer tty=");
        let answer = self.shows("\n");
        let job_control = answer
            .split("flags=")
            .nth(1)
            .is_some_and(|f| f.contains('m'));
        if !answer.starts_with("/dev/pts/") || !job_control {
            self.fail(&format!("not the terminal's foreground: tty={answer:?}"));
        }
    }

    /// Leaves the debug shell `shell` with `exit 3`: roadie exits 3, having said only that it
    /// skips the boot, that it starts the shell, and how the shell ended (no wait, no
    /// migration, no hook).
    pub fn exit_debug_shell(&mut self, shell: &str) {
        self.type_in(b"exit 3\n");
        let code = self.exit_code();
        if code != 3 {
            self.fail(&format!("expected the shell's exit code 3, got {code}"));
        }
        self.roadie_said_only(&[
            &format!("{shell} is an interactive shell: skipping wait, migrations and hooks"),
            &format!("starting {shell} (pid "),
            &format!("{shell} exited with code 3"),
        ]);
    }

    /// Asserts roadie's lines on the terminal, in order, each containing its `expected` text.
    fn roadie_said_only(&mut self, expected: &[&str]) {
        let said: Vec<String> = self
            .transcript()
            .lines()
            .filter(|l| l.contains("[roadie]"))
            .map(str::to_string)
            .collect();
        let matches =
            said.len() == expected.len() && said.iter().zip(expected).all(|(l, e)| l.contains(e));
        if !matches {
            self.fail(&format!("roadie's lines: {said:#?}, expected {expected:?}"));
        }
    }

    pub fn fail(&mut self, why: &str) -> ! {
        kill_tree(self.child.id() as i32);
        std::thread::sleep(Duration::from_millis(50));
        while let Ok(bytes) = self.output.try_recv() {
            self.take(&bytes);
        }
        panic!(
            "{why}\n  terminal (unmatched part):\n{}\n  terminal (all of it):\n{}",
            self.seen, self.transcript
        );
    }
}

impl Drop for OnTerminal {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            kill_tree(self.child.id() as i32);
            let _ = self.child.wait();
        }
    }
}
