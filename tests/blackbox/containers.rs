//! roadie as the ENTRYPOINT of real images, under a real engine: podman with runc, set up by
//! scripts/containers.sh (which also builds the base images `postgres:15` and
//! `python:3.11-slim` from Debian's packages). The shipped image is the Dockerfile's final stage
//! built from the static binary (`--target prebuilt`), the example's image is its own Dockerfile.
//! Every engine command has a deadline; every container and network a test makes is removed
//! when the test ends, and a failure prints the engine's logs.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use rstest::rstest;

use crate::support::http::http_get;
use crate::support::scratch;
use crate::support::terminal::OnTerminal;

/// The image the Dockerfile's final stage makes from the static binary.
const SHIPPED: &str = "localhost/roadie-test/roadie:test";
/// The shipped image plus a static busybox: roadie as ENTRYPOINT, shell apps to run.
const SHIPPED_WITH_SHELL: &str = "localhost/roadie-test/roadie-busybox:test";
/// examples/fastapi-alembic/Dockerfile built with `ROADIE_IMAGE=SHIPPED`.
const EXAMPLE: &str = "localhost/roadie-test/example-fastapi:test";
/// The example with the seeds' shell entrypoint instead of roadie.
const EXAMPLE_SHELL: &str = "localhost/roadie-test/example-fastapi-shell:test";
/// The official PostgreSQL image's name: scripts/containers.sh builds a stand-in under it.
const POSTGRES: &str = "docker.io/library/postgres:15";
/// What an engine command (build, run, stop) may take before the test fails.
const ENGINE_DEADLINE: Duration = Duration::from_secs(120);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// scripts/containers.sh's state directory: its containers.conf is the engine's configuration.
fn engine_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = within(
            &mut Command::new(repo().join("scripts/containers.sh")),
            Duration::from_secs(900),
        );
        assert!(
            out.status.success(),
            "scripts/containers.sh: {}",
            text(&out)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        PathBuf::from(stdout.lines().last().expect("the state directory").trim())
    })
}

/// Runs `command` to its end, killed at `deadline` (then the test fails with what it printed).
fn within(command: &mut Command, deadline: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let mut stdout = child.stdout.take().expect("UNWRAP: piped above");
    let mut stderr = child.stderr.take().expect("UNWRAP: piped above");
    let out = thread::spawn(move || {
        let mut bytes = Vec::new();
        stdout.read_to_end(&mut bytes).ok();
        bytes
    });
    let err = thread::spawn(move || {
        let mut bytes = Vec::new();
        stderr.read_to_end(&mut bytes).ok();
        bytes
    });
    let until = Instant::now() + deadline;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > until {
            child.kill().ok();
            let status = child.wait().expect("wait");
            let (out, err) = (out.join().unwrap(), err.join().unwrap());
            panic!(
                "{command:?} still running after {deadline:?} ({status}):\n--- stdout\n{}--- stderr\n{}",
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&err)
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `podman ARGS...` with the tier's configuration.
fn podman_command<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut command = Command::new("podman");
    command
        .env("CONTAINERS_CONF", engine_dir().join("containers.conf"))
        .args(args);
    command
}

/// `podman ARGS...`, whatever its exit code.
fn podman_output<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    within(&mut podman_command(args), ENGINE_DEADLINE)
}

/// `podman ARGS...`, which must succeed; its stdout.
fn podman<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut command = podman_command(args);
    let out = within(&mut command, ENGINE_DEADLINE);
    assert!(out.status.success(), "{command:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds the test images once per test process, serialised across processes by a lock (they
/// share tags): the static binary (scripts/build-static.sh, as the Dockerfile's build stage
/// runs it; cached by cargo after the first), the Dockerfile's final stage from it, a busybox
/// layer on top, and the FastAPI example's Dockerfile with its `COPY --from` of it.
fn images() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        use std::os::fd::AsRawFd;
        let lock = fs::File::create(engine_dir().join("images.lock")).expect("lock file");
        // SAFETY: flock on an open file; the lock goes with the descriptor, dropped below.
        unsafe {
            libc::flock(lock.as_raw_fd(), libc::LOCK_EX);
        }
        let context = scratch();
        let binary = context.path().join("roadie");
        let out = within(
            Command::new(repo().join("scripts/build-static.sh"))
                .arg("--out")
                .arg(&binary)
                .current_dir(repo()),
            Duration::from_secs(1200),
        );
        assert!(out.status.success(), "the static build: {}", text(&out));
        build(
            &["--target", "prebuilt", "-t", SHIPPED],
            "Dockerfile",
            context.path(),
        );

        let shell = scratch();
        let busybox = fs::read("/bin/busybox").expect("/bin/busybox (busybox-static)");
        fs::write(shell.path().join("busybox"), busybox).expect("copy busybox");
        fs::set_permissions(
            shell.path().join("busybox"),
            fs::Permissions::from_mode(0o755),
        )
        .expect("chmod busybox");
        fs::write(shell.path().join("not-executable"), "#!/bin/sh\n").expect("a script");
        let containerfile = shell.path().join("Containerfile");
        fs::write(
            &containerfile,
            format!(
                "FROM {SHIPPED}\n\
                 COPY busybox /bin/busybox\n\
                 RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
                 COPY not-executable /not-executable\n\
                 RUN chmod 644 /not-executable\n"
            ),
        )
        .expect("Containerfile");
        build(
            &["-t", SHIPPED_WITH_SHELL],
            containerfile
                .to_str()
                .expect("UNWRAP: a temp path is UTF-8"),
            shell.path(),
        );

        let example = repo().join("examples/fastapi-alembic");
        build(
            &[
                "--build-arg",
                &format!("ROADIE_IMAGE={SHIPPED}"),
                "-t",
                EXAMPLE,
            ],
            example.join("Dockerfile").to_str().expect("UNWRAP: UTF-8"),
            &example,
        );
        let seeds = scratch();
        fs::write(seeds.path().join("entrypoint.sh"), SEEDS_ENTRYPOINT).expect("entrypoint");
        fs::set_permissions(
            seeds.path().join("entrypoint.sh"),
            fs::Permissions::from_mode(0o755),
        )
        .expect("chmod entrypoint");
        let containerfile = seeds.path().join("Containerfile");
        fs::write(
            &containerfile,
            format!(
                "FROM {EXAMPLE}\n\
                 COPY entrypoint.sh /entrypoint.sh\n\
                 ENTRYPOINT [\"/entrypoint.sh\"]\n\
                 CMD {EXAMPLE_CMD}\n"
            ),
        )
        .expect("Containerfile");
        build(
            &["-t", EXAMPLE_SHELL],
            containerfile.to_str().expect("UNWRAP: UTF-8"),
            seeds.path(),
        );
        drop(lock);
    });
}

/// The example's CMD (its Dockerfile): a new ENTRYPOINT resets the CMD an image inherits.
const EXAMPLE_CMD: &str =
    r#"["uvicorn", "app.main:app", "--workers", "2", "--host", "0.0.0.0", "--port", "8000"]"#;

/// The entrypoint the seeds ship, the one roadie replaces: poll the server, migrate, exec.
const SEEDS_ENTRYPOINT: &str = "#!/bin/sh
set -e
until pg_isready -h \"$PGHOST\" -p \"${PGPORT:-5432}\"; do sleep 1; done
alembic upgrade head
exec \"$@\"
";

/// `podman build` of `file` in `context`, offline (every base image is local).
fn build(args: &[&str], file: &str, context: &Path) {
    podman(
        [
            "build",
            "--quiet",
            "--pull=never",
            "--network=none",
            "-f",
            file,
        ]
        .iter()
        .chain(args)
        .map(|s| s.to_string())
        .chain([context.to_string_lossy().into_owned()]),
    );
}

/// Containers and networks a test made, removed when it ends, with their logs printed if it
/// failed.
struct Cleanup {
    prefix: String,
    containers: Vec<String>,
    networks: Vec<String>,
}

impl Cleanup {
    fn new(test: &str) -> Self {
        Self {
            prefix: format!("roadie-test-{test}-{}", std::process::id()),
            containers: vec![],
            networks: vec![],
        }
    }

    /// A container name for this test, removed at the end.
    fn container(&mut self, role: &str) -> String {
        let name = format!("{}-{role}", self.prefix);
        self.containers.push(name.clone());
        name
    }

    /// A fresh bridge network (DNS between its containers), removed at the end.
    fn network(&mut self) -> String {
        let name = format!("{}-net", self.prefix);
        podman(["network", "create", &name]);
        self.networks.push(name.clone());
        name
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for name in &self.containers {
            if thread::panicking() {
                let logs = podman_output(["logs", name]);
                eprintln!("--- podman logs {name}\n{}", text(&logs));
            }
            podman_output(["rm", "--force", "--volumes", "--time", "0", name]);
        }
        for name in &self.networks {
            podman_output(["network", "rm", "--force", name]);
        }
    }
}

/// `podman run` of the shipped image (with a shell to run); its exit code and its logs.
fn run_shipped(cleanup: &mut Cleanup, command: &[&str]) -> (Option<i32>, String) {
    images();
    let name = cleanup.container("app");
    let out = podman_output(
        [
            "run",
            "--name",
            &name,
            "--network",
            "none",
            SHIPPED_WITH_SHELL,
        ]
        .iter()
        .chain(command),
    );
    (out.status.code(), text(&podman_output(["logs", &name])))
}

#[rstest]
#[case::the_apps_code(&["sh", "-c", "echo app-said-hello; exit 3"], 3, "sh exited with code 3")]
#[case::signal_128_plus(&["sh", "-c", "echo app-said-hello; kill -TERM $$"], 143, "killed by SIGTERM (exit code 143)")]
#[case::not_executable_126(&["/not-executable"], 126, "/not-executable")]
#[case::not_found_127(&["no-such-app"], 127, "no-such-app")]
fn the_shipped_image_exits_with_the_apps_code_and_its_logs_hold_roadies_lines_and_the_apps(
    #[case] command: &[&str],
    #[case] code: i32,
    #[case] roadie_says: &str,
) {
    let mut cleanup = Cleanup::new("exit");
    let (got, logs) = run_shipped(&mut cleanup, command);
    assert_eq!(got, Some(code), "podman run {command:?}; logs:\n{logs}");
    assert!(
        logs.lines()
            .any(|l| l.starts_with("[roadie]") && l.contains(roadie_says)),
        "a roadie line naming {roadie_says:?} in the logs:\n{logs}"
    );
    if command[0] == "sh" {
        assert!(logs.contains("app-said-hello"), "the app's output:\n{logs}");
    }
}

#[test]
fn the_shipped_image_is_the_dockerfiles_final_stage_with_roadie_as_entrypoint() {
    images();
    let entrypoint = podman([
        "image",
        "inspect",
        "--format",
        "{{json .Config.Entrypoint}}",
        SHIPPED,
    ]);
    assert_eq!(entrypoint.trim(), r#"["/roadie"]"#);
    // One file in the image: /roadie (a scratch image holds what it copied and nothing else).
    let files = podman([
        "image",
        "inspect",
        "--format",
        "{{len .RootFS.Layers}}",
        SHIPPED,
    ]);
    assert_eq!(files.trim(), "1", "one layer, the COPY of /roadie");
    let version = podman(["run", "--rm", "--network", "none", SHIPPED, "--version"]);
    assert!(version.starts_with("roadie "), "{version}");
}

/// A PostgreSQL container on a fresh network, named `postgres` there, with the example's user
/// and database; returns the network.
fn postgres(cleanup: &mut Cleanup) -> String {
    let network = cleanup.network();
    let name = cleanup.container("postgres");
    podman([
        "run",
        "--detach",
        "--name",
        &name,
        "--network",
        &network,
        "--network-alias",
        "postgres",
        "-e",
        "POSTGRES_USER=app",
        "-e",
        "POSTGRES_PASSWORD=app-pw",
        "-e",
        "POSTGRES_DB=app",
        POSTGRES,
        "postgres",
        "-c",
        "fsync=off",
    ]);
    network
}

const EXAMPLE_URL: &str = "postgresql+psycopg://app:app-pw@postgres:5432/app";

/// Polls GET /health on 127.0.0.1:`port` until it answers 200, failing with the container's
/// logs at the deadline; the time it took.
fn healthy_within(name: &str, port: u16, deadline: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if let Ok((200, _)) = http_get(port, "/health") {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < deadline,
            "no 200 from /health within {deadline:?}; logs:\n{}",
            text(&podman_output(["logs", name]))
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// A free port on 127.0.0.1 for a published container port.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("local_addr")
        .port()
}

/// `podman stop --time GRACE NAME`: how long it took and the container's exit code.
fn stop(name: &str, grace: u32) -> (Duration, i32) {
    let start = Instant::now();
    podman(["stop", "--time", &grace.to_string(), name]);
    let took = start.elapsed();
    let code = podman(["inspect", "--format", "{{.State.ExitCode}}", name]);
    (took, code.trim().parse().expect("an exit code"))
}

#[test]
fn podman_stop_ends_the_fastapi_example_gracefully_with_code_0_long_before_the_kill() {
    images();
    let mut cleanup = Cleanup::new("stop-example");
    let network = postgres(&mut cleanup);
    let name = cleanup.container("app");
    let port = free_port();
    podman([
        "run",
        "--detach",
        "--name",
        &name,
        "--network",
        &network,
        "--publish",
        &format!("127.0.0.1:{port}:8000"),
        "-e",
        &format!("DATABASE_URL={EXAMPLE_URL}"),
        EXAMPLE,
    ]);
    healthy_within(&name, port, Duration::from_secs(60));
    // A 30 s grace: only a graceful stop ends it in the bound below; the engine's default
    // kill would come at 10 s.
    let (took, code) = stop(&name, 30);
    let logs = text(&podman_output(["logs", &name]));
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

#[test]
fn stopped_while_the_database_is_down_roadie_exits_at_once_but_the_shell_entrypoint_is_killed_after_10s()
 {
    images();
    let mut cleanup = Cleanup::new("stop-waiting");
    // Nothing listens on 127.0.0.1:5432 inside a container with no network: both wait forever.
    let roadie = cleanup.container("roadie");
    let shell = cleanup.container("shell");
    for (name, image) in [(&roadie, EXAMPLE), (&shell, EXAMPLE_SHELL)] {
        podman([
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
    wait_for_log(&roadie, "[roadie]");
    wait_for_log(&shell, "no response");
    let (took, code) = stop(&shell, 10);
    assert_eq!(code, 137, "the shell entrypoint is SIGKILLed");
    assert!(
        took >= Duration::from_secs(9),
        "{took:?}: killed at the grace"
    );
    let (took, code) = stop(&roadie, 10);
    let logs = text(&podman_output(["logs", &roadie]));
    assert_eq!(
        code, 143,
        "128+SIGTERM, stopped before the app started; logs:\n{logs}"
    );
    assert!(took < Duration::from_secs(3), "{took:?}; logs:\n{logs}");
}

/// Waits until `podman logs NAME` shows `needle`.
fn wait_for_log(name: &str, needle: &str) {
    let start = Instant::now();
    loop {
        let logs = text(&podman_output(["logs", name]));
        if logs.contains(needle) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{needle:?} not in the logs of {name}:\n{logs}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// podman-compose from the tier's venv, in compose/, as project `project`.
fn compose(project: &str, files: &[&Path], args: &[&str], deadline: Duration) -> Output {
    let mut command = Command::new(engine_dir().join("venv/bin/podman-compose"));
    command
        .env("CONTAINERS_CONF", engine_dir().join("containers.conf"))
        .current_dir(repo().join("compose"))
        .args(["-p", project]);
    for file in files {
        command.arg("-f").arg(file);
    }
    command.args(args);
    let out = within(&mut command, deadline);
    assert!(out.status.success(), "{command:?}: {}", text(&out));
    out
}

/// A compose project brought down (containers, network and volume) when the test ends, with
/// every container's logs printed if it failed.
struct Project {
    name: String,
    files: Vec<PathBuf>,
    /// Holds the override file.
    _dir: tempfile::TempDir,
}

impl Project {
    /// compose/compose.yaml with `extra` files after it, plus one override for what podman
    /// 4.3 and podman-compose 1.6 run differently (compose/README.md): no published ports
    /// (podman-compose hands the replicas' host port range `8000-8002` to every replica whole,
    /// which podman refuses; the test reaches each replica from inside instead), and `podman`
    /// lines of its own.
    fn up(test: &str, extra: &[&str], profile: Option<&str>, podman: &str) -> Self {
        images();
        // The name compose.yaml gives the example's image.
        self::podman(["tag", EXAMPLE, "localhost/roadie-example-fastapi:latest"]);
        let dir = scratch();
        let no_ports = dir.path().join("compose.no-ports.yaml");
        fs::write(
            &no_ports,
            format!("services:\n  app:\n    ports: !reset []\n{podman}"),
        )
        .expect("override");
        let mut files = vec![repo().join("compose/compose.yaml")];
        files.extend(extra.iter().map(|f| repo().join("compose").join(f)));
        files.push(no_ports);
        let project = Self {
            name: format!("roadietest{test}{}", std::process::id()),
            files,
            _dir: dir,
        };
        let mut args = vec![];
        if let Some(profile) = profile {
            args.extend(["--profile", profile]);
        }
        args.extend(["up", "--detach"]);
        project.compose(&args, Duration::from_secs(300));
        project
    }

    fn compose(&self, args: &[&str], deadline: Duration) -> Output {
        let files: Vec<&Path> = self.files.iter().map(PathBuf::as_path).collect();
        compose(&self.name, &files, args, deadline)
    }

    /// The name podman-compose gives replica `n` of `service`.
    fn container(&self, service: &str, n: u32) -> String {
        format!("{}_{service}_{n}", self.name)
    }

    /// Everything replica `n` of `service` printed.
    fn logs(&self, service: &str, n: u32) -> String {
        text(&podman_output(["logs", &self.container(service, n)]))
    }

    /// GET `path` from inside replica `n` of the app (its own loopback) until it answers 200.
    fn answers(&self, n: u32, path: &str, deadline: Duration) -> String {
        let name = self.container("app", n);
        let script = format!(
            "import urllib.request\n\
             print(urllib.request.urlopen('http://127.0.0.1:8000{path}', timeout=5).read().decode())"
        );
        let start = Instant::now();
        loop {
            let out = podman_output(["exec", &name, "python", "-c", &script]);
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            assert!(
                start.elapsed() < deadline,
                "{name} did not answer {path} within {deadline:?}: {}\n{}",
                text(&out),
                self.logs("app", n)
            );
            thread::sleep(Duration::from_millis(250));
        }
    }

    fn sql(&self, query: &str) -> String {
        podman([
            "exec",
            &self.container("postgres", 1),
            "psql",
            "-U",
            "app",
            "-d",
            "app",
            "-Atc",
            query,
        ])
        .trim()
        .to_string()
    }

    /// `stop` (what `down` does first): how long it took, and each app replica's exit code.
    fn stop(&self) -> (Duration, Vec<i32>) {
        let start = Instant::now();
        self.compose(&["stop"], Duration::from_secs(120));
        let took = start.elapsed();
        let codes = (1..=3)
            .map(|n| {
                podman([
                    "inspect",
                    "--format",
                    "{{.State.ExitCode}}",
                    &self.container("app", n),
                ])
                .trim()
                .parse()
                .expect("an exit code")
            })
            .collect();
        (took, codes)
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        if thread::panicking() {
            let listed = podman_output(["ps", "--all", "--format", "{{.Names}}"]);
            for name in String::from_utf8_lossy(&listed.stdout).lines() {
                if name.starts_with(&self.name) {
                    eprintln!(
                        "--- podman logs {name}\n{}",
                        text(&podman_output(["logs", name]))
                    );
                }
            }
        }
        let files: Vec<&Path> = self.files.iter().map(PathBuf::as_path).collect();
        let mut command = Command::new(engine_dir().join("venv/bin/podman-compose"));
        command
            .env("CONTAINERS_CONF", engine_dir().join("containers.conf"))
            .current_dir(repo().join("compose"))
            .args(["-p", &self.name, "--profile", "migrations"]);
        for file in files {
            command.arg("-f").arg(file);
        }
        command.args(["down", "--volumes", "--timeout", "0"]);
        within(&mut command, Duration::from_secs(120));
    }
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

/// What both compose variants must show: three replicas serving the seeded data, the schema at
/// head with one row in alembic_version, and a stop within the grace with code 0.
fn three_replicas_serve_at_head_and_stop_with_0(project: &Project) {
    for n in 1..=3 {
        let body = project.answers(n, "/customers", Duration::from_secs(150));
        assert!(
            body.contains("@"),
            "replica {n} serves the seeded customers: {body}"
        );
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

#[test]
fn compose_up_boots_three_replicas_that_apply_each_migration_once_and_stop_with_0() {
    let project = Project::up("up", &[], None, "");
    three_replicas_serve_at_head_and_stop_with_0(&project);
    let logs: String = (1..=3).map(|n| project.logs("app", n)).collect();
    each_revision_applied_once(&logs);
}

#[test]
fn compose_with_the_migrations_service_migrates_once_before_the_replicas_start() {
    // podman 4.3 cannot start a container whose `--requires` dependency has one of its own
    // ("depends on container ... not found in input list"): the migrations service gives up
    // its `depends_on: postgres` (roadie waits for the database anyway).
    let project = Project::up(
        "migsvc",
        &["compose.migrations-service.yaml"],
        Some("migrations"),
        "  migrations:\n    depends_on: !reset {}\n",
    );
    three_replicas_serve_at_head_and_stop_with_0(&project);
    let migrations = project.logs("migrations", 1);
    each_revision_applied_once(&migrations);
    let code = podman([
        "inspect",
        "--format",
        "{{.State.ExitCode}}",
        &project.container("migrations", 1),
    ]);
    assert_eq!(code.trim(), "0", "{migrations}");
    for n in 1..=3 {
        let logs = project.logs("app", n);
        assert!(
            !logs.contains("Running upgrade"),
            "replica {n} migrated:\n{logs}"
        );
    }
}

#[test]
fn podman_run_it_bash_gets_a_terminal_with_job_control_and_skips_the_boot() {
    images();
    // The database is down: a boot would wait for it; the debug shell does not.
    let argv: Vec<std::ffi::OsString> = [
        "podman",
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
    let conf = engine_dir().join("containers.conf");
    let conf = conf.to_str().expect("UNWRAP: the state directory is UTF-8");
    let mut terminal = OnTerminal::spawn(&argv, None, &[("CONTAINERS_CONF", conf)]);
    terminal.shows("$ ");
    terminal.shell_has_the_foreground();
    terminal.exit_debug_shell("bash");
}

#[test]
fn the_example_boots_and_serves_with_a_read_only_root_filesystem() {
    images();
    let mut cleanup = Cleanup::new("read-only");
    let network = postgres(&mut cleanup);
    let name = cleanup.container("app");
    let port = free_port();
    podman([
        "run",
        "--detach",
        "--read-only",
        "--name",
        &name,
        "--network",
        &network,
        "--publish",
        &format!("127.0.0.1:{port}:8000"),
        "-e",
        &format!("DATABASE_URL={EXAMPLE_URL}"),
        EXAMPLE,
    ]);
    healthy_within(&name, port, Duration::from_secs(60));
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
    #[case] image: &str,
    #[case] options: &[&str],
    #[case] expected: &str,
) {
    images();
    let mut cleanup = Cleanup::new("user");
    let name = cleanup.container("app");
    let args = ["run", "--name", &name, "--network", "none"]
        .iter()
        .chain(options)
        .chain(&[image, "sh", "-c", "echo \"$(id -u) $(id -g) HOME=$HOME\""])
        .copied()
        .collect::<Vec<_>>();
    let out = podman_output(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end_matches('\n'),
        expected,
        "{}",
        text(&out)
    );
}

/// README: `--user` takes "names or numbers ... `HOME` ... `/` for a number with no entry, as
/// `docker run --user`". In an image with no /etc/passwd at all, roadie exits 78 instead:
/// `--user "4242:4343": looking up the user: ENOENT` (src/user.rs takes getpwuid_r's ENOENT,
/// which glibc returns when the file is missing, for an error rather than "no entry").
#[test]
#[ignore = "roadie exits 78 on a numeric --user when the image has no /etc/passwd (src/user.rs)"]
fn roadie_switches_to_a_numeric_user_in_an_image_without_etc_passwd() {
    images();
    let mut cleanup = Cleanup::new("user-no-passwd");
    let name = cleanup.container("app");
    let out = podman_output([
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

#[test]
fn killed_during_a_slow_migration_then_started_again_the_migration_completes_with_nothing_half_applied()
 {
    images();
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
        &["-t", image],
        containerfile.to_str().expect("UNWRAP: UTF-8"),
        context.path(),
    );
    let mut cleanup = Cleanup::new("kill-migration");
    let network = postgres(&mut cleanup);
    let name = cleanup.container("app");
    podman([
        "run",
        "--detach",
        "--name",
        &name,
        "--network",
        &network,
        "-e",
        &format!("DATABASE_URL={EXAMPLE_URL}"),
        image,
    ]);
    wait_for_log(&name, "Running upgrade 0005 -> 0006");
    podman(["kill", "--signal", "KILL", &name]);
    podman(["wait", &name]);
    let db = format!("{}-postgres", cleanup.prefix);
    let sql = |query: &str| {
        podman(["exec", &db, "psql", "-U", "app", "-d", "app", "-Atc", query])
            .trim()
            .to_string()
    };
    // One transaction for the whole upgrade (alembic's transactional DDL on PostgreSQL): the
    // kill rolled back every revision of this boot, none is half there.
    assert_eq!(sql("select to_regclass('slow_step') is null"), "t");
    assert_eq!(sql("select to_regclass('alembic_version') is null"), "t");

    podman(["start", &name]);
    let until = Instant::now() + Duration::from_secs(90);
    while text(&podman_output(["logs", &name]))
        .matches("starting uvicorn")
        .count()
        == 0
    {
        assert!(
            Instant::now() < until,
            "the second boot did not start uvicorn:\n{}",
            text(&podman_output(["logs", &name]))
        );
        thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(sql("select version_num from alembic_version"), "0006");
    assert_eq!(sql("select count(*) from slow_step"), "1");
    assert_eq!(sql("select count(*) from customers"), "3", "seeded once");
}
