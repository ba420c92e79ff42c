//! The engine under the container tests: podman with the tier's configuration
//! (scripts/containers.sh), every command under a deadline; the test images, built once per
//! test process; containers, networks and compose projects removed when a test ends, with
//! their logs printed when it failed.

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

/// scripts/containers.sh's state directory: its containers.conf is the engine's configuration.
pub fn engine_dir() -> &'static Path {
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

/// `podman ARGS...` with the tier's configuration.
pub fn podman_command<I, S>(args: I) -> Command
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
pub fn podman_output<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    within(&mut podman_command(args), ENGINE_DEADLINE)
}

/// `podman ARGS...`, which must succeed; its stdout.
pub fn podman<I, S>(args: I) -> String
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
pub fn images() {
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

/// `podman build` of `file` in `context`, offline (every base image is local).
pub fn build(args: &[&str], file: &str, context: &Path) {
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
pub struct Cleanup {
    pub prefix: String,
    containers: Vec<String>,
    networks: Vec<String>,
}

impl Cleanup {
    pub fn new(test: &str) -> Self {
        Self {
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
pub fn run_shipped(cleanup: &mut Cleanup, command: &[&str]) -> (Option<i32>, String) {
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

/// A PostgreSQL container on a fresh network, named `postgres` there, with the example's user
/// and database; returns the network.
pub fn postgres(cleanup: &mut Cleanup) -> String {
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

/// podman 4.3's aardvark-dns can leave a new container's lookups unanswered for 30-50 s
/// (compose/README.md), close to roadie's 60 s default: containers on a network wait longer.
pub const SLOW_DNS_WAIT: &str = "ROADIE_WAIT_TIMEOUT=3m";

pub const EXAMPLE_URL: &str = "postgresql+psycopg://app:app-pw@postgres:5432/app";

/// Polls GET /health on 127.0.0.1:`port` until it answers 200, failing with the container's
/// logs at the deadline; the time it took.
pub fn healthy_within(name: &str, port: u16, deadline: Duration) -> Duration {
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
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("local_addr")
        .port()
}

/// `podman stop --time GRACE NAME`: how long it took and the container's exit code.
pub fn stop(name: &str, grace: u32) -> (Duration, i32) {
    let start = Instant::now();
    podman(["stop", "--time", &grace.to_string(), name]);
    let took = start.elapsed();
    let code = podman(["inspect", "--format", "{{.State.ExitCode}}", name]);
    (took, code.trim().parse().expect("an exit code"))
}

/// Waits until `podman logs NAME` shows `needle`.
pub fn wait_for_log(name: &str, needle: &str) {
    let start = Instant::now();
    loop {
        let logs = text(&podman_output(["logs", name]));
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

/// podman-compose from the tier's venv, in compose/, as project `project`.
pub fn compose(project: &str, files: &[&Path], args: &[&str], deadline: Duration) -> Output {
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
pub struct Project {
    name: String,
    files: Vec<PathBuf>,
    /// Holds the override file.
    _dir: tempfile::TempDir,
}

impl Project {
    /// compose/compose.yaml with `extra` files after it, plus one override for what podman
    /// 4.3 and podman-compose 1.6 run differently (compose/README.md):
    /// - no published ports: podman-compose hands the replicas' host port range `8000-8002` to
    ///   every replica whole, which podman refuses; the test reaches each replica from inside;
    /// - a 3-minute `--wait-timeout`: aardvark-dns can leave a new container's lookups
    ///   unanswered for 30-50 s (aardvark-dns #389, #482), close to the 60 s default;
    /// - with `migrations_depend_on_nothing`, the migrations service without its
    ///   `depends_on: postgres`: podman 4.3 cannot start a container (an app replica) whose
    ///   `--requires` dependency (migrations) has one of its own.
    pub fn up(
        test: &str,
        extra: &[&str],
        profile: Option<&str>,
        migrations_depend_on_nothing: bool,
    ) -> Self {
        images();
        // The name compose.yaml gives the example's image.
        podman(["tag", EXAMPLE, "localhost/roadie-example-fastapi:latest"]);
        let dir = scratch();
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
        let mut files = vec![repo().join("compose/compose.yaml")];
        files.extend(extra.iter().map(|f| repo().join("compose").join(f)));
        files.push(override_file);
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

    pub fn compose(&self, args: &[&str], deadline: Duration) -> Output {
        let files: Vec<&Path> = self.files.iter().map(PathBuf::as_path).collect();
        compose(&self.name, &files, args, deadline)
    }

    /// The name podman-compose gives replica `n` of `service`.
    pub fn container(&self, service: &str, n: u32) -> String {
        format!("{}_{service}_{n}", self.name)
    }

    /// Everything replica `n` of `service` printed.
    pub fn logs(&self, service: &str, n: u32) -> String {
        text(&podman_output(["logs", &self.container(service, n)]))
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

    pub fn sql(&self, query: &str) -> String {
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
    pub fn stop(&self) -> (Duration, Vec<i32>) {
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
