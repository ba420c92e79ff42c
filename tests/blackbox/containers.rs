//! roadie as the ENTRYPOINT of real images, under two real engines, each test under both:
//! podman 4.3 with runc, set up by scripts/containers.sh (which also builds the base images
//! `postgres:15` and `python:3.11-slim` from Debian's packages), and Docker Engine 20.10 with
//! runc, a private daemon started by scripts/docker.sh (the same base images, loaded from
//! podman's store). The shipped image is the Dockerfile's final stage built from the static
//! binary (`--target prebuilt`), the example's image is its own Dockerfile. The engines, the
//! images and the clean-up: containers/engine.rs. Where the engines differ: compose/README.md.

mod engine;
mod swarm;

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use rstest::rstest;

use crate::support::http::http_get;
use crate::support::scratch;
use crate::support::terminal::OnTerminal;
use engine::{
    Cleanup, DOCKER, EXAMPLE, EXAMPLE_SHELL, EXAMPLE_URL, Engine, PODMAN, Project, SHIPPED,
    SHIPPED_WITH_SHELL, SLOW_DNS_WAIT, build, free_port, healthy_within, images, postgres, repo,
    run_shipped, stop, text, wait_for_log,
};

#[rstest]
#[case::the_apps_code(&["sh", "-c", "echo app-said-hello; exit 3"], 3, "sh exited with code 3")]
#[case::signal_128_plus(&["sh", "-c", "echo app-said-hello; kill -TERM $$"], 143, "killed by SIGTERM (exit code 143)")]
#[case::not_executable_126(&["/not-executable"], 126, "/not-executable")]
#[case::not_found_127(&["no-such-app"], 127, "no-such-app")]
fn the_shipped_image_exits_with_the_apps_code_and_its_logs_hold_roadies_lines_and_the_apps(
    #[values(PODMAN, DOCKER)] engine: Engine,
    #[case] command: &[&str],
    #[case] code: i32,
    #[case] roadie_says: &str,
) {
    let mut cleanup = Cleanup::new(engine, "exit");
    let (got, logs) = run_shipped(&mut cleanup, command);
    assert_eq!(got, Some(code), "{engine:?} run {command:?}; logs:\n{logs}");
    assert!(
        logs.lines()
            .any(|l| l.starts_with("[roadie]") && l.contains(roadie_says)),
        "a roadie line naming {roadie_says:?} in the logs:\n{logs}"
    );
    if command[0] == "sh" {
        assert!(logs.contains("app-said-hello"), "the app's output:\n{logs}");
    }
}

#[rstest]
fn the_shipped_image_is_the_dockerfiles_final_stage_with_roadie_as_entrypoint(
    #[values(PODMAN, DOCKER)] engine: Engine,
) {
    // The `prebuilt` stage the tests build is the final stage, line for line, but for where
    // /roadie comes from (the build context instead of the build stage).
    let dockerfile = fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    let stages: Vec<Vec<&str>> = dockerfile
        .split("\nFROM ")
        .skip(1)
        .map(|stage| {
            stage
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .collect()
        })
        .collect();
    let [.., prebuilt, last] = stages.as_slice() else {
        panic!("a prebuilt and a final stage: {stages:?}");
    };
    assert_eq!(
        prebuilt,
        &[
            "scratch AS prebuilt",
            "COPY roadie /roadie",
            r#"ENTRYPOINT ["/roadie"]"#
        ]
    );
    assert_eq!(
        last,
        &[
            "scratch",
            "COPY --from=build /roadie /roadie",
            r#"ENTRYPOINT ["/roadie"]"#
        ]
    );
    images(engine);
    let entrypoint = engine.ok([
        "image",
        "inspect",
        "--format",
        "{{json .Config.Entrypoint}}",
        SHIPPED,
    ]);
    assert_eq!(entrypoint.trim(), r#"["/roadie"]"#);
    // One file in the image: /roadie (a scratch image holds what it copied and nothing else).
    let files = engine.ok([
        "image",
        "inspect",
        "--format",
        "{{len .RootFS.Layers}}",
        SHIPPED,
    ]);
    assert_eq!(files.trim(), "1", "one layer, the COPY of /roadie");
    let version = engine.ok(["run", "--rm", "--network", "none", SHIPPED, "--version"]);
    assert!(version.starts_with("roadie "), "{version}");
}

/// The FastAPI example detached on a network with PostgreSQL, its port published on loopback,
/// `extra` before the image; returned once it answers. Its name and port.
fn example_serving(cleanup: &mut Cleanup, extra: &[&str]) -> (String, u16) {
    let network = postgres(cleanup);
    let name = cleanup.container("app");
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:8000");
    let url = format!("DATABASE_URL={EXAMPLE_URL}");
    let mut args = vec!["run", "--detach", "--name", &name, "--network", &network];
    args.extend_from_slice(extra);
    args.extend([
        "--publish",
        &publish,
        "-e",
        &url,
        "-e",
        SLOW_DNS_WAIT,
        EXAMPLE,
    ]);
    cleanup.engine.ok(args);
    healthy_within(cleanup.engine, &name, port, Duration::from_secs(240));
    (name, port)
}

#[rstest]
fn stop_ends_the_fastapi_example_gracefully_with_code_0_long_before_the_kill(
    #[values(PODMAN, DOCKER)] engine: Engine,
) {
    images(engine);
    let mut cleanup = Cleanup::new(engine, "stop-example");
    let (name, _) = example_serving(&mut cleanup, &[]);
    // A 30 s grace: only a graceful stop ends it in the bound below; the engine's default
    // kill would come at 10 s.
    let (took, code) = stop(engine, &name, 30);
    let logs = engine.logs(&name);
    assert_eq!(code, 0, "the documented code after a stop; logs:\n{logs}");
    assert!(
        took < Duration::from_secs(8),
        "stop took {took:?}; logs:\n{logs}"
    );
    assert!(logs.contains("Application shutdown complete"), "{logs}");
    assert!(
        logs.contains("[roadie] INFO  uvicorn exited with code 0"),
        "{logs}"
    );
}

#[rstest]
fn stopped_while_the_database_is_down_roadie_exits_at_once_but_the_shell_entrypoint_is_killed_after_10s(
    #[values(PODMAN, DOCKER)] engine: Engine,
) {
    images(engine);
    let mut cleanup = Cleanup::new(engine, "stop-waiting");
    // Nothing listens on 127.0.0.1:5432 inside a container with no network: both wait forever.
    let roadie = cleanup.container("roadie");
    let shell = cleanup.container("shell");
    for (name, image) in [(&roadie, EXAMPLE), (&shell, EXAMPLE_SHELL)] {
        engine.ok([
            "run",
            "--detach",
            "--name",
            name,
            "--network",
            "none",
            "-e",
            "DATABASE_URL=postgresql://app:app-pw@127.0.0.1:5432/app",
            "-e",
            "PGHOST=127.0.0.1",
            "-e",
            "ROADIE_WAIT_TIMEOUT=10m",
            image,
        ]);
    }
    wait_for_log(engine, &roadie, "[roadie]");
    wait_for_log(engine, &shell, "no response");
    let (took, code) = stop(engine, &shell, 10);
    assert_eq!(code, 137, "the shell entrypoint is SIGKILLed");
    assert!(
        took >= Duration::from_secs(9),
        "{took:?}: killed at the grace"
    );
    let (took, code) = stop(engine, &roadie, 10);
    let logs = engine.logs(&roadie);
    assert_eq!(
        code, 143,
        "128+SIGTERM, stopped before the app started; logs:\n{logs}"
    );
    assert!(took < Duration::from_secs(3), "{took:?}; logs:\n{logs}");
}

/// Every alembic revision of the example was run by exactly one of the replicas' logs.
fn each_revision_applied_once(logs: &str) {
    for revision in ["0001", "0002", "0003", "0004", "0005"] {
        let runs = logs
            .lines()
            .filter(|l| l.contains("Running upgrade") && l.contains(&format!("-> {revision},")))
            .count();
        assert_eq!(runs, 1, "revision {revision} applied {runs} times:\n{logs}");
    }
}

/// What both compose variants must show: three replicas serving the seeded data (under Docker
/// also on their published host ports 8000-8002, one each), the schema at head with one row
/// in alembic_version, and a stop within the grace with code 0.
fn three_replicas_serve_at_head_and_stop_with_0(project: &Project) {
    for n in 1..=3 {
        let body = project.answers(n, "/customers", Duration::from_secs(240));
        assert!(
            body.contains("@"),
            "replica {n} serves the seeded customers: {body}"
        );
    }
    if project.engine == DOCKER {
        let mut ports = vec![];
        for n in 1..=3 {
            let port = project
                .engine
                .ok(["port", &project.container("app", n), "8000"]);
            let port: u16 = port
                .lines()
                .next()
                .and_then(|l| l.rsplit(':').next())
                .and_then(|p| p.trim().parse().ok())
                .unwrap_or_else(|| panic!("replica {n}'s published port: {port}"));
            let (status, body) = http_get(port, "/customers").expect("GET /customers");
            assert_eq!(status, 200, "replica {n} on host port {port}: {body}");
            ports.push(port);
        }
        ports.sort();
        assert_eq!(ports, [8000, 8001, 8002], "one port of the range each");
    }
    assert_eq!(
        project.sql("select count(*), max(version_num) from alembic_version"),
        "1|0005"
    );
    let (took, codes) = project.stop();
    assert_eq!(codes, [0, 0, 0], "each replica's code after a stop");
    // stop_grace_period is 15 s: a replica still running then is SIGKILLed (137).
    assert!(took < Duration::from_secs(15), "stop took {took:?}");
}

#[rstest]
fn compose_up_boots_three_replicas_that_apply_each_migration_once_and_stop_with_0(
    #[values(PODMAN, DOCKER)] engine: Engine,
) {
    let project = Project::up(engine, "up", &[], None, false);
    three_replicas_serve_at_head_and_stop_with_0(&project);
    let logs: String = (1..=3).map(|n| project.logs("app", n)).collect();
    each_revision_applied_once(&logs);
}

#[rstest]
fn compose_with_the_migrations_service_migrates_once_before_the_replicas_start(
    #[values(PODMAN, DOCKER)] engine: Engine,
) {
    let project = Project::up(
        engine,
        "migsvc",
        &["compose.migrations-service.yaml"],
        Some("migrations"),
        true,
    );
    three_replicas_serve_at_head_and_stop_with_0(&project);
    let migrations = project.logs("migrations", 1);
    each_revision_applied_once(&migrations);
    // The exit code of its first run, the one the replicas waited for: podman restarts an
    // exited `--requires` dependency whenever a dependent starts, so the service runs again
    // once per replica (finding the schema at head), and its last code is the last re-run's.
    // Docker Compose runs it once.
    let codes = match engine {
        Engine::Podman => engine.ok([
            "events",
            "--stream=false",
            "--since",
            "30m",
            "--filter",
            &format!("container={}", project.container("migrations", 1)),
            "--filter",
            "event=died",
            "--format",
            "{{.ContainerExitCode}}",
        ]),
        Engine::Docker => engine
            .exit_code(&project.container("migrations", 1))
            .to_string(),
    };
    assert_eq!(codes.lines().next(), Some("0"), "{codes}\n{migrations}");
    for n in 1..=3 {
        let logs = project.logs("app", n);
        assert!(
            !logs.contains("Running upgrade"),
            "replica {n} migrated:\n{logs}"
        );
    }
}

#[rstest]
fn run_it_bash_gets_a_terminal_with_job_control_and_skips_the_boot(
    #[values(PODMAN, DOCKER)] engine: Engine,
) {
    images(engine);
    // The database is down: a boot would wait for it; the debug shell does not.
    let argv: Vec<std::ffi::OsString> = [
        engine.program(),
        "run",
        "-it",
        "--rm",
        "--network",
        "none",
        "-e",
        "DATABASE_URL=postgresql://app:app-pw@127.0.0.1:5432/app",
        "-e",
        "PS1=$ ",
        EXAMPLE,
        "bash",
    ]
    .iter()
    .map(Into::into)
    .collect();
    let (key, value) = engine.env();
    let mut terminal = OnTerminal::spawn(&argv, None, &[(key, &value)]);
    terminal.shows("$ ");
    terminal.shell_has_the_foreground();
    terminal.exit_debug_shell("bash");
}

#[rstest]
fn the_example_boots_and_serves_with_a_read_only_root_filesystem(
    #[values(PODMAN, DOCKER)] engine: Engine,
) {
    images(engine);
    let mut cleanup = Cleanup::new(engine, "read-only");
    let (_, port) = example_serving(&mut cleanup, &["--read-only"]);
    let (status, body) = http_get(port, "/customers").expect("GET /customers");
    assert_eq!(
        status, 200,
        "the migrations ran on a read-only root: {body}"
    );
}

#[rstest]
// The engine switches to the image's user by name (from /etc/passwd), roadie runs as it.
#[case::engine_user_by_name(EXAMPLE, &["--user", "app"], "10001 10001 HOME=/home/app")]
// roadie starts as root and switches (ROADIE_USER) by name, from the image's /etc/passwd.
#[case::roadie_user_by_name(EXAMPLE, &["--user", "0", "-e", "ROADIE_USER=app"], "10001 10001 HOME=/home/app")]
// No /etc/passwd at all (the shipped image and a static busybox): numbers only.
#[case::engine_numeric_user_without_passwd(SHIPPED_WITH_SHELL, &["--user", "4242:4343"], "4242 4343 HOME=/")]
fn the_app_runs_as_the_user_asked_for_with_or_without_etc_passwd(
    #[values(PODMAN, DOCKER)] engine: Engine,
    #[case] image: &str,
    #[case] options: &[&str],
    #[case] expected: &str,
) {
    images(engine);
    let mut cleanup = Cleanup::new(engine, "user");
    let name = cleanup.container("app");
    // No database here: the example's alembic.ini would be refused (78) without the hatch.
    let args = [
        "run",
        "--name",
        &name,
        "--network",
        "none",
        "-e",
        "ROADIE_SKIP_MIGRATIONS=1",
    ]
    .iter()
    .chain(options)
    .chain(&[image, "sh", "-c", "echo \"$(id -u) $(id -g) HOME=$HOME\""])
    .copied()
    .collect::<Vec<_>>();
    let out = engine.output(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end_matches('\n'),
        expected,
        "{}",
        text(&out)
    );
}

/// README: `--user` takes "names or numbers ... `HOME` ... `/` for a number with no entry, as
/// `docker run --user`", also in an image with no /etc/passwd at all (glibc's getpwuid_r then
/// answers ENOENT, which means "no entry", not a failure).
#[rstest]
fn roadie_switches_to_a_numeric_user_in_an_image_without_etc_passwd(
    #[values(PODMAN, DOCKER)] engine: Engine,
) {
    images(engine);
    let mut cleanup = Cleanup::new(engine, "user-no-passwd");
    let name = cleanup.container("app");
    let out = engine.output([
        "run",
        "--name",
        &name,
        "--network",
        "none",
        "-e",
        "ROADIE_USER=4242:4343",
        SHIPPED_WITH_SHELL,
        "sh",
        "-c",
        "echo \"$(id -u) $(id -g) HOME=$HOME\"",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "4242 4343 HOME=/"
    );
}

/// An alembic revision after the example's head that holds its transaction open for 10 s
/// after creating a table: a migration to kill halfway.
const SLOW_REVISION: &str = r#""""a slow revision: creates a table, then takes 10 s"""
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.execute("CREATE TABLE slow_step (id integer PRIMARY KEY)")
    op.execute("INSERT INTO slow_step VALUES (1)")
    op.execute("SELECT pg_sleep(10)")


def downgrade() -> None:
    op.execute("DROP TABLE slow_step")
"#;

#[rstest]
fn killed_during_a_slow_migration_then_started_again_the_migration_completes_with_nothing_half_applied(
    #[values(PODMAN, DOCKER)] engine: Engine,
) {
    images(engine);
    let context = scratch();
    fs::write(context.path().join("0006_slow.py"), SLOW_REVISION).expect("revision");
    let containerfile = context.path().join("Containerfile");
    fs::write(
        &containerfile,
        format!("FROM {EXAMPLE}\nCOPY 0006_slow.py migrations/versions/0006_slow.py\n"),
    )
    .expect("Containerfile");
    let image = "localhost/roadie-test/example-fastapi-slow:test";
    build(
        engine,
        &["-t", image],
        containerfile.to_str().expect("UNWRAP: UTF-8"),
        context.path(),
    );
    let mut cleanup = Cleanup::new(engine, "kill-migration");
    let network = postgres(&mut cleanup);
    let name = cleanup.container("app");
    engine.ok([
        "run",
        "--detach",
        "--name",
        &name,
        "--network",
        &network,
        "-e",
        &format!("DATABASE_URL={EXAMPLE_URL}"),
        "-e",
        SLOW_DNS_WAIT,
        image,
    ]);
    wait_for_log(engine, &name, "Running upgrade 0005 -> 0006");
    engine.ok(["kill", "--signal", "KILL", &name]);
    engine.ok(["wait", &name]);
    let db = format!("{}-postgres", cleanup.prefix);
    let sql = |query: &str| {
        engine
            .ok(["exec", &db, "psql", "-U", "app", "-d", "app", "-Atc", query])
            .trim()
            .to_string()
    };
    // One transaction for the whole upgrade (alembic's transactional DDL on PostgreSQL): the
    // kill rolled back every revision of this boot, none is half there.
    assert_eq!(sql("select to_regclass('slow_step') is null"), "t");
    assert_eq!(sql("select to_regclass('alembic_version') is null"), "t");

    engine.ok(["start", &name]);
    let until = Instant::now() + Duration::from_secs(240);
    while engine.logs(&name).matches("starting uvicorn").count() == 0 {
        assert!(
            Instant::now() < until,
            "the second boot did not start uvicorn:\n{}",
            engine.logs(&name)
        );
        thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(sql("select version_num from alembic_version"), "0006");
    assert_eq!(sql("select count(*) from slow_step"), "1");
    assert_eq!(sql("select count(*) from customers"), "3", "seeded once");
}
