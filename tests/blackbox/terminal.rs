//! With a terminal on stdin the app gets its own process group and the terminal's foreground:
//! an interactive shell has job control, Ctrl-C reaches the app, and roadie, now in the
//! background, is never stopped by the terminal (TOSTOP is on in these tests).

use rstest::rstest;

use crate::support::Mode;
use crate::support::terminal::OnTerminal;

#[rstest]
fn an_interactive_shell_gets_job_control(#[values(Mode::Subreaper, Mode::Pid1)] mode: Mode) {
    let mut t = OnTerminal::start(mode, &["bash", "--norc", "--noprofile", "-i"]);
    t.type_in(b"echo \"flags=[$-]\"\n");
    // The typed line is echoed (by the terminal, then by readline); the answer follows.
    let answer = loop {
        t.shows("flags=[");
        let answer = t.shows("]");
        if answer != "$-]" {
            break answer;
        }
    };
    assert!(answer.contains('m'), "no job control: flags {answer:?}");
    let before = t.seen.clone();
    assert!(!before.contains("no job control"), "{before}");
    t.type_in(b"exit 7\n");
    assert_eq!(t.exit_code(), 7);
}

#[rstest]
fn ctrl_c_reaches_the_app_and_gives_130(#[values(Mode::Subreaper, Mode::Pid1)] mode: Mode) {
    let mut t = OnTerminal::start(
        mode,
        &["sh", "-c", "echo app-ready; while :; do sleep 0.1; done"],
    );
    t.shows("app-ready");
    t.type_in(b"\x03");
    assert_eq!(t.exit_code(), 130);
}

#[rstest]
fn a_debug_shell_skips_the_boot_and_gets_the_terminal(
    #[values(Mode::Subreaper, Mode::Pid1)] mode: Mode,
) {
    // The database does not exist: a boot would wait for it; a debug shell must not.
    let unreachable = format!(
        "postgres://app:pw@127.0.0.1:{}/app",
        crate::support::postgres::free_port()
    );
    let mut t = OnTerminal::start(
        mode,
        &[
            "--database-url",
            &unreachable,
            "bash",
            "--norc",
            "--noprofile",
            "-i",
        ],
    );
    t.shows("is an interactive shell: skipping wait, migrations and hooks");
    t.type_in(b"echo \"flags=[$-]\"\n");
    let answer = loop {
        t.shows("flags=[");
        let answer = t.shows("]");
        if answer != "$-]" {
            break answer;
        }
    };
    assert!(answer.contains('m'), "no job control: flags {answer:?}");
    t.type_in(b"exit 5\n");
    assert_eq!(t.exit_code(), 5);
}
