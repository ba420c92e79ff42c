//! Stop signals while roadie's async stages run (wait, migrate): no app is running yet, so a
//! stop request ends the stage and every other signal is dropped.

use std::io;
use std::os::fd::AsFd;

use libc::c_int;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tracing::debug;

use super::{ForwardPolicy, Role, SignalSource};

/// Resolves with the first stop signal (TERM or INT, as `ForwardPolicy` decides).
pub async fn stop_requested(signals: &SignalSource, policy: &ForwardPolicy) -> io::Result<c_int> {
    // SAFETY: the descriptor is borrowed from `signals`, which outlives this AsyncFd.
    let fd = unsafe { AsyncFd::register_with_interest(signals.as_fd(), Interest::READABLE) }
        .map_err(io::Error::from)?;
    loop {
        let mut ready = fd.readable().await?;
        while let Some(received) = signals.try_read()? {
            if super::role(received.signal) != Role::Forward || received.is_self_raised() {
                continue;
            }
            if policy.is_stop_request(received.signal) {
                return Ok(received.signal);
            }
            debug!(
                "SIG{} dropped: no app is running yet",
                super::name(received.signal)
            );
        }
        ready.clear_ready();
    }
}
