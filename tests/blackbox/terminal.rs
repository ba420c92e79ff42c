//! With a terminal on stdin the app gets its own process group and the terminal's foreground:
//! an interactive shell has job control, Ctrl-C reaches the app, and roadie, now in the
//! background, is never stopped by the terminal (TOSTOP is on in these tests).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use nix::pty::openpty;
use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
use rstest::rstest;

use crate::support::{DEADLINE, Mode, kill_tree, roadie_bin};

/// roadie on a fresh pty, as `docker run -it` gives it one: session leader, controlling tty.
struct OnTerminal {
    child: std::process::Child,
    master: File,
    output: Receiver<Vec<u8>>,
    seen: String,
}

impl OnTerminal {
    fn start(mode: Mode, args: &[&str]) -> Self {
        let pty = openpty(None, None).expect("openpty");
        let mut termios = tcgetattr(&pty.slave).expect("tcgetattr");
        termios.local_flags |= LocalFlags::TOSTOP;
        tcsetattr(&pty.slave, SetArg::TCSANOW, &termios).expect("tcsetattr");
        let mut argv: Vec<&str> = match mode {
            Mode::Subreaper => vec![roadie_bin()],
            Mode::Pid1 => vec!["unshare", "--pid", "--fork", "--mount-proc", roadie_bin()],
        };
        argv.extend(args);
        let slave: OwnedFd = pty.slave;
        let mut command = Command::new(argv[0]);
        command
            .args(&argv[1..])
            .env("TERM", "dumb")
            .env("PS1", "$ ")
            .stdin(Stdio::from(slave.try_clone().expect("dup")))
            .stdout(Stdio::from(slave.try_clone().expect("dup")))
            .stderr(Stdio::from(slave.try_clone().expect("dup")));
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
        }
    }

    fn type_in(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).expect("write to pty");
    }

    /// Waits until the terminal has shown `needle` (after what was already matched).
    fn shows(&mut self, needle: &str) -> String {
        let until = Instant::now() + DEADLINE;
        loop {
            if let Some(at) = self.seen.find(needle) {
                let shown = self.seen[..at + needle.len()].to_string();
                self.seen.drain(..at + needle.len());
                return shown;
            }
            let left = until.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(bytes) => self.seen.push_str(&String::from_utf8_lossy(&bytes)),
                Err(_) => self.fail(&format!("the terminal never showed {needle:?}")),
            }
        }
    }

    fn exit_code(mut self) -> i32 {
        let until = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status
                    .code()
                    .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
            }
            while let Ok(bytes) = self.output.try_recv() {
                self.seen.push_str(&String::from_utf8_lossy(&bytes));
            }
            if Instant::now() > until {
                self.fail("roadie did not exit");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn fail(&mut self, why: &str) -> ! {
        kill_tree(self.child.id() as i32);
        std::thread::sleep(Duration::from_millis(50));
        while let Ok(bytes) = self.output.try_recv() {
            self.seen.push_str(&String::from_utf8_lossy(&bytes));
        }
        panic!("{why}\n  terminal (unmatched part):\n{}", self.seen);
    }
}

impl Drop for OnTerminal {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            kill_tree(self.child.id() as i32);
            let _ = self.child.wait();
        }
        let _ = self.master.as_raw_fd();
    }
}

#[rstest]
fn an_interactive_shell_gets_job_control(#[values(Mode::Subreaper, Mode::Pid1)] mode: Mode) {
    let mut t = OnTerminal::start(mode, &["bash", "--norc", "--noprofile", "-i"]);
    t.type_in(b"echo \"flags=[$-]\"\n");
    // The typed line is echoed (by the terminal, then by readline); the answer follows.
    let answer = loop {
        t.shows("flags=[");
        let answer = t.shows("]");
        if answer != "$-]" {
            break answer;
        }
    };
    assert!(answer.contains('m'), "no job control: flags {answer:?}");
    let before = t.seen.clone();
    assert!(!before.contains("no job control"), "{before}");
    t.type_in(b"exit 7\n");
    assert_eq!(t.exit_code(), 7);
}

#[rstest]
fn ctrl_c_reaches_the_app_and_gives_130(#[values(Mode::Subreaper, Mode::Pid1)] mode: Mode) {
    let mut t = OnTerminal::start(
        mode,
        &["sh", "-c", "echo app-ready; while :; do sleep 0.1; done"],
    );
    t.shows("app-ready");
    t.type_in(b"\x03");
    assert_eq!(t.exit_code(), 130);
}

#[rstest]
fn a_debug_shell_skips_the_boot_and_gets_the_terminal(
    #[values(Mode::Subreaper, Mode::Pid1)] mode: Mode,
) {
    // The database does not exist: a boot would wait for it; a debug shell must not.
    let unreachable = format!(
        "postgres://app:pw@127.0.0.1:{}/app",
        crate::support::postgres::free_port()
    );
    let mut t = OnTerminal::start(
        mode,
        &[
            "--database-url",
            &unreachable,
            "bash",
            "--norc",
            "--noprofile",
            "-i",
        ],
    );
    t.shows("is an interactive shell: skipping wait, migrations and hooks");
    t.type_in(b"echo \"flags=[$-]\"\n");
    let answer = loop {
        t.shows("flags=[");
        let answer = t.shows("]");
        if answer != "$-]" {
            break answer;
        }
    };
    assert!(answer.contains('m'), "no job control: flags {answer:?}");
    t.type_in(b"exit 5\n");
    assert_eq!(t.exit_code(), 5);
}
