//! Every signal a process can catch reaches the app, rewritten or dropped as asked, and the app
//! starts with a clean signal state whatever roadie inherited.

use std::time::Duration;

use rstest::rstest;

use crate::support::postgres::{Postgres, ROADIE_PASSWORD};
use crate::support::server::Server as _;
use crate::support::{Mode, Running, app, roadie};

/// Everything forwarded except the two stop signals, which get tests of their own.
fn forwarded_non_stop_signals() -> Vec<i32> {
    let not_forwarded = [
        libc::SIGKILL,
        libc::SIGSTOP,
        libc::SIGCHLD,
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGFPE,
        libc::SIGILL,
        libc::SIGTRAP,
        libc::SIGSYS,
        libc::SIGINT,
        libc::SIGTERM,
    ];
    (1..=31)
        .filter(|s| !not_forwarded.contains(s))
        .chain(libc::SIGRTMIN()..=libc::SIGRTMAX())
        .collect()
}

#[rstest]
fn each_forwarded_signal_reaches_the_app(#[values(Mode::Subreaper, Mode::Pid1)] mode: Mode) {
    let recorder = app("recorder.py");
    let mut r = roadie(mode, ["python3", &recorder, "--exit-on", "15", "all"]).start();
    r.line_containing("ready");
    for signal in forwarded_non_stop_signals() {
        r.signal(signal);
        r.line_containing(&format!("got {signal}"));
    }
    r.signal(libc::SIGTERM);
    r.line_containing("got 15");
    r.finish().code(0);
}

#[rstest]
fn sigint_reaches_the_app(#[values(Mode::Subreaper, Mode::Pid1)] mode: Mode) {
    let recorder = app("recorder.py");
    let mut r = roadie(mode, ["python3", &recorder, "--exit-on", "2", "2"]).start();
    r.line_containing("ready");
    r.signal(libc::SIGINT);
    r.line_containing("got 2");
    r.finish().code(0);
}

#[rstest]
fn rewritten_signals_arrive_as_their_replacement_and_dropped_ones_not_at_all(
    #[values(Mode::Subreaper, Mode::Pid1)] mode: Mode,
    #[values(true, false)] from_env: bool,
) {
    let recorder = app("recorder.py");
    let mut args = vec![];
    if !from_env {
        args.extend(["--rewrite-signal", "USR1:USR2", "--rewrite-signal", "HUP:0"]);
    }
    args.extend(["python3", &recorder, "--exit-on", "3", "all"]);
    let mut builder = roadie(mode, args);
    if from_env {
        builder = builder.env("ROADIE_REWRITE_SIGNALS", "USR1:USR2,HUP:0");
    }
    let mut r = builder.start();
    r.line_containing("ready");
    r.signal(libc::SIGUSR1);
    assert_eq!(r.line_containing("got"), format!("got {}", libc::SIGUSR2));
    r.signal(libc::SIGHUP);
    r.no_line_within(Duration::from_millis(300));
    r.signal(libc::SIGWINCH);
    assert_eq!(r.line_containing("got"), format!("got {}", libc::SIGWINCH));
    r.signal(libc::SIGQUIT);
    r.line_containing("got 3");
    r.finish().code(0);
}

#[rstest]
fn term_rewritten_to_quit_stops_an_app_that_wants_quit(
    #[values(Mode::Subreaper, Mode::Pid1)] mode: Mode,
) {
    // nginx and unicorn stop gracefully on QUIT.
    let recorder = app("recorder.py");
    let mut r = roadie(
        mode,
        [
            "--rewrite-signal",
            "TERM:QUIT",
            "python3",
            &recorder,
            "--exit-on",
            "3",
            "3",
            "15",
        ],
    )
    .start();
    r.line_containing("ready");
    r.signal(libc::SIGTERM);
    assert_eq!(r.line_containing("got"), "got 3");
    r.finish().code(0);
}

#[rstest]
fn signal_group_reaches_a_grandchild(
    #[values(Mode::Subreaper, Mode::Pid1)] mode: Mode,
    #[values(true, false)] group: bool,
) {
    // The app (sh) traps USR1 and waits for its child, a recorder in its process group that
    // exits once it gets USR1 too: with --signal-group both see it, without only the app does.
    let recorder = app("recorder.py");
    let script =
        format!("trap 'echo app-usr1' USR1; python3 {recorder} --exit-on 10 10 & wait; wait");
    let mut args = vec!["sh", "-c", &script];
    if group {
        args.insert(0, "--signal-group");
    }
    let mut r = roadie(mode, args).start();
    r.line_containing("ready");
    r.signal(libc::SIGUSR1);
    if group {
        r.finish()
            .code(0)
            .stdout_has("app-usr1")
            .stdout_has("got 10");
    } else {
        r.line_containing("app-usr1");
        r.no_line_within(Duration::from_millis(300));
        r.signal(libc::SIGTERM);
        let finished = r.finish();
        finished.code(143);
        assert!(!finished.stdout.contains("got 10"), "{finished}");
    }
}

#[rstest]
fn the_app_starts_with_an_empty_mask_and_default_dispositions_whatever_roadie_inherited(
    #[values(Mode::Subreaper, Mode::Pid1)] mode: Mode,
) {
    let finished = roadie(mode, ["cat", "/proc/self/status"])
        .before_exec(|| {
            // SAFETY: sigprocmask and signal are async-signal-safe.
            unsafe {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                for s in [
                    libc::SIGTERM,
                    libc::SIGILL,
                    libc::SIGTTIN,
                    libc::SIGUSR1,
                    40,
                ] {
                    libc::sigaddset(&mut set, s);
                }
                libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                for s in [libc::SIGINT, libc::SIGTTOU, libc::SIGPIPE, libc::SIGHUP] {
                    libc::signal(s, libc::SIG_IGN);
                }
            }
            Ok(())
        })
        .run();
    finished
        .code(0)
        .stdout_has("SigBlk:\t0000000000000000")
        .stdout_has("SigIgn:\t0000000000000000");
}

#[rstest]
fn stdin_reaches_the_app(#[values(Mode::Subreaper, Mode::Pid1)] mode: Mode) {
    let finished = roadie(mode, ["cat"]).stdin(b"hello through roadie\n").run();
    finished.code(0);
    assert_eq!(finished.stdout, "hello through roadie\n", "{finished}");
}

/// Waits until roadie has re-executed itself as a handed-over supervisor (`__roadie-supervise`
/// in its argv) and returns its argv, NUL-separated as /proc shows it.
fn handed_over(r: &Running) -> String {
    let cmdline = format!("/proc/{}/cmdline", r.pid());
    let until = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let argv = std::fs::read_to_string(&cmdline).unwrap_or_default();
        if argv.contains("__roadie-supervise") {
            return argv;
        }
        if std::time::Instant::now() > until {
            r.fail("roadie never handed over to a fresh image");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[rstest]
fn once_the_app_settles_a_fresh_image_supervises_it_with_the_same_settings(
    #[values(Mode::Subreaper, Mode::Pid1)] mode: Mode,
) {
    // After 100 ms roadie re-executes itself to shed boot memory; nothing the user set may be
    // lost on the way: rewrites, the grace, success codes, the app's pid.
    let recorder = app("recorder.py");
    let mut r = roadie(
        mode,
        [
            "--rewrite-signal",
            "USR1:USR2",
            "--success-exit-code",
            "137",
            "python3",
            &recorder,
            "all",
        ],
    )
    .start();
    r.line_containing("ready");
    handed_over(&r);
    r.signal(libc::SIGUSR1);
    assert_eq!(r.line_containing("got"), format!("got {}", libc::SIGUSR2));
    // The recorder handles TERM (prints, keeps running): the second TERM kills it at once, and
    // the 137 that gives is a --success-exit-code.
    r.signal(libc::SIGTERM);
    r.line_containing("got 15");
    r.signal(libc::SIGTERM);
    r.finish().code(0).stderr_has("second stop signal");
}

#[test]
fn the_handed_over_supervisor_keeps_the_name_roadie() {
    let mut r = roadie(
        Mode::Subreaper,
        ["--", "sh", "-c", "echo ready; exec sleep 30"],
    )
    .start();
    r.line_containing("ready");
    handed_over(&r);
    let until = std::time::Instant::now() + Duration::from_secs(10);
    let read = |what: &str| {
        std::fs::read_to_string(format!("/proc/{}/{what}", r.pid())).unwrap_or_default()
    };
    // comm is what top and pgrep show; an execve of /proc/self/exe makes it "exe" until the
    // fresh image renames itself, a moment after the execve.
    while read("comm").trim() != "roadie" {
        if std::time::Instant::now() > until {
            r.fail(&format!(
                "the supervisor is named {:?}",
                read("comm").trim()
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    r.signal(libc::SIGTERM);
    r.finish().code(143);
}

#[test]
fn the_handed_over_supervisor_s_argv_holds_no_database_url_nor_password() {
    // The URL given as a flag is in roadie's own argv until the handoff replaces it: the fresh
    // image's argv (what `ps` shows) carries the app's name and settings, never the URL.
    let pg = Postgres::started();
    let url = pg.app_url();
    let mut r = roadie(
        Mode::Subreaper,
        [
            "--database-url",
            &url,
            "--",
            "sh",
            "-c",
            "echo ready; exec sleep 30",
        ],
    )
    .start();
    r.line_containing("ready");
    let argv = handed_over(&r);
    for secret in [ROADIE_PASSWORD, &url, "postgres://"] {
        if argv.contains(secret) {
            r.fail(&format!("the supervisor's argv {argv:?} holds {secret:?}"));
        }
    }
    if !argv.contains(r#""name":"sh""#) {
        r.fail(&format!(
            "the supervisor's argv {argv:?} lacks the app's name"
        ));
    }
    r.signal(libc::SIGTERM);
    r.finish().code(143);
}

#[rstest]
#[case::no_argument(&[])]
#[case::not_json(&["4242 2500 1 r c text info sh"])]
#[case::a_missing_field(&[r#"{"pid":1}"#])]
fn a_malformed_handoff_argument_exits_70_on_one_line_naming_it(#[case] after: &[&str]) {
    let mut args = vec!["__roadie-supervise"];
    args.extend(after);
    let finished = roadie(Mode::Subreaper, args).run();
    finished.code(70).stderr_has(
        "internal error while resuming supervision: malformed __roadie-supervise argument",
    );
    assert_eq!(finished.stderr.lines().count(), 1, "{finished}");
    assert_eq!(finished.stdout, "", "{finished}");
}
