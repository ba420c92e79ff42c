//! Stopping: a stop signal is forwarded, the app and everything it left get --stop-grace, then
//! SIGKILL; a second stop signal kills at once; roadie exits only when all of it is gone.

use std::time::{Duration, Instant};

use rstest::rstest;

use crate::support::{Mode, alive, roadie, scratch};

const IGNORES_TERM: &str = "trap '' TERM; echo ready; while :; do sleep 1; done";

#[rstest]
fn an_app_that_handles_term_exits_with_its_own_code(
    #[values(Mode::Subreaper, Mode::Pid1)] mode: Mode,
) {
    let script = "trap 'echo stopping; exit 0' TERM; echo ready; while :; do sleep 0.05; done";
    let mut r = roadie(mode, ["sh", "-c", script]).start();
    r.line_containing("ready");
    r.signal(libc::SIGTERM);
    r.line_containing("stopping");
    r.finish().code(0).stderr_lacks("sending SIGKILL");
}

#[rstest]
fn an_app_ignoring_term_is_killed_after_the_grace(
    #[values(Mode::Subreaper, Mode::Pid1)] mode: Mode,
) {
    let mut r = roadie(mode, ["--stop-grace", "500ms", "sh", "-c", IGNORES_TERM]).start();
    r.line_containing("ready");
    let sent = Instant::now();
    r.signal(libc::SIGTERM);
    let finished = r.finish();
    finished
        .code(137)
        .stderr_has("stop grace of 500ms over: sending SIGKILL");
    assert!(sent.elapsed() >= Duration::from_millis(500), "{finished}");
}

#[rstest]
fn a_second_stop_signal_kills_at_once(
    #[values(Mode::Subreaper, Mode::Pid1)] mode: Mode,
    #[values(libc::SIGTERM, libc::SIGINT)] second: i32,
) {
    let mut r = roadie(mode, ["--stop-grace", "60s", "sh", "-c", IGNORES_TERM]).start();
    r.line_containing("ready");
    r.signal(libc::SIGTERM);
    r.stderr_containing("SIGTERM received");
    r.signal(second);
    r.finish_within(Duration::from_secs(10))
        .code(137)
        .stderr_has("second stop signal");
}

#[rstest]
fn what_the_app_leaves_behind_gets_term_and_time_to_clean_up(
    #[values(Mode::Subreaper, Mode::Pid1)] mode: Mode,
) {
    // The leftover needs 0.5 s after TERM; roadie waits for it instead of exiting with the app
    // (tini #180). As PID 1, exiting early would kill it before it printed.
    let script = "(trap 'sleep 0.5; echo cleanup-done; exit 0' TERM; echo bg-ready; \
                  while :; do sleep 0.05; done) & sleep 0.3; exit 5";
    let finished = roadie(mode, ["--log-level", "debug", "sh", "-c", script]).run();
    finished
        .code(5)
        .stdout_has("cleanup-done")
        .stderr_has("sent SIGTERM to what it left behind")
        .stderr_lacks("sending SIGKILL");
    assert!(finished.elapsed >= Duration::from_millis(800), "{finished}");
}

#[rstest]
fn leftovers_ignoring_term_are_killed_after_the_grace(
    #[values(Mode::Subreaper, Mode::Pid1)] mode: Mode,
) {
    // The app exits only once its leftover ignores TERM (a file says so).
    let dir = scratch();
    let ready = dir.path().join("ready");
    let script = format!(
        "(trap '' TERM; touch {ready}; exec sleep 300) & \
         until [ -e {ready} ]; do sleep 0.01; done; echo \"leftover $!\"; exit 3",
        ready = ready.display()
    );
    let mut r = roadie(mode, ["--stop-grace", "500ms", "sh", "-c", &script]).start();
    let leftover: i32 = r
        .line_containing("leftover")
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let finished = r.finish();
    finished
        .code(3)
        .stderr_has("sending SIGKILL to what is left");
    assert!(finished.elapsed >= Duration::from_millis(500), "{finished}");
    if mode == Mode::Subreaper {
        // As PID 1 the pid is the namespace's; here it is ours to check.
        assert!(!alive(leftover), "leftover {leftover} survived\n{finished}");
    }
}

#[rstest]
fn a_stop_signal_reaches_the_app_and_its_children_are_seen_out(
    #[values(Mode::Subreaper, Mode::Pid1)] mode: Mode,
) {
    // docker stop on `sh -c "worker & wait"`: sh dies of TERM, its worker is TERMed as a leftover.
    let script = "sleep 300 & echo ready; wait";
    let mut r = roadie(mode, ["sh", "-c", script]).start();
    r.line_containing("ready");
    r.signal(libc::SIGTERM);
    r.finish_within(Duration::from_secs(5))
        .code(143)
        .stderr_lacks("sending SIGKILL");
}
