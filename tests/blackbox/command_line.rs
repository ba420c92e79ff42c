//! The command line itself: usage errors (64), configuration errors (78), --help, --version.

use rstest::rstest;

use crate::support::{Mode, roadie};

#[test]
fn no_command_is_a_usage_error() {
    roadie(Mode::Subreaper, Vec::<String>::new())
        .run()
        .code(64)
        .stderr_has("missing COMMAND");
}

#[test]
fn an_unknown_flag_is_a_usage_error_naming_it() {
    roadie(Mode::Subreaper, ["--no-such-flag", "true"])
        .run()
        .code(64)
        .stderr_has("'--no-such-flag'");
}

#[rstest]
#[case::duration(&["--stop-grace", "10", "true"], "--stop-grace \"10\"")]
#[case::signal(&["--rewrite-signal", "TERM:NOPE", "true"], "--rewrite-signal \"TERM:NOPE\"")]
#[case::unforwardable(&["--rewrite-signal", "CHLD:TERM", "true"], "CHLD is never forwarded")]
#[case::exit_code(&["--success-exit-code", "256", "true"], "--success-exit-code \"256\"")]
#[case::log_format(&["--log-format", "xml", "true"], "--log-format \"xml\"")]
#[case::user(&["--user", "no-such-user-roadie", "true"], "no user \"no-such-user-roadie\"")]
fn a_bad_value_is_a_configuration_error_naming_it(#[case] args: &[&str], #[case] says: &str) {
    let finished = roadie(Mode::Subreaper, args.iter().copied()).run();
    finished.code(78).stderr_has(says);
    assert_eq!(finished.stderr.lines().count(), 1, "one line:\n{finished}");
}

#[test]
fn a_bad_value_from_the_environment_is_a_configuration_error_too() {
    roadie(Mode::Subreaper, ["true"])
        .env("ROADIE_STOP_GRACE", "soon")
        .run()
        .code(78)
        .stderr_has("--stop-grace \"soon\"");
}

#[test]
fn a_bad_command_fails_before_a_bad_stage_could_be_slow() {
    // Config is checked up front: a typo fails in milliseconds.
    roadie(Mode::Subreaper, ["no-such-command-roadie"])
        .run()
        .code(127)
        .faster_than(std::time::Duration::from_secs(1));
}

#[test]
fn help_lists_options_with_their_environment_and_the_exit_codes() {
    let finished = roadie(Mode::Subreaper, ["--help"]).run();
    finished
        .code(0)
        .stdout_has("--stop-grace")
        .stdout_has("ROADIE_STOP_GRACE")
        .stdout_has("ROADIE_REWRITE_SIGNALS")
        .stdout_has("ROADIE_SIGNAL_GROUP")
        .stdout_has("ROADIE_SUCCESS_EXIT_CODES")
        .stdout_has("ROADIE_USER")
        .stdout_has("ROADIE_LOG_FORMAT")
        .stdout_has("Exit codes:")
        .stdout_has("126 / 127");
}

#[test]
fn version_prints_the_version() {
    roadie(Mode::Subreaper, ["--version"])
        .run()
        .code(0)
        .stdout_has(concat!("roadie ", env!("CARGO_PKG_VERSION")));
}

#[test]
fn the_apps_output_passes_through_untouched_and_roadies_lines_are_prefixed() {
    let finished = roadie(
        Mode::Subreaper,
        ["sh", "-c", "echo out-line; echo err-line >&2"],
    )
    .run();
    finished.code(0);
    assert_eq!(finished.stdout, "out-line\n", "{finished}");
    for line in finished.stderr.lines().filter(|l| *l != "err-line") {
        assert!(
            line.starts_with("[roadie] "),
            "unprefixed line {line:?}\n{finished}"
        );
    }
    finished.stderr_has("err-line");
}

#[test]
fn json_logs_are_one_object_a_line() {
    let finished = roadie(Mode::Subreaper, ["--log-format", "json", "true"]).run();
    finished.code(0);
    for line in finished.stderr.lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}\n{finished}"));
        assert!(value["timestamp"].is_string() && value["level"].is_string());
        assert!(value["message"].is_string(), "{line}");
    }
}

#[test]
fn log_level_error_keeps_roadie_quiet() {
    let finished = roadie(Mode::Subreaper, ["sh", "-c", "exit 0"])
        .env("ROADIE_LOG", "error")
        .run();
    finished.code(0);
    assert_eq!(finished.stderr, "", "{finished}");
}

#[test]
fn an_app_named_help_is_an_app_not_clap_s_help() {
    // No program named help is on PATH: roadie looks for it (127), it does not print usage.
    roadie(Mode::Subreaper, ["help"])
        .run()
        .code(127)
        .stderr_has("command not found: \"help\"");
}
