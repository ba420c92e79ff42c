//! The hooks stage: every executable file in `--hooks DIR`, in name order, as a supervised
//! child (signals forwarded, reaped by the one reaper, `--user` applied, the container's
//! environment). A non-executable file is skipped with a warning; a failing hook stops the boot.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use crate::children::{ChildExit, ExecError, Program};
use crate::supervise::{Child, RunError, Stage, Stopped, Supervision};

#[derive(Debug)]
pub enum HookError {
    /// A hook exited non-zero or died (exit 65, naming the hook).
    Failed { hook: PathBuf, exit: ChildExit },
    /// A stop signal arrived during a hook (exit 128+S).
    Stopped(Stopped),
    /// A hook could not be started: its interpreter is missing, ... (exit 126 or 127).
    Exec(ExecError),
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
            HookError::Stopped(stopped) => stopped.fmt(f),
            HookError::Io { about, .. } => f.write_str(about),
            HookError::Exec(e) => write!(f, "hook {e}; the app is not started"),
        }
    }
}

impl std::error::Error for HookError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HookError::Io { source, .. } => Some(source),
            HookError::Exec(e) => Some(e),
            _ => None,
        }
    }
}

impl From<RunError> for HookError {
    fn from(e: RunError) -> Self {
        match e {
            RunError::Spawn(e) => HookError::Exec(e),
            RunError::Signals(source) => HookError::Io {
                about: "waiting for signals".into(),
                source,
            },
        }
    }
}

/// One entry of a hooks directory, as the stage treats it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// Run it.
    Executable(PathBuf),
    /// Skipped with a warning: `chmod +x` it to run it.
    NotExecutable(PathBuf),
    /// Skipped with a warning naming where it points.
    BrokenLink { link: PathBuf, target: PathBuf },
}

/// The entries of `dir` in name order. Dotfiles (`.gitkeep`) and directories are not hooks
/// and are passed over in silence.
pub fn list(dir: &Path) -> Result<Vec<Entry>, HookError> {
    let entries = fs::read_dir(dir).map_err(|source| HookError::Io {
        about: format!("reading --hooks {}", dir.display()),
        source,
    })?;
    let mut names: Vec<_> = entries
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    names.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(names
        .into_iter()
        .filter_map(|path| match fs::metadata(&path) {
            Ok(meta) if meta.is_file() && meta.permissions().mode() & 0o111 != 0 => {
                Some(Entry::Executable(path))
            }
            Ok(meta) if meta.is_file() => Some(Entry::NotExecutable(path)),
            Ok(_) => None,
            Err(_) => fs::read_link(&path)
                .ok()
                .map(|target| Entry::BrokenLink { link: path, target }),
        })
        .collect())
}

/// Runs the hooks of `dir` one after the other; returns how many ran.
pub fn run_all(dir: &Path, supervision: &mut Supervision) -> Result<usize, HookError> {
    let mut ran = 0;
    for entry in list(dir)? {
        let path = match entry {
            Entry::Executable(path) => path,
            Entry::NotExecutable(path) => {
                warn!(
                    "hooks: skipping {}: not executable (chmod +x it to run it)",
                    path.display()
                );
                continue;
            }
            Entry::BrokenLink { link, target } => {
                warn!(
                    "hooks: skipping {}: a symlink to {}, which does not exist",
                    link.display(),
                    target.display()
                );
                continue;
            }
        };
        let program = Program {
            argv: vec![path.clone().into_os_string()],
            path: path.clone(),
        };
        let ended = supervision
            .run(&program, Child::Hook)
            .map_err(HookError::from)?;
        if let Some(signal) = ended.stopped_by {
            return Err(HookError::Stopped(Stopped {
                signal,
                during: Stage::Hooks,
            }));
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
        for (name, mode) in [
            ("20-b", 0o755),
            ("10-a", 0o755),
            ("15-plain", 0o644),
            (".gitkeep", 0o644),
            (".10-hidden", 0o755),
        ] {
            let path = dir.path().join(name);
            fs::write(&path, "#!/bin/sh\n").unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        }
        fs::create_dir(dir.path().join("05-dir")).unwrap();
        std::os::unix::fs::symlink("/nonexistent/seed", dir.path().join("30-broken")).unwrap();
        let listed: Vec<Entry> = list(dir.path()).unwrap();
        assert_eq!(
            listed,
            [
                Entry::Executable(dir.path().join("10-a")),
                Entry::NotExecutable(dir.path().join("15-plain")),
                Entry::Executable(dir.path().join("20-b")),
                Entry::BrokenLink {
                    link: dir.path().join("30-broken"),
                    target: "/nonexistent/seed".into()
                },
            ]
        );
    }
}
