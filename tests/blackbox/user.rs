//! `--user` runs the app as another user, with that user's groups and HOME, like gosu.

use std::process::Command;

use rstest::rstest;

use crate::support::{Mode, roadie};

#[rstest]
fn the_app_runs_as_the_named_user_with_its_home(#[values(Mode::Subreaper, Mode::Pid1)] mode: Mode) {
    let finished = roadie(
        mode,
        ["--user", "nobody", "sh", "-c", "id; echo home=$HOME"],
    )
    .run();
    finished
        .code(0)
        .stdout_has("uid=65534(nobody)")
        .stdout_has("home=/nonexistent");
}

#[rstest]
fn supplementary_groups_come_from_etc_group(#[values(Mode::Subreaper, Mode::Pid1)] mode: Mode) {
    // The postgres user (installed by the test command) has a supplementary group, ssl-cert.
    let expected = Command::new("id")
        .args(["-G", "postgres"])
        .output()
        .expect("id");
    let expected = String::from_utf8_lossy(&expected.stdout).trim().to_string();
    assert!(
        expected.contains(' '),
        "postgres has no supplementary group: {expected:?}"
    );
    roadie(mode, ["sh", "-c", "id -G"])
        .env("ROADIE_USER", "postgres")
        .run()
        .code(0)
        .stdout_has(&expected);
}

#[rstest]
fn numeric_ids_without_an_entry_work_like_docker_user(
    #[values(Mode::Subreaper, Mode::Pid1)] mode: Mode,
) {
    let finished = roadie(
        mode,
        [
            "--user",
            "4321:8765",
            "sh",
            "-c",
            "echo $(id -u) $(id -g) $(id -G) home=$HOME",
        ],
    )
    .run();
    finished.code(0).stdout_has("4321 8765 8765 home=/");
}
