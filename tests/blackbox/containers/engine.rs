//! The engines under the container tests, every command under a deadline: podman with the
//! tier's configuration (scripts/containers.sh) and Docker Engine, a private daemon
//! (scripts/docker.sh); the test images, built once per test process and engine; containers,
//! networks and compose projects removed when a test ends, with their logs printed when it
//! failed. Each test takes an [`Engine`] and runs the same steps under either.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::http::http_get;
use crate::support::scratch;

/// The image the Dockerfile's final stage makes from the static binary.
pub const SHIPPED: &str = "localhost/roadie-test/roadie:test";
/// The shipped image plus a static busybox: roadie as ENTRYPOINT, shell apps to run.
pub const SHIPPED_WITH_SHELL: &str = "localhost/roadie-test/roadie-busybox:test";
/// examples/fastapi-alembic/Dockerfile built with `ROADIE_IMAGE=SHIPPED`.
pub const EXAMPLE: &str = "localhost/roadie-test/example-fastapi:test";
/// The example with the seeds' shell entrypoint instead of roadie.
pub const EXAMPLE_SHELL: &str = "localhost/roadie-test/example-fastapi-shell:test";
/// The official PostgreSQL image's name: scripts/containers.sh builds a stand-in under it.
pub const POSTGRES: &str = "docker.io/library/postgres:15";
/// What an engine command (build, run, stop) may take before the test fails.
pub const ENGINE_DEADLINE: Duration = Duration::from_secs(120);

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// scripts/containers.sh's state directory: its containers.conf is podman's configuration.
pub fn engine_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| PathBuf::from(last_line_of(&repo().join("scripts/containers.sh"), &[])))
}

/// The socket of the tier's Docker daemon (scripts/docker.sh starts it unless it answers).
pub fn docker_socket() -> &'static Path {
    static SOCKET: OnceLock<PathBuf> = OnceLock::new();
    SOCKET.get_or_init(|| PathBuf::from(last_line_of(&repo().join("scripts/docker.sh"), &[])))
}

/// Runs a set-up script (up to 15 minutes: a first run installs and builds); the last line it
/// printed on stdout.
fn last_line_of(script: &Path, args: &[&str]) -> String {
    let out = within(Command::new(script).args(args), Duration::from_secs(900));
    assert!(out.status.success(), "{script:?}: {}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .last()
        .expect("the state directory")
        .trim()
        .to_string()
}

/// The engine a test runs under: the same steps, either engine's command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// podman 4.3 with runc (scripts/containers.sh).
    Podman,
    /// Docker Engine 20.10 with runc, a daemon of the tier's own (scripts/docker.sh).
    Docker,
}

/// Short names for rstest's `#[values]`, which name a test's case after the expression.
pub const PODMAN: Engine = Engine::Podman;
pub const DOCKER: Engine = Engine::Docker;

impl Engine {
    /// The engine's client: podman, or Docker 20.10's own (a newer client elsewhere on PATH
    /// would talk to the 20.10 daemon too, but this is the one that ships with it).
    pub fn program(self) -> &'static str {
        match self {
            Engine::Podman => "podman",
            Engine::Docker => "/usr/bin/docker",
        }
    }

    /// What the client needs in its environment: podman's configuration, Docker's socket.
    pub fn env(self) -> (&'static str, String) {
        match self {
            Engine::Podman => (
                "CONTAINERS_CONF",
                engine_dir().join("containers.conf").display().to_string(),
            ),
            Engine::Docker => (
                "DOCKER_HOST",
                format!("unix://{}", docker_socket().display()),
            ),
        }
    }

    /// Where this engine's test images are built under a lock (they share tags).
    fn state_dir(self) -> &'static Path {
        match self {
            Engine::Podman => engine_dir(),
            Engine::Docker => docker_socket()
                .parent()
                .expect("UNWRAP: a socket's directory"),
        }
    }

    /// `ENGINE ARGS...` with the engine's environment.
    pub fn command<I, S>(self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut command = Command::new(self.program());
        let (key, value) = self.env();
        command.env(key, value).args(args);
        command
    }

    /// `ENGINE ARGS...`, whatever its exit code.
    pub fn output<I, S>(self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        within(&mut self.command(args), ENGINE_DEADLINE)
    }

    /// `ENGINE ARGS...`, which must succeed; its stdout.
    pub fn ok<I, S>(self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut command = self.command(args);
        let out = within(&mut command, ENGINE_DEADLINE);
        assert!(out.status.success(), "{command:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Everything container `name` printed (stdout and stderr), with the engine's status line.
    pub fn logs(self, name: &str) -> String {
        text(&self.output(["logs", name]))
    }

    /// `ENGINE rm` of a container, at once, whatever state it is in.
    pub fn remove(self, name: &str) {
        match self {
            Engine::Podman => self.output(["rm", "--force", "--volumes", "--time", "0", name]),
            Engine::Docker => self.output(["rm", "--force", "--volumes", name]),
        };
    }

    /// The exit code the engine recorded for container `name`.
    pub fn exit_code(self, name: &str) -> i32 {
        self.ok(["inspect", "--format", "{{.State.ExitCode}}", name])
            .trim()
            .parse()
            .expect("an exit code")
    }
}

/// Runs `command` to its end, killed at `deadline` (then the test fails with what it printed).
pub fn within(command: &mut Command, deadline: Duration) -> Output {
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

pub fn text(out: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Builds the test images under `engine` once per test process, serialised across processes by
/// a lock (they share tags): the static binary (scripts/build-static.sh, as the Dockerfile's build stage
/// runs it; cached by cargo after the first), the Dockerfile's final stage from it, a busybox
/// layer on top, and the FastAPI example's Dockerfile with its `COPY --from` of it.
pub fn images(engine: Engine) {
    static BUILT: [OnceLock<()>; 2] = [OnceLock::new(), OnceLock::new()];
    BUILT[engine as usize].get_or_init(|| {
        use std::os::fd::AsRawFd;
        let lock = fs::File::create(engine.state_dir().join("images.lock")).expect("lock file");
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
            engine,
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
            engine,
            &["-t", SHIPPED_WITH_SHELL],
            containerfile
                .to_str()
                .expect("UNWRAP: a temp path is UTF-8"),
            shell.path(),
        );

        let example = repo().join("examples/fastapi-alembic");
        build(
            engine,
            &[
                "--build-arg",
                &format!("ROADIE_IMAGE={SHIPPED}"),
                "-t",
                EXAMPLE,
            ],
            example.join("Dockerfile").to_str().expect("UNWRAP: UTF-8"),
            &example,
        );
        let example_dockerfile =
            fs::read_to_string(example.join("Dockerfile")).expect("the example's Dockerfile");
        assert!(
            example_dockerfile.contains(&format!("\nCMD {EXAMPLE_CMD}\n")),
            "EXAMPLE_CMD is the example's CMD"
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
            engine,
            &["-t", EXAMPLE_SHELL],
            containerfile.to_str().expect("UNWRAP: UTF-8"),
            seeds.path(),
        );
        drop(lock);
    });
}

/// The example's CMD (its Dockerfile): a new ENTRYPOINT resets the CMD an image inherits.
pub const EXAMPLE_CMD: &str =
    r#"["uvicorn", "app.main:app", "--workers", "2", "--host", "0.0.0.0", "--port", "8000"]"#;

/// The entrypoint the seeds ship, the one roadie replaces: poll the server, migrate, exec.
pub const SEEDS_ENTRYPOINT: &str = "#!/bin/sh
set -e
until pg_isready -h \"$PGHOST\" -p \"${PGPORT:-5432}\"; do sleep 1; done
alembic upgrade head
exec \"$@\"
";

/// `ENGINE build` of `file` in `context`, offline (every base image is local). Docker's with
/// BuildKit, which builds only the stages the target needs (the classic builder would try to
/// pull the Dockerfile's toolchain stage for `--target prebuilt`) and uses local images as
/// they are.
pub fn build(engine: Engine, args: &[&str], file: &str, context: &Path) {
    let pull: &[&str] = match engine {
        Engine::Podman => &["--pull=never"],
        Engine::Docker => &[],
    };
    let mut command = engine.command(
        ["build", "--quiet", "--network=none", "-f", file]
            .iter()
            .chain(pull)
            .chain(args)
            .map(|s| s.to_string())
            .chain([context.to_string_lossy().into_owned()]),
    );
    command.env("DOCKER_BUILDKIT", "1");
    let out = within(&mut command, ENGINE_DEADLINE);
    assert!(out.status.success(), "{command:?}: {}", text(&out));
}

/// Containers and networks a test made, removed when it ends, with their logs printed if it
/// failed.
pub struct Cleanup {
    pub engine: Engine,
    pub prefix: String,
    containers: Vec<String>,
    networks: Vec<String>,
}

impl Cleanup {
    pub fn new(engine: Engine, test: &str) -> Self {
        Self {
            engine,
            prefix: format!("roadie-test-{test}-{}", std::process::id()),
            containers: vec![],
            networks: vec![],
        }
    }

    /// A container name for this test, removed at the end.
    pub fn container(&mut self, role: &str) -> String {
        let name = format!("{}-{role}", self.prefix);
        self.containers.push(name.clone());
        name
    }

    /// A fresh bridge network (DNS between its containers), removed at the end.
    pub fn network(&mut self) -> String {
        let name = format!("{}-net", self.prefix);
        self.engine.ok(["network", "create", &name]);
        self.networks.push(name.clone());
        name
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for name in &self.containers {
            if thread::panicking() {
                eprintln!(
                    "--- {:?} logs {name}\n{}",
                    self.engine,
                    self.engine.logs(name)
                );
            }
            self.engine.remove(name);
        }
        for name in &self.networks {
            self.engine.output(["network", "rm", name]);
        }
    }
}

/// `ENGINE run` of the shipped image (with a shell to run); its exit code and its logs.
pub fn run_shipped(cleanup: &mut Cleanup, command: &[&str]) -> (Option<i32>, String) {
    let engine = cleanup.engine;
    images(engine);
    let name = cleanup.container("app");
    let out = engine.output(
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
    (out.status.code(), engine.logs(&name))
}

/// A PostgreSQL container on a fresh network, named `postgres` there, with the example's user
/// and database; returns the network.
pub fn postgres(cleanup: &mut Cleanup) -> String {
    let network = cleanup.network();
    let name = cleanup.container("postgres");
    cleanup.engine.ok([
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

/// podman 4.3's aardvark-dns can leave a new container's lookups unanswered for 30-50 s
/// (compose/README.md), close to roadie's 60 s default: containers on a network wait longer
/// (under either engine, so both run the same command).
pub const SLOW_DNS_WAIT: &str = "ROADIE_WAIT_TIMEOUT=3m";

pub const EXAMPLE_URL: &str = "postgresql+psycopg://app:app-pw@postgres:5432/app";

/// Polls GET /health on 127.0.0.1:`port` until it answers 200, failing with the container's
/// logs at the deadline; the time it took.
pub fn healthy_within(engine: Engine, name: &str, port: u16, deadline: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if let Ok((200, _)) = http_get(port, "/health") {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < deadline,
            "no 200 from /health within {deadline:?}; logs:\n{}",
            engine.logs(name)
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// A free port on 127.0.0.1 for a published container port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("local_addr")
        .port()
}

/// `ENGINE stop --time GRACE NAME`: how long it took and the container's exit code.
pub fn stop(engine: Engine, name: &str, grace: u32) -> (Duration, i32) {
    let start = Instant::now();
    engine.ok(["stop", "--time", &grace.to_string(), name]);
    let took = start.elapsed();
    (took, engine.exit_code(name))
}

/// Waits until `ENGINE logs NAME` shows `needle`.
pub fn wait_for_log(engine: Engine, name: &str, needle: &str) {
    let start = Instant::now();
    loop {
        let logs = engine.logs(name);
        if logs.contains(needle) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "{needle:?} not in the logs of {name}:\n{logs}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// The compose tool for `engine`, in compose/, as project `project`, with `files`: podman-compose
/// 1.6 from the tier's venv, or Debian's docker-compose 1.29 (Compose v1) against the tier's
/// Docker daemon.
fn compose_command(engine: Engine, project: &str, files: &[PathBuf]) -> Command {
    let mut command = match engine {
        Engine::Podman => Command::new(engine_dir().join("venv/bin/podman-compose")),
        Engine::Docker => Command::new("docker-compose"),
    };
    let (key, value) = engine.env();
    command
        .env(key, value)
        .current_dir(repo().join("compose"))
        .args(["-p", project]);
    for file in files {
        command.arg("-f").arg(file);
    }
    command
}

/// A compose project brought down (containers, network and volume) when the test ends, with
/// every container's logs printed if it failed.
pub struct Project {
    pub engine: Engine,
    name: String,
    files: Vec<PathBuf>,
    /// Holds the override file.
    _dir: tempfile::TempDir,
}

impl Project {
    /// compose/compose.yaml with `extra` files after it, `up --detach` with `profile` on.
    ///
    /// Under Docker (docker-compose 1.29) the files run as they are: the replicas publish
    /// their host ports 8000-8002. Under podman, one override for what podman 4.3 and
    /// podman-compose 1.6 run differently (compose/README.md):
    /// - no published ports: podman-compose hands the replicas' host port range `8000-8002` to
    ///   every replica whole, which podman refuses; the test reaches each replica from inside;
    /// - a 3-minute `--wait-timeout`: aardvark-dns can leave a new container's lookups
    ///   unanswered for 30-50 s (aardvark-dns #389, #482), close to the 60 s default;
    /// - with `migrations_depend_on_nothing`, the migrations service without its
    ///   `depends_on: postgres`: podman 4.3 cannot start a container (an app replica) whose
    ///   `--requires` dependency (migrations) has one of its own.
    pub fn up(
        engine: Engine,
        test: &str,
        extra: &[&str],
        profile: Option<&str>,
        migrations_depend_on_nothing: bool,
    ) -> Self {
        images(engine);
        // The name compose.yaml gives the example's image (`image: roadie-example-fastapi`),
        // so `up` finds it built.
        let tag = match engine {
            Engine::Podman => "localhost/roadie-example-fastapi:latest",
            Engine::Docker => "roadie-example-fastapi:latest",
        };
        engine.ok(["tag", EXAMPLE, tag]);
        let dir = scratch();
        let mut files = vec![repo().join("compose/compose.yaml")];
        files.extend(extra.iter().map(|f| repo().join("compose").join(f)));
        if engine == Engine::Podman {
            let override_file = dir.path().join("compose.podman.yaml");
            let mut text = String::from(
                "services:\n  \
                   app:\n    ports: !reset []\n    environment:\n      ROADIE_WAIT_TIMEOUT: 3m\n  \
                   migrations:\n    environment:\n      ROADIE_WAIT_TIMEOUT: 3m\n",
            );
            if migrations_depend_on_nothing {
                text.push_str("    depends_on: !reset {}\n");
            }
            fs::write(&override_file, text).expect("override");
            files.push(override_file);
        }
        let project = Self {
            engine,
            name: format!("roadietest{test}{}", std::process::id()),
            files,
            _dir: dir,
        };
        let mut args = vec![];
        if let Some(profile) = profile {
            args.extend(["--profile", profile]);
        }
        args.extend(["up", "--detach"]);
        if engine == Engine::Docker {
            // The image is there (tagged above); Compose would build it only if it were not.
            args.push("--no-build");
        }
        project.compose(&args, Duration::from_secs(300));
        project
    }

    /// The compose tool with this project's files and `args`, which must succeed.
    pub fn compose(&self, args: &[&str], deadline: Duration) -> Output {
        let mut command = compose_command(self.engine, &self.name, &self.files);
        command.args(args);
        let out = within(&mut command, deadline);
        assert!(out.status.success(), "{command:?}: {}", text(&out));
        out
    }

    /// The name both compose tools give replica `n` of `service`.
    pub fn container(&self, service: &str, n: u32) -> String {
        format!("{}_{service}_{n}", self.name)
    }

    /// Everything replica `n` of `service` printed.
    pub fn logs(&self, service: &str, n: u32) -> String {
        self.engine.logs(&self.container(service, n))
    }

    /// GET `path` from inside replica `n` of the app (its own loopback) until it answers 200.
    pub fn answers(&self, n: u32, path: &str, deadline: Duration) -> String {
        let name = self.container("app", n);
        // A generous timeout, so no abandoned request is left in flight: under load aardvark
        // (podman's DNS) can keep the app's lookup of `postgres` waiting for many seconds, and
        // a request still stuck there at `stop` holds its uvicorn worker past the stop grace
        // (SIGKILL, 137) for a reason that is neither roadie's nor the compose file's.
        let script = format!(
            "import urllib.request\n\
             print(urllib.request.urlopen('http://127.0.0.1:8000{path}', timeout=60).read().decode())"
        );
        let start = Instant::now();
        loop {
            let out = self.engine.output(["exec", &name, "python", "-c", &script]);
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

    pub fn sql(&self, query: &str) -> String {
        self.engine
            .ok([
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
    pub fn stop(&self) -> (Duration, Vec<i32>) {
        let start = Instant::now();
        self.compose(&["stop"], Duration::from_secs(120));
        let took = start.elapsed();
        let codes = (1..=3)
            .map(|n| self.engine.exit_code(&self.container("app", n)))
            .collect();
        (took, codes)
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        if thread::panicking() {
            let listed = self
                .engine
                .output(["ps", "--all", "--format", "{{.Names}}"]);
            for name in String::from_utf8_lossy(&listed.stdout).lines() {
                if name.starts_with(&self.name) {
                    eprintln!("--- logs {name}\n{}", self.engine.logs(name));
                }
            }
        }
        let mut command = compose_command(self.engine, &self.name, &self.files);
        command.args([
            "--profile",
            "migrations",
            "down",
            "--volumes",
            "--timeout",
            "0",
        ]);
        within(&mut command, Duration::from_secs(120));
    }
}
