//! `--hooks DIR`: each executable in name order, supervised, before the app; the line that
//! starts the app times every phase; JSON lines carry the phase.

use std::path::Path;

use rstest::rstest;

use crate::support::{Finished, Mode, roadie, scratch, script};

#[rstest]
fn hooks_run_in_name_order_before_the_app_and_non_executables_are_skipped(
    #[values(Mode::Subreaper, Mode::Pid1)] mode: Mode,
) {
    let dir = scratch();
    script(dir.path(), "20-second", "echo hook-b", 0o755);
    script(dir.path(), "10-first", "echo hook-a \"$FROM_ENV\"", 0o755);
    script(dir.path(), "15-plain", "echo never", 0o644);
    let hooks = dir.path().to_string_lossy().into_owned();
    let finished = roadie(mode, ["--hooks", &hooks, "sh", "-c", "echo app-started"])
        .env("FROM_ENV", "env-passes")
        .run();
    finished
        .code(0)
        .stderr_has("skipping")
        .stderr_has("15-plain: not executable")
        .stderr_has("2 hooks done")
        .stderr_has("ready in")
        .stderr_has("hooks ");
    assert_eq!(
        finished.stdout, "hook-a env-passes\nhook-b\napp-started\n",
        "{finished}"
    );
}

#[rstest]
fn a_failing_hook_stops_the_boot_with_65_naming_it(
    #[values(Mode::Subreaper, Mode::Pid1)] mode: Mode,
) {
    let dir = scratch();
    script(dir.path(), "10-fails", "exit 3", 0o755);
    script(dir.path(), "20-after", "echo never-runs", 0o755);
    let hooks = dir.path().to_string_lossy().into_owned();
    let finished = roadie(mode, ["--hooks", &hooks, "sh", "-c", "echo app-started"]).run();
    finished
        .code(65)
        .stderr_has("10-fails exited with code 3; the app is not started");
    assert_eq!(finished.stdout, "", "{finished}");
}

#[test]
fn a_stop_signal_during_a_hook_exits_128_plus_s_and_never_starts_the_app() {
    let dir = scratch();
    script(
        dir.path(),
        "10-slow",
        "echo hook-running; exec sleep 30",
        0o755,
    );
    let hooks = dir.path().to_string_lossy().into_owned();
    let mut r = roadie(
        Mode::Subreaper,
        ["--hooks", &hooks, "sh", "-c", "echo app-started"],
    )
    .start();
    r.line_containing("hook-running");
    r.signal(libc::SIGTERM);
    let finished = r.finish();
    finished.code(143).stderr_has("while running hooks");
    assert!(!finished.stdout.contains("app-started"), "{finished}");
}

#[test]
fn hooks_run_as_the_user() {
    let dir = scratch();
    script(dir.path(), "10-who", "id -un", 0o755);
    let hooks = dir.path().to_string_lossy().into_owned();
    roadie(
        Mode::Subreaper,
        ["--user", "nobody", "--hooks", &hooks, "true"],
    )
    .run()
    .code(0)
    .stdout_has("nobody");
}

#[test]
fn hooks_that_are_not_a_directory_are_a_configuration_error() {
    roadie(Mode::Subreaper, ["--hooks", "/nonexistent/hooks", "true"])
        .run()
        .code(78)
        .stderr_has("--hooks /nonexistent/hooks: not a directory");
}

/// roadie with one hook, `extra` options and the repo's migrations on a SQLite file in `dir`
/// (one already migrated by an earlier call finds the schema up to date), running `true`.
fn boot_with_a_hook(dir: &Path, extra: &[&str]) -> Finished {
    let hooks = dir.join("hooks");
    if !hooks.exists() {
        std::fs::create_dir(&hooks).unwrap();
        script(&hooks, "10-ok", "true", 0o755);
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let url = format!("sqlite:{}/app.db", dir.display());
    let hooks = hooks.to_string_lossy().into_owned();
    let mut args: Vec<&str> = extra.to_vec();
    args.extend(["--database-url", &url, "--hooks", &hooks, "true"]);
    roadie(Mode::Subreaper, args).current_dir(repo).run()
}

#[test]
fn the_app_starts_with_every_phase_timed_and_json_lines_name_their_phase() {
    let dir = scratch();
    let text = boot_with_a_hook(dir.path(), &[]);
    text.code(0);
    let line = text
        .stderr
        .lines()
        .find(|l| l.contains("starting true"))
        .unwrap_or_else(|| panic!("no start line\n{text}"));
    for part in [
        "ready in ",
        "(database ",
        ", 4 migrations ",
        ", 1 hook ",
        "); starting true (pid ",
    ] {
        assert!(line.contains(part), "{part:?} missing from {line:?}");
    }

    let json = boot_with_a_hook(dir.path(), &["--log-format", "json"]);
    json.code(0);
    let phases: Vec<String> = json
        .stderr
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["phase"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    for phase in ["wait", "migrate", "hooks", "run"] {
        assert!(
            phases.iter().any(|p| p == phase),
            "no {phase} line: {phases:?}\n{json}"
        );
    }
}

#[test]
fn the_json_start_line_carries_each_phase_as_a_field() {
    let dir = scratch();
    let json = boot_with_a_hook(dir.path(), &["--log-format", "json"]);
    json.code(0);
    let start: serde_json::Value = json
        .stderr
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| {
            v["message"]
                .as_str()
                .unwrap_or("")
                .contains("starting true")
        })
        .unwrap_or_else(|| panic!("no start line\n{json}"));
    for field in ["wait_s", "migrate_s", "hooks_s", "total_s"] {
        assert!(
            start[field].is_f64(),
            "{field} missing or not a number: {start}"
        );
    }
    // The repo's migrations/ folder: four native migrations on a new SQLite file.
    assert_eq!(start["applied"], 4, "{start}");
    assert_eq!(start["waited_for"], "database", "{start}");
}
