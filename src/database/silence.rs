//! Client-side silence bounds on every TCP socket roadie holds to a database: keepalives on an
//! idle socket and `TCP_USER_TIMEOUT` on one with data in flight, so that a network that goes
//! silent (a partition, a host that vanished) fails roadie's own query within
//! [`CLIENT_SILENCE`], before the server gives up on roadie's session and frees its lock
//! (`SERVER_SILENCE`, set by the server-side keepalives of `postgres.rs`). sqlx exposes no
//! socket option, so they are set on roadie's own sockets, found in `/proc/self/fd`, after each
//! connect: at boot the process holds no socket but roadie's (its children are processes of
//! their own).

use std::os::fd::BorrowedFd;
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, TcpKeepalive, Type};

/// A socket idle this long is probed, then every `PROBE_EVERY`, `PROBES` times.
const IDLE: Duration = Duration::from_secs(2);
const PROBE_EVERY: Duration = Duration::from_secs(1);
const PROBES: u32 = 3;

/// The longest a silent network goes unnoticed by roadie: an idle socket is given up after
/// `IDLE` + `PROBES` x `PROBE_EVERY`; one with data unacknowledged after this long.
pub const CLIENT_SILENCE: Duration = Duration::from_secs(5);

/// Whether `e` is a socket giving up on a silent network (a keepalive or `TCP_USER_TIMEOUT`
/// expiring: ETIMEDOUT).
pub fn gave_up(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut)
}

/// Sets the bounds on every TCP socket of the process (idempotent: a socket already bounded
/// is bounded again). Errors are of no use here: a socket that refuses keeps the kernel's
/// defaults, and roadie's query bound still holds.
pub fn bound_own_sockets() {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let keepalive = TcpKeepalive::new()
        .with_time(IDLE)
        .with_interval(PROBE_EVERY)
        .with_retries(PROBES);
    for fd in entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
    {
        // SAFETY: the descriptor is only borrowed for the socket-option calls below; it is
        // one of roadie's own (read from /proc/self/fd just now), and one closed meanwhile
        // makes the calls fail with EBADF, which is ignored.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = SockRef::from(&fd);
        let tcp = matches!(socket.r#type(), Ok(Type::STREAM))
            && matches!(socket.domain(), Ok(d) if d == Domain::IPV4 || d == Domain::IPV6)
            && matches!(socket.protocol(), Ok(Some(Protocol::TCP)) | Ok(None));
        if !tcp {
            continue;
        }
        let _ = socket.set_tcp_keepalive(&keepalive);
        let _ = socket.set_tcp_user_timeout(Some(CLIENT_SILENCE));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shortest a silent network goes unnoticed by the server (`postgres::SERVER_BOUNDS`:
    /// keepalives 5 s + 3 x 2 s, `tcp_user_timeout` 11 s).
    const SERVER_SILENCE: Duration = Duration::from_secs(11);

    /// roadie's bound is shorter by a margin of at least 5 s, so a holder cut off has failed
    /// its own query before the server frees its lock.
    #[test]
    fn roadies_bound_is_shorter_than_the_servers_by_a_margin() {
        assert!(IDLE + PROBE_EVERY * PROBES <= CLIENT_SILENCE);
        assert!(CLIENT_SILENCE + Duration::from_secs(5) <= SERVER_SILENCE);
    }

    #[test]
    fn a_connected_socket_gets_keepalives_and_a_user_timeout() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let stream =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        bound_own_sockets();
        let socket = SockRef::from(&stream);
        assert!(socket.keepalive().expect("SO_KEEPALIVE"));
        assert_eq!(socket.tcp_keepalive_time().expect("TCP_KEEPIDLE"), IDLE);
        assert_eq!(
            socket.tcp_user_timeout().expect("TCP_USER_TIMEOUT"),
            Some(CLIENT_SILENCE)
        );
    }
}
