//! The hooks stage: every executable file in `--hooks DIR`, in name order, as a supervised
//! child (signals forwarded, reaped by the one reaper, `--user` applied, the container's
//! environment). A non-executable file is skipped with a warning; a failing hook stops the boot.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use crate::children::{ChildExit, Program};
use crate::supervise::{Child, RunError, Supervision};

#[derive(Debug)]
pub enum HookError {
    /// A hook exited non-zero or died (exit 65, naming the hook).
    Failed { hook: PathBuf, exit: ChildExit },
    /// A stop signal arrived during a hook (exit 128+S).
    Stopped(libc::c_int),
    /// The folder could not be read or a hook not started (exit 70).
    Io {
        about: String,
        source: std::io::Error,
    },
}

impl std::fmt::Display for HookError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HookError::Failed { hook, exit } => {
                write!(f, "hook {} {exit}; the app is not started", hook.display())
            }
            HookError::Stopped(s) => write!(
                f,
                "stopped by SIG{} while running hooks: the app is not started",
                crate::signals::name(*s)
            ),
            HookError::Io { about, .. } => f.write_str(about),
        }
    }
}

impl std::error::Error for HookError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HookError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The files of `dir` in name order, each with whether it may be executed.
pub fn list(dir: &Path) -> Result<Vec<(PathBuf, bool)>, HookError> {
    let entries = fs::read_dir(dir).map_err(|source| HookError::Io {
        about: format!("reading --hooks {}", dir.display()),
        source,
    })?;
    let mut hooks: Vec<(PathBuf, bool)> = entries
        .flatten()
        .filter_map(|e| {
            let meta = fs::metadata(e.path()).ok()?;
            meta.is_file()
                .then(|| (e.path(), meta.permissions().mode() & 0o111 != 0))
        })
        .collect();
    hooks.sort_by(|a, b| a.0.file_name().cmp(&b.0.file_name()));
    Ok(hooks)
}

/// Runs the hooks of `dir` one after the other; returns how many ran.
pub fn run_all(dir: &Path, supervision: &mut Supervision) -> Result<usize, HookError> {
    let mut ran = 0;
    for (path, executable) in list(dir)? {
        if !executable {
            warn!(
                "hooks: skipping {}: not executable (chmod +x it to run it)",
                path.display()
            );
            continue;
        }
        let program = Program {
            argv: vec![path.clone().into_os_string()],
            path: path.clone(),
        };
        let ended = supervision
            .run(&program, Child::Hook)
            .map_err(|e| match e {
                RunError::Spawn(source) => HookError::Io {
                    about: format!("starting hook {}", path.display()),
                    source,
                },
                RunError::Signals(source) => HookError::Io {
                    about: "waiting for signals".into(),
                    source,
                },
            })?;
        if let Some(signal) = ended.stopped_by {
            return Err(HookError::Stopped(signal));
        }
        if ended.exit != ChildExit::Exited(0) {
            return Err(HookError::Failed {
                hook: path,
                exit: ended.exit,
            });
        }
        ran += 1;
    }
    info!("{ran} hook{} done", if ran == 1 { "" } else { "s" });
    Ok(ran)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_are_listed_in_name_order_with_their_mode() {
        let dir = tempfile::tempdir().unwrap();
        for (name, mode) in [("20-b", 0o755), ("10-a", 0o755), ("15-plain", 0o644)] {
            let path = dir.path().join(name);
            fs::write(&path, "#!/bin/sh\n").unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        }
        fs::create_dir(dir.path().join("05-dir")).unwrap();
        let listed: Vec<(String, bool)> = list(dir.path())
            .unwrap()
            .into_iter()
            .map(|(p, x)| (p.file_name().unwrap().to_string_lossy().into_owned(), x))
            .collect();
        assert_eq!(
            listed,
            [
                ("10-a".into(), true),
                ("15-plain".into(), false),
                ("20-b".into(), true)
            ]
        );
    }
}
