//! roadie exits with the app's code, 128+S for a death by signal, and its own documented codes.

use rstest::rstest;

use std::os::unix::fs::PermissionsExt;

use crate::support::{Mode, roadie, scratch};

#[rstest]
fn every_exit_code_from_0_to_255_passes_through(#[values(Mode::Subreaper, Mode::Pid1)] mode: Mode) {
    // One roadie per code, a few at a time.
    let codes: Vec<i32> = (0..=255).collect();
    for chunk in codes.chunks(16) {
        let running: Vec<_> = chunk
            .iter()
            .map(|code| {
                let script = format!("exit {code}");
                (*code, roadie(mode, ["sh", "-c", &script]).start())
            })
            .collect();
        for (code, r) in running {
            r.finish().code(code);
        }
    }
}

#[rstest]
fn a_death_by_signal_is_128_plus_the_signal(
    #[values(Mode::Subreaper, Mode::Pid1)] mode: Mode,
    #[values(libc::SIGTERM, libc::SIGUSR1, libc::SIGUSR2)] signal: i32,
) {
    // The app runs `sleep` with default dispositions; roadie forwards the signal to it.
    let mut r = roadie(mode, ["sh", "-c", "echo ready; exec sleep 30"]).start();
    r.line_containing("ready");
    r.signal(signal);
    r.finish().code(128 + signal);
}

#[rstest]
fn an_app_killed_by_sigkill_gives_137(#[values(Mode::Subreaper, Mode::Pid1)] mode: Mode) {
    roadie(mode, ["sh", "-c", "kill -KILL $$"])
        .run()
        .code(137)
        .stderr_has("killed by SIGKILL (exit code 137)");
}

#[rstest]
fn a_missing_command_is_127_naming_it_and_the_path(
    #[values(Mode::Subreaper, Mode::Pid1)] mode: Mode,
) {
    roadie(mode, ["no-such-command-roadie"])
        .env("PATH", "/nowhere:/usr/bin:/bin")
        .run()
        .code(127)
        .stderr_has("command not found: \"no-such-command-roadie\"")
        .stderr_has("PATH=/nowhere:/usr/bin:/bin");
}

#[rstest]
fn a_command_that_cannot_run_is_126(
    #[values(Mode::Subreaper, Mode::Pid1)] mode: Mode,
    #[values("a directory", "a plain file", "on PATH")] what: &str,
) {
    let dir = scratch();
    let plain = dir.path().join("plain");
    std::fs::write(&plain, "#!/bin/sh\n").expect("write");
    std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let path_var = format!("{}:/usr/bin:/bin", dir.path().display());
    let command = match what {
        "a directory" => dir.path().to_string_lossy().into_owned(),
        "a plain file" => plain.to_string_lossy().into_owned(),
        _ => "plain".to_string(),
    };
    roadie(mode, [command])
        .env("PATH", &path_var)
        .run()
        .code(126)
        .stderr_has("command not executable");
}

#[rstest]
fn a_success_exit_code_is_reported_as_0(#[values(Mode::Subreaper, Mode::Pid1)] mode: Mode) {
    let mut r = roadie(
        mode,
        [
            "--success-exit-code",
            "143",
            "sh",
            "-c",
            "echo ready; exec sleep 30",
        ],
    )
    .start();
    r.line_containing("ready");
    r.signal(libc::SIGTERM);
    r.finish().code(0).stderr_has(
        "sh was killed by SIGTERM (exit code 143), reported as 0 (--success-exit-code)",
    );

    roadie(mode, ["sh", "-c", "exit 3"])
        .env("ROADIE_SUCCESS_EXIT_CODES", "143,3")
        .run()
        .code(0);
    roadie(mode, ["sh", "-c", "exit 4"])
        .env("ROADIE_SUCCESS_EXIT_CODES", "143,3")
        .run()
        .code(4);
}
