//! A DNS server on a loopback address of its own (127.53.x.y:53, UDP) that answers one name,
//! NXDOMAIN until told otherwise, then 127.0.0.1; and counts the lookups of that name. A
//! roadie started with `private_resolv_conf` asks it, and only it: its /etc/resolv.conf is
//! bind-mounted over, in a mount namespace of its own, so the machine's is never touched.

use std::ffi::CString;
use std::net::{Ipv4Addr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub struct Dns {
    pub address: Ipv4Addr,
    resolves: Arc<AtomicBool>,
    /// Off: the name's queries get no answer at all (a resolver that is gone).
    answers: Arc<AtomicBool>,
    /// When each A query for the name came.
    lookups: Arc<Mutex<Vec<Instant>>>,
    stop: Arc<AtomicBool>,
}

impl Dns {
    /// Answers `name` (lower case, no trailing dot): NXDOMAIN until `resolve()`.
    pub fn start(name: &str) -> Self {
        let (socket, address) = (0..50)
            .find_map(|_| {
                let address = Ipv4Addr::new(127, 53, fastrand::u8(..), fastrand::u8(1..));
                UdpSocket::bind((address, 53)).ok().map(|s| (s, address))
            })
            .expect("a free 127.53.x.y:53");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let resolves = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(AtomicBool::new(true));
        let lookups = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, a, l, s, name) = (
            Arc::clone(&resolves),
            Arc::clone(&answers),
            Arc::clone(&lookups),
            Arc::clone(&stop),
            name.to_string(),
        );
        thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !s.load(Ordering::SeqCst) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let Some((qname, qtype, question_end)) = question(&buf[..n]) else {
                    continue;
                };
                if qname != name {
                    let _ = socket.send_to(&reply(&buf[..question_end], 3, None), from);
                    continue;
                }
                if qtype == 1 {
                    l.lock().unwrap().push(Instant::now());
                }
                if !a.load(Ordering::SeqCst) {
                    continue;
                }
                let answer = match (r.load(Ordering::SeqCst), qtype) {
                    (false, _) => reply(&buf[..question_end], 3, None),
                    (true, 1) => reply(&buf[..question_end], 0, Some([127, 0, 0, 1])),
                    (true, _) => reply(&buf[..question_end], 0, None),
                };
                let _ = socket.send_to(&answer, from);
            }
        });
        Dns {
            address,
            resolves,
            answers,
            lookups,
            stop,
        }
    }

    /// From now on the name resolves to 127.0.0.1.
    pub fn resolve(&self) {
        self.resolves.store(true, Ordering::SeqCst);
    }

    /// From now on the name's queries get no answer: a lookup waits out the resolver's
    /// timeouts (glibc: 5 s, twice).
    pub fn go_silent(&self) {
        self.answers.store(false, Ordering::SeqCst);
    }

    /// When each lookup (A query) of the name came, so far.
    pub fn lookups(&self) -> Vec<Instant> {
        self.lookups.lock().unwrap().clone()
    }

    /// A `before_exec` hook: a mount namespace of its own whose /etc/resolv.conf names only
    /// this server (written to `dir`).
    pub fn private_resolv_conf(
        &self,
        dir: &Path,
    ) -> impl FnMut() -> std::io::Result<()> + Send + Sync + 'static {
        let file = dir.join("resolv.conf");
        std::fs::write(&file, format!("nameserver {}\n", self.address)).expect("resolv.conf");
        let source = CString::new(file.to_string_lossy().as_bytes()).expect("path");
        let target = CString::new("/etc/resolv.conf").unwrap();
        let root = CString::new("/").unwrap();
        move || {
            // SAFETY: unshare and mount are async-signal-safe system calls; the strings were
            // made before the fork.
            unsafe {
                if libc::unshare(libc::CLONE_NEWNS) != 0
                    || libc::mount(
                        std::ptr::null(),
                        root.as_ptr(),
                        std::ptr::null(),
                        libc::MS_REC | libc::MS_PRIVATE,
                        std::ptr::null(),
                    ) != 0
                    || libc::mount(
                        source.as_ptr(),
                        target.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND,
                        std::ptr::null(),
                    ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        }
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The query's name (lower case), type, and where its question ends.
fn question(packet: &[u8]) -> Option<(String, u16, usize)> {
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = *packet.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(packet.get(at..at + len)?).to_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*packet.get(at)?, *packet.get(at + 1)?]);
    Some((labels.join("."), qtype, at + 4))
}

/// The answer to `query` (header and question): `rcode`, and an A record when given.
fn reply(query: &[u8], rcode: u8, a: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = query.to_vec();
    out[2] = 0x80 | (query[2] & 0x01); // QR, and RD as asked
    out[3] = 0x80 | rcode; // RA
    out[4..6].copy_from_slice(&1u16.to_be_bytes()); // one question
    out[6..8].copy_from_slice(&u16::from(a.is_some()).to_be_bytes());
    out[8..12].fill(0);
    if let Some(address) = a {
        out.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4]);
        out.extend_from_slice(&address);
    }
    out
}
