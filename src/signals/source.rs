//! Delivery of signals to roadie: every handled signal is blocked from the first line of `main`
//! and read from a signalfd. Blocked signals stay queued even for PID 1 (the kernel discards only
//! signals that are neither blocked nor handled), no handler ever runs, and waiting is one
//! blocking poll: no thread, no timer, no idle wake-up.

use std::io;
use std::mem::{MaybeUninit, size_of};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Instant;

use libc::c_int;

/// One signal taken off the queue.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub signal: c_int,
    /// Sender's pid as seen from roadie's namespace (0 for the kernel or another namespace).
    pub sender: u32,
    /// `si_code`: `SI_USER` for kill(2), `SI_KERNEL` for the tty and the kernel, ...
    pub code: i32,
}

impl Received {
    /// A signal roadie raised on itself, e.g. SIGPIPE or SIGXFSZ from its own write: never
    /// meant for the app.
    pub fn is_self_raised(&self) -> bool {
        self.code == libc::SI_USER && self.sender == std::process::id()
    }
}

pub struct SignalSource {
    fd: OwnedFd,
}

impl SignalSource {
    /// Blocks every handled signal and opens the signalfd that receives them.
    ///
    /// Must run before any thread exists: threads inherit the mask, and the kernel delivers a
    /// process-directed signal to any thread that does not block it, default action included.
    pub fn install() -> io::Result<Self> {
        let set = sigset(super::handled());
        // SAFETY: `set` is an initialised sigset_t; a null old-set pointer is allowed.
        check(unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) })
            .map_err(|e| io::Error::new(e.kind(), format!("blocking signals: {e}")))?;
        // SAFETY: -1 asks for a new descriptor; the flags are valid for signalfd(2).
        let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("opening a signalfd: {e}")));
        }
        // SAFETY: signalfd returned a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(SignalSource { fd })
    }

    /// Waits for the next signal, or until `deadline` passes (`None`: wait for ever).
    /// Returns `None` at the deadline.
    pub fn next(&mut self, deadline: Option<Instant>) -> io::Result<Option<Received>> {
        loop {
            if let Some(received) = self.try_read()? {
                return Ok(Some(received));
            }
            let timeout_ms = match deadline {
                None => -1,
                Some(at) => {
                    let left = at.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(None);
                    }
                    // Round up so the deadline has passed when poll returns.
                    left.as_micros().div_ceil(1000).min(c_int::MAX as u128) as c_int
                }
            };
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }

    /// Takes the next queued signal without waiting.
    pub fn try_read(&self) -> io::Result<Option<Received>> {
        let mut info = MaybeUninit::<libc::signalfd_siginfo>::uninit();
        let size = size_of::<libc::signalfd_siginfo>();
        // SAFETY: reads at most `size` bytes into `info`.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), info.as_mut_ptr().cast(), size) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(e),
            };
        }
        assert_eq!(
            n as usize, size,
            "UNWRAP: signalfd reads whole siginfo records"
        );
        // SAFETY: the kernel filled the whole record.
        let info = unsafe { info.assume_init() };
        Ok(Some(Received {
            signal: info.ssi_signo as c_int,
            sender: info.ssi_pid,
            code: info.ssi_code,
        }))
    }
}

impl AsFd for SignalSource {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn sigset(signals: impl Iterator<Item = c_int>) -> libc::sigset_t {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set; sigaddset takes valid signal numbers.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        for s in signals {
            libc::sigaddset(set.as_mut_ptr(), s);
        }
        set.assume_init()
    }
}

fn check(ret: c_int) -> io::Result<()> {
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(ret))
    }
}

/// Gives a forked child the signal state of a fresh process: every disposition at its default
/// and an empty mask, whatever roadie inherited or set (catatonit leaks its blocked TSTP/TTIN/
/// TTOU into the app). Async-signal-safe: runs between fork and exec.
pub fn reset_for_exec() -> io::Result<()> {
    for s in 1..=libc::SIGRTMAX() {
        if s == libc::SIGKILL || s == libc::SIGSTOP {
            continue;
        }
        // The raw system call, because glibc's sigaction refuses 32 and 33 (its own), and an
        // inherited "ignore" on those would otherwise reach the app (seen under the test runner).
        let default = KernelSigaction {
            handler: libc::SIG_DFL,
            flags: 0,
            restorer: 0,
            mask: 0,
        };
        // SAFETY: a valid kernel sigaction for this architecture's rt_sigaction(2); the old
        // action is not asked for. Errors (none expected) leave that signal as it was.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                s,
                &default,
                std::ptr::null_mut::<KernelSigaction>(),
                size_of::<u64>(),
            );
        }
    }
    let empty = sigset(std::iter::empty());
    // SAFETY: valid set; this thread is the only one in the forked child.
    check(unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) })
}

/// `struct sigaction` as the kernel takes it on x86_64 and aarch64 (both have sa_restorer).
#[repr(C)]
struct KernelSigaction {
    handler: libc::sighandler_t,
    flags: u64,
    restorer: usize,
    mask: u64,
}
