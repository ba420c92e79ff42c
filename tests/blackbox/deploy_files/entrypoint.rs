//! entrypoint/: the shim and the example hooks as shipped (their executable bits included),
//! run for real with the built roadie: the shim started as the container's PID 1 must leave
//! roadie as PID 1, and the hooks must run before the app or stop the boot naming themselves.
//! The `--hooks` mechanics (order, skipping, signals, --user) are hooks.rs's.

use std::path::{Path, PathBuf};

use rstest::rstest;

use super::repo;
use crate::support::{Mode, Roadie, entrypoint, roadie_bin, scratch};

fn shipped() -> PathBuf {
    repo().join("entrypoint")
}

/// The shim with `args`, its hooks directory the shipped one, roadie found on PATH as in an
/// image, and `env` on top.
fn shim(mode: Mode, args: &[&str], env: &[(&str, &str)]) -> Roadie {
    let bin = Path::new(roadie_bin()).parent().expect("target/debug");
    let mut r = entrypoint(mode, &shipped().join("docker-entrypoint.sh"), args)
        .env("PATH", &format!("{}:/usr/bin:/bin", bin.display()))
        .env(
            "ROADIE_HOOKS",
            &shipped().join("docker-entrypoint.d").to_string_lossy(),
        );
    for (key, value) in env {
        r = r.env(key, value);
    }
    r
}

#[rstest]
fn the_shim_leaves_roadie_as_the_apps_parent_running_the_shipped_hooks_then_the_command(
    #[values(Mode::Subreaper, Mode::Pid1)] mode: Mode,
) {
    let dir = scratch();
    let config = dir.path().join("config/settings.ini");
    let source = dir.path().join("static-src");
    let root = dir.path().join("static");
    std::fs::create_dir_all(source.join("css")).unwrap();
    std::fs::write(source.join("css/site.css"), "body {}\n").unwrap();
    let app = r#"echo "app ppid=$PPID"; printf '[%s]\n' "$@"; cat "$APP_CONFIG""#;
    let r = shim(
        mode,
        &["sh", "-c", app, "app", "two words", "*"],
        &[
            ("APP_ENV", "staging"),
            ("APP_CONFIG", &config.to_string_lossy()),
            ("STATIC_SOURCE", &source.to_string_lossy()),
            ("STATIC_ROOT", &root.to_string_lossy()),
        ],
    )
    .start();
    // The shim exec'd roadie: the app's parent is the shim's own pid (1 in a namespace).
    let roadie_pid = match mode {
        Mode::Subreaper => r.pid(),
        Mode::Pid1 => 1,
    };
    let finished = r.finish();
    finished
        .code(0)
        .stderr_has("2 hooks done")
        .stderr_lacks("not executable");
    let expected = format!(
        "10-render-config: wrote {} for staging\n\
         20-publish-static: published 1 files from {} to {}\n\
         app ppid={roadie_pid}\n\
         [two words]\n\
         [*]\n\
         [app]\n\
         env = staging\n\
         log_level = info\n\
         public_url = http://localhost:8000\n",
        config.display(),
        source.display(),
        root.display()
    );
    assert_eq!(finished.stdout, expected, "{finished}");
    assert_eq!(
        std::fs::read_to_string(root.join("css/site.css")).unwrap(),
        "body {}\n"
    );
}

#[rstest]
#[case::render_config_without_app_env(
    &[],
    "10-render-config",
    "10-render-config: APP_ENV is not set"
)]
#[case::publish_static_without_its_source(
    &[("APP_ENV", "staging"), ("STATIC_ROOT", "{dir}/static"), ("STATIC_SOURCE", "{dir}/none")],
    "20-publish-static",
    "20-publish-static: {dir}/none is not a directory"
)]
fn a_failing_shipped_hook_stops_the_boot_with_65_naming_it(
    #[case] env: &[(&str, &str)],
    #[case] hook: &str,
    #[case] message: &str,
) {
    let dir = scratch();
    let at = |text: &str| text.replace("{dir}", &dir.path().to_string_lossy());
    let config = dir.path().join("settings.ini");
    let mut env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), at(v))).collect();
    env.push(("APP_CONFIG".into(), config.to_string_lossy().into_owned()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let finished = shim(Mode::Pid1, &["sh", "-c", "echo app-started"], &env).run();
    finished
        .code(65)
        .stderr_has(&at(message))
        .stderr_has(&format!(
            "{hook} exited with code 1; the app is not started"
        ));
    assert!(!finished.stdout.contains("app-started"), "{finished}");
}
