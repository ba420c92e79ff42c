//! Starting child processes and describing how they ended. Every child (hooks, the migration
//! command, the app) starts here; `reaper.rs` is the only place that collects them.

mod descendants;
mod reaper;

use std::ffi::OsString;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub use descendants::signal_descendants;
pub use reaper::Reaper;

use crate::signals;
use crate::user::RunAs;

/// A command resolved at config time: the file to execute and the argv it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// Resolved through PATH: what execve gets.
    pub path: PathBuf,
    /// As the user wrote it: argv[0], then the arguments.
    pub argv: Vec<OsString>,
}

impl Program {
    /// A command roadie only reads (`migrate status`, `--wait-for-schema`), never runs: its
    /// file need not exist, and its path is argv[0] as written.
    pub fn never_run(argv: Vec<OsString>) -> Self {
        Program {
            path: PathBuf::from(&argv[0]),
            argv,
        }
    }

    /// The name to show in logs: argv[0] as written.
    pub fn display_name(&self) -> String {
        self.argv[0].to_string_lossy().into_owned()
    }

    /// The whole command as written, for logs and messages: `alembic upgrade head`.
    pub fn command_line(&self) -> String {
        self.argv
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Whether this is an interactive shell someone wants to debug in (`docker run -it image
    /// bash`): `sh`, `bash`, `ash`, `dash` or `zsh` with options only, no `-c` and no script.
    /// `sh -c "uvicorn ..."` is an app.
    pub fn is_debug_shell(&self) -> bool {
        let name = Path::new(&self.argv[0])
            .file_name()
            .unwrap_or_default()
            .to_string_lossy();
        if !["sh", "bash", "ash", "dash", "zsh"].contains(&name.as_ref()) {
            return false;
        }
        self.argv[1..].iter().all(|arg| {
            let arg = arg.to_string_lossy();
            let short_c = !arg.starts_with("--") && arg.contains('c');
            arg.starts_with('-') && !short_c
        })
    }
}

/// How one child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildExit {
    Exited(u8),
    Signaled(i32),
}

impl ChildExit {
    /// Decodes a waitpid status; `None` for a stop or continue report.
    pub fn from_wait_status(status: libc::c_int) -> Option<Self> {
        if libc::WIFEXITED(status) {
            Some(ChildExit::Exited(libc::WEXITSTATUS(status) as u8))
        } else if libc::WIFSIGNALED(status) {
            Some(ChildExit::Signaled(libc::WTERMSIG(status)))
        } else {
            None
        }
    }

    /// The shell's convention: the code itself, or 128+S for a death by signal S.
    pub fn code(self) -> u8 {
        match self {
            ChildExit::Exited(code) => code,
            ChildExit::Signaled(signal) => (128 + signal).clamp(0, 255) as u8,
        }
    }
}

impl std::fmt::Display for ChildExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChildExit::Exited(code) => write!(f, "exited with code {code}"),
            ChildExit::Signaled(s) => write!(
                f,
                "was killed by SIG{} (exit code {})",
                signals::name(*s),
                self.code()
            ),
        }
    }
}

/// What a child gets besides its argv.
#[derive(Debug, Clone, Copy, Default)]
pub struct Launch<'a> {
    /// Run as this user (`--user`).
    pub run_as: Option<&'a RunAs>,
    /// Hand the terminal on stdin to the child's process group (the app, the debug shell).
    pub take_terminal: bool,
    /// Variables set (or replaced) in the child's environment.
    pub env: &'a [(OsString, OsString)],
}

/// A started child that nobody watches yet: only [`Reaper::watch`] takes it, so every child
/// is reaped by the one reaper, on the thread that spawned it (std's spawn waits for a child
/// whose exec failed, and that must not race a `waitpid(-1)` elsewhere).
#[must_use = "a spawned child must be handed to the Reaper"]
pub struct Spawned {
    pid: libc::pid_t,
}

/// Why a program could not be started, told as a shell tells it (and with its exit code).
#[derive(Debug)]
pub enum ExecError {
    /// The program itself is not there (127).
    NotFound { path: PathBuf },
    /// Its `#!` interpreter is not there, or the line ends in a CR (126).
    BadInterpreter { path: PathBuf, interpreter: String },
    /// Any other refusal: permissions, a format the kernel cannot run, `--user` (126).
    Refused { path: PathBuf, source: io::Error },
}

impl ExecError {
    /// Reads execve's error: ENOENT for a file that exists means its interpreter is missing.
    fn of(path: &Path, source: io::Error) -> Self {
        let path = path.to_path_buf();
        if source.kind() != io::ErrorKind::NotFound {
            return ExecError::Refused { path, source };
        }
        match interpreter_of(&path) {
            Some(interpreter) => ExecError::BadInterpreter { path, interpreter },
            None if path.exists() => ExecError::Refused { path, source },
            None => ExecError::NotFound { path },
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            ExecError::NotFound { .. } => 127,
            ExecError::BadInterpreter { .. } | ExecError::Refused { .. } => 126,
        }
    }
}

impl std::fmt::Display for ExecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExecError::NotFound { path } => write!(f, "{}: not found", path.display()),
            ExecError::BadInterpreter { path, interpreter } => {
                let shown = interpreter.replace('\r', "^M");
                write!(f, "{}: bad interpreter {shown:?}", path.display())?;
                if interpreter.ends_with('\r') {
                    f.write_str(" (the file has Windows line endings: convert it with dos2unix)")
                } else {
                    f.write_str(": no such file")
                }
            }
            ExecError::Refused { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for ExecError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ExecError::Refused { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The interpreter a `#!` line names (up to the first blank, CR kept), when the file has one.
fn interpreter_of(path: &Path) -> Option<String> {
    use std::io::Read as _;
    let mut head = [0u8; 256];
    let n = std::fs::File::open(path).ok()?.read(&mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = line.split(|&b| b == b'\n').next()?;
    let text = String::from_utf8_lossy(line);
    let interpreter = text.trim_start_matches([' ', '\t']);
    let end = interpreter.find([' ', '\t']).unwrap_or(interpreter.len());
    Some(interpreter[..end].to_string()).filter(|i| !i.is_empty())
}

/// Starts `program` in its own process group with a clean signal state.
pub fn spawn(program: &Program, launch: Launch<'_>) -> Result<Spawned, ExecError> {
    let mut command = Command::new(&program.path);
    command.arg0(&program.argv[0]).args(&program.argv[1..]);
    if let Some(run_as) = launch.run_as {
        command.env("HOME", &run_as.home);
    }
    command.envs(launch.env.iter().map(|(k, v)| (k, v)));
    let take_terminal = launch.take_terminal && owns_terminal();
    let ids = launch.run_as.map(|r| (r.uid, r.gid, r.groups.clone()));
    // SAFETY: the closure only makes async-signal-safe calls and allocates nothing.
    unsafe {
        command.pre_exec(move || {
            // Own process group: group signalling reaches only the app's tree, and a tty's
            // Ctrl-C reaches the app once, not twice (once directly, once forwarded).
            if libc::setpgid(0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if take_terminal {
                // SIGTTOU is still blocked here, so a background caller may do this.
                libc::tcsetpgrp(libc::STDIN_FILENO, libc::getpid());
            }
            signals::reset_for_exec()?;
            if let Some((uid, gid, groups)) = &ids
                && (libc::setgroups(groups.len(), groups.as_ptr()) != 0
                    || libc::setgid(*gid) != 0
                    || libc::setuid(*uid) != 0)
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command
        .spawn()
        .map_err(|e| ExecError::of(&program.path, e))?;
    // Dropping std's handle neither waits nor kills: the reaper owns the pid from here.
    Ok(Spawned {
        pid: child.id() as libc::pid_t,
    })
}

/// Whether stdin is a terminal whose foreground is roadie's own process group: only then is the
/// terminal ours to hand over (never steal it from a shell that ran roadie in the background).
fn owns_terminal() -> bool {
    // SAFETY: plain queries on fd 0.
    unsafe {
        libc::isatty(libc::STDIN_FILENO) == 1
            && libc::tcgetpgrp(libc::STDIN_FILENO) == libc::getpgrp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(ChildExit::Exited(0), 0)]
    #[case(ChildExit::Exited(7), 7)]
    #[case(ChildExit::Exited(255), 255)]
    #[case(ChildExit::Signaled(libc::SIGTERM), 143)]
    #[case(ChildExit::Signaled(libc::SIGKILL), 137)]
    #[case(ChildExit::Signaled(libc::SIGUSR1), 138)]
    #[case(ChildExit::Signaled(libc::SIGINT), 130)]
    fn exit_codes_follow_the_shell(#[case] exit: ChildExit, #[case] code: u8) {
        assert_eq!(exit.code(), code);
    }

    #[rstest]
    #[case(&["bash"], true)]
    #[case(&["/bin/sh"], true)]
    #[case(&["bash", "-l"], true)]
    #[case(&["bash", "--login", "-i"], true)]
    #[case(&["zsh"], true)]
    #[case(&["sh", "-c", "uvicorn app:app"], false)]
    #[case(&["bash", "-lc", "echo hi"], false)]
    #[case(&["bash", "script.sh"], false)]
    #[case(&["python3"], false)]
    #[case(&["uvicorn", "-i"], false)]
    fn tells_a_debug_shell_from_an_app(#[case] argv: &[&str], #[case] shell: bool) {
        let program = Program {
            path: PathBuf::from(argv[0]),
            argv: argv.iter().map(Into::into).collect(),
        };
        assert_eq!(program.is_debug_shell(), shell, "{argv:?}");
    }

    #[rstest]
    #[case(b"#!/bin/sh\r\necho hi\r\n", "/bin/sh\r")]
    #[case(b"#!/usr/bin/python9\nprint(1)\n", "/usr/bin/python9")]
    #[case(b"#! /usr/bin/env  python3 -u\n", "/usr/bin/env")]
    fn reads_the_interpreter_line(#[case] text: &[u8], #[case] interpreter: &str) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hook");
        std::fs::write(&file, text).unwrap();
        assert_eq!(interpreter_of(&file).as_deref(), Some(interpreter));
    }

    #[test]
    fn a_crlf_shebang_is_shown_as_a_shell_shows_it() {
        let error = ExecError::BadInterpreter {
            path: "/hooks/10-seed".into(),
            interpreter: "/bin/sh\r".into(),
        };
        assert!(
            error
                .to_string()
                .starts_with("/hooks/10-seed: bad interpreter \"/bin/sh^M\"")
        );
        assert_eq!(error.exit_code(), 126);
    }

    #[test]
    fn decodes_wait_statuses() {
        // Encodings from <bits/waitstatus.h>: exit code in the high byte, signal in the low.
        assert_eq!(
            ChildExit::from_wait_status(3 << 8),
            Some(ChildExit::Exited(3))
        );
        assert_eq!(
            ChildExit::from_wait_status(libc::SIGTERM),
            Some(ChildExit::Signaled(libc::SIGTERM))
        );
        assert_eq!(
            ChildExit::from_wait_status(0x137f),
            None,
            "stopped by SIGSTOP"
        );
    }
}
