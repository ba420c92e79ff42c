//! Orphans are reaped, however many and however close together they exit.

use rstest::rstest;

use crate::support::{Mode, app, roadie};

#[rstest]
fn a_hundred_orphaned_grandchildren_are_reaped(#[values(Mode::Subreaper, Mode::Pid1)] mode: Mode) {
    let orphans = app("orphans.py");
    roadie(mode, ["python3", &orphans, "100", "0.3"])
        .run()
        .code(0)
        .stdout_has("orphans=100 left=0");
}

#[rstest]
fn a_burst_of_simultaneous_exits_leaves_no_zombie(
    #[values(Mode::Subreaper, Mode::Pid1)] mode: Mode,
) {
    // 300 orphans exit within the same instant: their SIGCHLDs coalesce into a few.
    let orphans = app("orphans.py");
    roadie(mode, ["python3", &orphans, "300", "1.0"])
        .run()
        .code(0)
        .stdout_has("orphans=300 left=0");
}

#[rstest]
fn orphans_are_logged_at_debug_only(#[values(Mode::Subreaper, Mode::Pid1)] mode: Mode) {
    let script = "(sleep 0.1 &) ; sleep 0.4";
    roadie(mode, ["--log-level", "debug", "sh", "-c", script])
        .run()
        .code(0)
        .stderr_has("reaped orphan");
    roadie(mode, ["sh", "-c", script])
        .run()
        .code(0)
        .stderr_lacks("orphan");
}

#[test]
fn not_being_pid_1_is_no_reason_to_warn() {
    roadie(Mode::Subreaper, ["true"])
        .run()
        .code(0)
        .stderr_lacks("WARN")
        .stderr_lacks("subreaper");
}
