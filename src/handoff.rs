//! The handoff: once the app has settled, the boot hands the supervision to a fresh image of
//! roadie (`execve`: same pid, same children, signals still blocked and pending), so nothing the
//! boot touched stays resident: argument parsing, the database stages, their runtime. The
//! protocol (argv[1] = `MARK`, then the fields) lives only here: `settle` writes it, `main`
//! reads it with `Handoff::from_args` and `resume`s. Should the execve fail, the boot's pages
//! are released in place: only clean file-backed pages and unused stack, which come back on
//! demand.

use std::ffi::{CString, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use tracing::debug;

use crate::error::BootError;
use crate::logging::{self, Phase, Settings};
use crate::signals::{ForwardPolicy, SignalSource};
use crate::supervise::{self, Supervision};

/// argv[1] of a handed-over supervisor: no user types it (a command of that name is reachable
/// with `roadie run -- ...`).
const MARK: &str = "__roadie-supervise";

/// What a supervisor needs once the app runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Handoff {
    pub pid: libc::pid_t,
    pub name: String,
    pub stop_grace: Duration,
    pub forward: ForwardPolicy,
    pub success_codes: Vec<u8>,
    pub log: Settings,
}

impl Handoff {
    pub(crate) fn to_argv(&self) -> Vec<CString> {
        let rewrites: Vec<String> = self
            .forward
            .rewrites
            .iter()
            .map(|(from, to)| format!("{from}:{to}"))
            .collect();
        let codes: Vec<String> = self.success_codes.iter().map(u8::to_string).collect();
        let (format, level) = self.log.as_args();
        [
            "roadie".to_string(),
            MARK.to_string(),
            self.pid.to_string(),
            self.stop_grace.as_millis().to_string(),
            u8::from(self.forward.group).to_string(),
            format!("r{}", rewrites.join(",")),
            format!("c{}", codes.join(",")),
            format.to_string(),
            level,
            self.name.clone(),
        ]
        .into_iter()
        .map(|a| CString::new(a.replace('\0', "")).expect("UNWRAP: NULs removed"))
        .collect()
    }

    /// The handoff in roadie's own argv, if this image is a handed-over supervisor.
    pub fn from_args(args: &[OsString]) -> Option<Result<Self, String>> {
        if args.get(1).map(|a| a.as_bytes()) != Some(MARK.as_bytes()) {
            return None;
        }
        Some(Self::parse(&args[2..]).ok_or_else(|| format!("malformed {MARK} arguments")))
    }

    fn parse(args: &[OsString]) -> Option<Self> {
        let text: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let [pid, grace, group, rewrites, codes, format, level, name] = text.as_slice() else {
            return None;
        };
        let list = |s: &str, tag: char| -> Option<Vec<String>> {
            let rest = s.strip_prefix(tag)?;
            Some(
                rest.split(',')
                    .filter(|p| !p.is_empty())
                    .map(str::to_string)
                    .collect(),
            )
        };
        let rewrites = list(rewrites, 'r')?
            .iter()
            .map(|r| {
                let (from, to) = r.split_once(':')?;
                Some((from.parse().ok()?, to.parse().ok()?))
            })
            .collect::<Option<Vec<_>>>()?;
        let success_codes = list(codes, 'c')?
            .iter()
            .map(|c| c.parse().ok())
            .collect::<Option<Vec<u8>>>()?;
        Some(Handoff {
            pid: pid.parse().ok()?,
            name: name.clone(),
            stop_grace: Duration::from_millis(grace.parse().ok()?),
            forward: ForwardPolicy {
                rewrites,
                group: group == "1",
            },
            success_codes,
            log: Settings::parse(format, level).ok()?,
        })
    }
}

impl Handoff {
    /// The run stage, continued in this fresh image: supervises the app to its end and
    /// returns roadie's exit code.
    pub fn resume(self, signals: SignalSource) -> Result<u8, BootError> {
        logging::init(self.log);
        logging::enter(Phase::Run);
        // execve of /proc/self/exe names the process after that link ("exe" in top and
        // pgrep): keep roadie's own name.
        if let Err(e) = nix::sys::prctl::set_name(c"roadie") {
            debug!("keeping the process name: {e}");
        }
        let settings = supervise::Settings {
            stop_grace: self.stop_grace,
            forward: self.forward,
            success_codes: Vec::new(),
            run_as: None,
        };
        let mut supervision = Supervision::new(signals, &settings);
        let ended = supervision
            .resume(
                self.pid,
                &self.name,
                &self.success_codes,
                &release_boot_memory,
            )
            .map_err(|source| BootError::Internal {
                about: "waiting for signals",
                source,
            })?;
        Ok(ended.reported_code(&self.success_codes))
    }
}

/// The boot is over: continue as a fresh image that only supervises. Returns only when that
/// is impossible (no /proc, the binary replaced on disk), after releasing what it can in place.
pub fn settle(handoff: &Handoff) {
    let argv = handoff.to_argv();
    let mut pointers: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    pointers.push(std::ptr::null());
    let exe = c"/proc/self/exe";
    // SAFETY: NUL-terminated strings and a NULL-terminated array that outlive the call; the
    // environment is inherited. Handlers reset across execve, but no signal has one: every
    // signal roadie handles is blocked, and stays blocked and pending in the new image.
    unsafe {
        libc::execv(exe.as_ptr(), pointers.as_ptr());
    }
    debug!(
        "handing supervision to a fresh image failed ({}); releasing boot memory in place",
        std::io::Error::last_os_error()
    );
    release_boot_memory();
}

/// Releases boot-only memory. Best effort: any failure leaves memory as it was.
pub fn release_boot_memory() {
    release_clean_code();
    // Last, after the buffers above are freed. SAFETY: malloc_trim only returns free heap
    // pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn release_clean_code() {
    let Ok(exe) = fs::read_link("/proc/self/exe") else {
        return;
    };
    let Ok(smaps) = fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    if let Some(stack) = stack_of(&smaps) {
        release_stack_below_here(stack);
    }
    for (start, end) in clean_mappings_of(&smaps, &exe.to_string_lossy()) {
        // SAFETY: the range is a private, read-only mapping of our executable that holds no
        // written (anonymous) page: dropping its PTEs loses nothing, the next access faults the
        // same bytes back in from the page cache.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
}

/// The main thread's stack mapping, from /proc/self/smaps.
fn stack_of(smaps: &str) -> Option<(usize, usize)> {
    let line = smaps.lines().find(|l| l.ends_with("[stack]"))?;
    let (start, end) = line.split_whitespace().next()?.split_once('-')?;
    Some((
        usize::from_str_radix(start, 16).ok()?,
        usize::from_str_radix(end, 16).ok()?,
    ))
}

/// The boot's deep call chains (argument parsing above all) touched stack pages the supervisor
/// never uses again: drop those well below the current frame. A later touch gets a zero page,
/// as an untouched stack page would.
#[inline(never)]
fn release_stack_below_here((start, end): (usize, usize)) {
    // Room for the frames this function and madvise(2) still need, and the red zone.
    const MARGIN: usize = 8 * 1024;
    let here = std::ptr::addr_of!(start) as usize;
    if !(start..end).contains(&here) {
        return; // not on the main thread's stack
    }
    let page = 4096;
    let top = (here.saturating_sub(MARGIN)) & !(page - 1);
    if top > start {
        // SAFETY: [start, top) lies below every live frame of this (the only) thread, with a
        // margin for the calls made from here; MADV_DONTNEED on private anonymous memory only
        // drops pages nobody reads.
        unsafe {
            libc::madvise(start as *mut libc::c_void, top - start, libc::MADV_DONTNEED);
        }
    }
}

/// Read-only mappings of `exe` with no anonymous (copied-on-write) page, from /proc/self/smaps.
fn clean_mappings_of(smaps: &str, exe: &str) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if let Some((start, end)) = first.split_once('-')
            && let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            )
        {
            let perms = fields.next().unwrap_or_default();
            let path = fields.nth(3).unwrap_or_default();
            let read_only = perms.starts_with('r') && perms.as_bytes().get(1) == Some(&b'-');
            current = (read_only && path == exe).then_some((start, end));
        } else if first == "Anonymous:"
            && let Some(range) = current.take()
            && fields.next() == Some("0")
        {
            found.push(range);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
00400000-00500000 r--p 00000000 fe:01 42 /bin/roadie
Rss:                 320 kB
Anonymous:             0 kB
00500000-00700000 r-xp 00100000 fe:01 42 /bin/roadie
Rss:                1552 kB
Anonymous:             0 kB
00700000-00710000 r--p 00300000 fe:01 42 /bin/roadie
Anonymous:            44 kB
00710000-00720000 rw-p 00310000 fe:01 42 /bin/roadie
Anonymous:            16 kB
00800000-00900000 r-xp 00000000 fe:01 43 /lib/other.so
Anonymous:             0 kB
";

    #[test]
    fn a_handoff_survives_its_own_argv() {
        let handoff = Handoff {
            pid: 4242,
            name: "uvicorn".into(),
            stop_grace: Duration::from_millis(2500),
            forward: ForwardPolicy {
                rewrites: vec![(15, 3), (1, 0)],
                group: true,
            },
            success_codes: vec![143, 3],
            log: Settings::parse("json", "debug").unwrap(),
        };
        let argv: Vec<OsString> = handoff
            .to_argv()
            .into_iter()
            .map(|c| OsString::from(c.to_str().unwrap()))
            .collect();
        assert_eq!(Handoff::from_args(&argv), Some(Ok(handoff.clone())));
        let empty = Handoff {
            forward: ForwardPolicy::default(),
            success_codes: vec![],
            ..handoff
        };
        let argv: Vec<OsString> = empty
            .to_argv()
            .into_iter()
            .map(|c| OsString::from(c.to_str().unwrap()))
            .collect();
        assert_eq!(Handoff::from_args(&argv), Some(Ok(empty)));
        assert_eq!(
            Handoff::from_args(&["roadie".into(), "uvicorn".into()]),
            None
        );
    }

    #[test]
    fn finds_the_stack() {
        let smaps = "7ffd0000-7ffd2000 rw-p 00000000 00:00 0 [stack]\nRss: 8 kB\n";
        assert_eq!(stack_of(smaps), Some((0x7ffd0000, 0x7ffd2000)));
        assert_eq!(stack_of(SMAPS), None);
    }

    #[test]
    fn only_clean_read_only_mappings_of_the_executable_are_released() {
        assert_eq!(
            clean_mappings_of(SMAPS, "/bin/roadie"),
            [(0x400000, 0x500000), (0x500000, 0x700000)]
        );
    }
}
