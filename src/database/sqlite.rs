//! SQLite's decisions: no server, so no session to watch, cancel or keep alive; the lock is an
//! flock on a file beside the database (an in-memory database lives in one process, with
//! nothing to share).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Opens the lock file beside `database` (`None`: an in-memory database, nothing to lock).
pub fn lock_file(database: Option<&Path>) -> Result<Option<File>, (PathBuf, std::io::Error)> {
    let Some(db) = database else {
        return Ok(None);
    };
    let path = PathBuf::from(format!("{}.roadie-lock", db.display()));
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map(Some)
        .map_err(|source| (path, source))
}

/// Tries the flock once, without waiting.
pub fn try_lock(file: Option<&File>) -> bool {
    let Some(file) = file else {
        return true;
    };
    // SAFETY: flock on an open file; LOCK_NB never blocks.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}
