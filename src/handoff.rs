//! The handoff: once the app has settled, the boot hands the supervision to a fresh image of
//! roadie (`execve`: same pid, same children, signals still blocked and pending), so nothing the
//! boot touched stays resident: argument parsing, the database stages, their runtime. The
//! protocol (argv[1] = `MARK`, argv[2] the `Handoff` as JSON, read by serde_json) lives only
//! here: `settle` writes it, `main` reads it with `Handoff::from_args` and `resume`s. Should the
//! execve fail, the boot's pages are released in place: only clean file-backed pages and
//! unused stack, which come back on demand.

use std::ffi::{CString, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::debug;

use crate::error::BootError;
use crate::logging::{self, Phase, Settings};
use crate::signals::{ForwardPolicy, SignalSource};
use crate::supervise::{self, Supervision};

/// argv[1] of a handed-over supervisor: no user types it (a command of that name is reachable
/// with `roadie run -- ...`).
const MARK: &str = "__roadie-supervise";

/// What a supervisor needs once the app runs. It travels as one JSON argument after `MARK`,
/// which `ps` shows: nothing in it is a secret (no database URL, no password; the app's
/// arguments stay out too, only its name is there).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "Wire", try_from = "Wire")]
pub struct Handoff {
    pub pid: libc::pid_t,
    pub name: String,
    pub stop_grace: Duration,
    pub forward: ForwardPolicy,
    pub success_codes: Vec<u8>,
    pub log: Settings,
}

/// The JSON form of a `Handoff`: the settings as the flags spell them.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    pid: libc::pid_t,
    name: String,
    stop_grace: Duration,
    rewrite_signals: Vec<(libc::c_int, libc::c_int)>,
    signal_group: bool,
    success_codes: Vec<u8>,
    log_format: String,
    log_level: String,
}

impl From<Handoff> for Wire {
    fn from(handoff: Handoff) -> Self {
        let (format, level) = handoff.log.as_args();
        Wire {
            pid: handoff.pid,
            name: handoff.name,
            stop_grace: handoff.stop_grace,
            rewrite_signals: handoff.forward.rewrites,
            signal_group: handoff.forward.group,
            success_codes: handoff.success_codes,
            log_format: format.to_string(),
            log_level: level,
        }
    }
}

impl TryFrom<Wire> for Handoff {
    type Error = String;

    fn try_from(wire: Wire) -> Result<Self, String> {
        Ok(Handoff {
            pid: wire.pid,
            name: wire.name,
            stop_grace: wire.stop_grace,
            forward: ForwardPolicy {
                rewrites: wire.rewrite_signals,
                group: wire.signal_group,
            },
            success_codes: wire.success_codes,
            log: Settings::parse(&wire.log_format, &wire.log_level)?,
        })
    }
}

impl Handoff {
    pub(crate) fn to_argv(&self) -> [CString; 3] {
        let json = serde_json::to_string(self).expect("UNWRAP: a Handoff always serializes");
        [
            c"roadie".to_owned(),
            CString::new(MARK).expect("UNWRAP: MARK holds no NUL"),
            // JSON writes a NUL in a string as \u0000: the name keeps it, argv never sees it.
            CString::new(json).expect("UNWRAP: JSON escapes control characters"),
        ]
    }

    /// The handoff in roadie's own argv, if this image is a handed-over supervisor; an error
    /// names `MARK` and says what is wrong with the argument after it.
    pub fn from_args(args: &[OsString]) -> Option<Result<Self, String>> {
        if args.get(1).map(|a| a.as_bytes()) != Some(MARK.as_bytes()) {
            return None;
        }
        Some(match &args[2..] {
            [json] => serde_json::from_slice(json.as_bytes())
                .map_err(|e| format!("malformed {MARK} argument: {e}")),
            other => Err(format!(
                "malformed {MARK} arguments: expected one JSON argument, got {}",
                other.len()
            )),
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
    use std::os::unix::ffi::OsStringExt;

    use rstest::rstest;

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

    fn handoff() -> Handoff {
        Handoff {
            pid: 4242,
            name: "uvicorn".into(),
            stop_grace: Duration::from_millis(2500),
            forward: ForwardPolicy {
                rewrites: vec![(15, 3), (1, 0)],
                group: true,
            },
            success_codes: vec![143, 3],
            log: Settings::parse("json", "debug").expect("UNWRAP: valid settings"),
        }
    }

    /// argv as the fresh image reads it back.
    fn argv_of(handoff: &Handoff) -> Vec<OsString> {
        handoff
            .to_argv()
            .into_iter()
            .map(|c| OsString::from_vec(c.into_bytes()))
            .collect()
    }

    #[rstest]
    #[case::as_boot_writes_it(handoff())]
    #[case::nothing_to_forward_nor_to_accept(Handoff {
        forward: ForwardPolicy::default(),
        success_codes: vec![],
        ..handoff()
    })]
    #[case::text_at_error(Handoff { log: Settings::parse("text", "error").unwrap(), ..handoff() })]
    #[case::trace(Handoff { log: Settings::parse("text", "trace").unwrap(), ..handoff() })]
    #[case::a_grace_under_a_millisecond(Handoff {
        stop_grace: Duration::from_nanos(1_500_001),
        ..handoff()
    })]
    #[case::extreme_numbers(Handoff {
        pid: libc::pid_t::MAX,
        stop_grace: Duration::MAX,
        forward: ForwardPolicy { rewrites: vec![(libc::c_int::MIN, libc::c_int::MAX)], group: false },
        success_codes: vec![0, 255],
        ..handoff()
    })]
    #[case::a_name_with_a_nul(Handoff { name: "a\0b".into(), ..handoff() })]
    #[case::a_name_in_the_old_argv_s_syntax(Handoff { name: "r15:3,c143 json".into(), ..handoff() })]
    #[case::a_name_of_json(Handoff { name: r#"{"pid":1}\" \\ \n"#.into(), ..handoff() })]
    #[case::a_name_that_is_the_mark(Handoff { name: MARK.into(), ..handoff() })]
    #[case::an_empty_name(Handoff { name: String::new(), ..handoff() })]
    #[case::a_unicode_name(Handoff { name: "gunicorn \u{1F680} \u{e9}".into(), ..handoff() })]
    fn a_handoff_survives_its_own_argv(#[case] handoff: Handoff) {
        let argv = argv_of(&handoff);
        assert_eq!(argv.len(), 3, "{argv:?}");
        assert_eq!(argv[1], MARK, "ps shows the mark as argv[1]");
        assert_eq!(Handoff::from_args(&argv), Some(Ok(handoff)));
    }

    #[rstest]
    #[case::no_arguments(&[])]
    #[case::roadie_alone(&["roadie"])]
    #[case::a_user_s_command(&["roadie", "uvicorn", "app:app"])]
    #[case::run_dash_dash(&["roadie", "run", "--", MARK])]
    fn an_argv_without_the_mark_is_no_handoff(#[case] argv: &[&str]) {
        let argv: Vec<OsString> = argv.iter().map(OsString::from).collect();
        assert_eq!(Handoff::from_args(&argv), None);
    }

    #[rstest]
    #[case::no_argument(vec![], "expected one JSON argument, got 0")]
    #[case::the_old_positional_form(
        ["4242", "2500", "1", "r15:3", "c143", "json", "debug", "uvicorn"].map(OsString::from).to_vec(),
        "expected one JSON argument, got 8"
    )]
    #[case::two_arguments(vec![json().into(), json().into()], "expected one JSON argument, got 2")]
    #[case::empty(vec!["".into()], "EOF while parsing")]
    #[case::not_json(vec!["4242".into()], "invalid type: integer")]
    #[case::cut_short(vec![json()[..20].into()], "EOF while parsing")]
    #[case::a_missing_field(vec![json().replace(r#""pid":4242,"#, "").into()], "missing field `pid`")]
    #[case::an_unknown_field(vec![json().replace(r#""pid":4242"#, r#""pid":4242,"url":"x""#).into()], "unknown field `url`")]
    #[case::a_code_over_255(vec![json().replace("[143,3]", "[300]").into()], "invalid value: integer `300`")]
    #[case::a_negative_grace(vec![json().replace(r#""secs":2"#, r#""secs":-2"#).into()], "invalid value")]
    #[case::a_level_roadie_does_not_know(vec![json().replace(r#""debug""#, r#""loud""#).into()], "loud")]
    #[case::not_utf_8(vec![OsString::from_vec(vec![b'{', 0xff, b'}'])], "line 1 column")]
    fn a_malformed_handoff_is_an_error_naming_the_mark(
        #[case] after_mark: Vec<OsString>,
        #[case] says: &str,
    ) {
        let mut argv: Vec<OsString> = vec!["roadie".into(), MARK.into()];
        argv.extend(after_mark);
        let error = Handoff::from_args(&argv)
            .expect("the mark makes it a handoff")
            .expect_err("malformed");
        assert!(
            error.starts_with(&format!("malformed {MARK} argument")),
            "{error}"
        );
        assert!(error.contains(says), "{error:?} lacks {says:?}");
        assert!(!error.contains('\n'), "one line: {error:?}");
    }

    /// The JSON argument of `handoff()`.
    fn json() -> String {
        argv_of(&handoff())[2].to_string_lossy().into_owned()
    }

    #[test]
    fn the_argument_is_the_json_the_malformed_cases_edit() {
        assert_eq!(
            json(),
            r#"{"pid":4242,"name":"uvicorn","stop_grace":{"secs":2,"nanos":500000000},"rewrite_signals":[[15,3],[1,0]],"signal_group":true,"success_codes":[143,3],"log_format":"json","log_level":"debug"}"#
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
