//! examples/swarm/stack.yaml under Docker Swarm, for real: a one-node swarm on the tier's
//! Docker daemon (scripts/docker.sh; `docker swarm init --advertise-addr 127.0.0.1`), the
//! stack deployed with `docker stack deploy`, its overlay network and the service's virtual IP,
//! updates by deploying the stack again with a new image, as a user does.

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use super::engine::{DOCKER, EXAMPLE, build, images, repo, text, within};
use crate::support::scratch;

/// The swarm the stacks run on: the tier's daemon as a manager of a swarm of its own (made
/// once, kept; `scripts/docker.sh stop` leaves it).
pub fn swarm() {
    let state = DOCKER.ok(["info", "--format", "{{.Swarm.LocalNodeState}}"]);
    if state.trim() != "active" {
        DOCKER.ok(["swarm", "init", "--advertise-addr", "127.0.0.1"]);
    }
}

/// A stack of examples/swarm/stack.yaml with `APP_IMAGE`, removed (with its volume) when the
/// test ends, every task's logs printed if it failed.
pub struct Stack {
    pub name: String,
    /// The one-off client containers a test ran on the stack's network.
    clients: Vec<String>,
}

impl Stack {
    /// `docker stack deploy` of the stack file with `image` as the app's image.
    pub fn deploy(test: &str, image: &str) -> Self {
        images(DOCKER);
        swarm();
        let stack = Self {
            name: format!("rt{test}{}", std::process::id()),
            clients: vec![],
        };
        stack.deploy_image(image);
        stack
    }

    /// Deploys the stack again with `image`: an update of the app service (a rolling one once
    /// it runs), returning at once.
    pub fn deploy_image(&self, image: &str) {
        let mut command = DOCKER.command([
            "stack",
            "deploy",
            "--resolve-image",
            "never",
            "-c",
            "stack.yaml",
            &self.name,
        ]);
        command
            .current_dir(repo().join("examples/swarm"))
            .env("APP_IMAGE", image);
        let out = within(&mut command, Duration::from_secs(120));
        assert!(out.status.success(), "{command:?}: {}", text(&out));
    }

    pub fn service(&self, service: &str) -> String {
        format!("{}_{service}", self.name)
    }

    /// The containers of `service`'s tasks on this node, `all` or the running ones, with
    /// `filters` (`health=healthy`, `ancestor=IMAGE`).
    pub fn containers(&self, service: &str, all: bool, filters: &[&str]) -> Vec<String> {
        let label = format!(
            "label=com.docker.swarm.service.name={}",
            self.service(service)
        );
        let mut args = vec!["ps", "--quiet", "--no-trunc", "--filter", &label];
        if all {
            args.push("--all");
        }
        for filter in filters {
            args.extend(["--filter", filter]);
        }
        DOCKER.ok(args).lines().map(str::to_string).collect()
    }

    /// Waits until `n` tasks of the app are running and healthy (the healthcheck: GET /health
    /// answered 200); how long it took.
    pub fn healthy(&self, n: usize, deadline: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let healthy = self.containers("app", false, &["health=healthy"]).len();
            if healthy == n {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < deadline,
                "{healthy} of {n} app tasks healthy after {deadline:?}:\n{}",
                self.tasks()
            );
            thread::sleep(Duration::from_millis(250));
        }
    }

    /// `docker service ps` of the app: every task, its state and error.
    pub fn tasks(&self) -> String {
        DOCKER.ok([
            "service",
            "ps",
            "--no-trunc",
            "--format",
            "{{.Name}} {{.Image}} {{.DesiredState}} {{.CurrentState}} {{.Error}}",
            &self.service("app"),
        ])
    }

    /// Everything every app task printed, dead or alive.
    pub fn app_logs(&self) -> String {
        self.containers("app", true, &[])
            .iter()
            .map(|id| DOCKER.logs(id))
            .collect()
    }

    /// Waits until the app service's update is `state` (`completed`, `rollback_completed`).
    pub fn update_ends(&self, state: &str, deadline: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let got = DOCKER.ok([
                "service",
                "inspect",
                "--format",
                "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}",
                &self.service("app"),
            ]);
            if got.trim() == state {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < deadline,
                "the update is {got:?}, not {state:?}, after {deadline:?}:\n{}",
                self.tasks()
            );
            thread::sleep(Duration::from_millis(250));
        }
    }

    pub fn sql(&self, query: &str) -> String {
        let db = self.containers("postgres", false, &[]);
        let [db] = db.as_slice() else {
            panic!("one postgres task: {db:?}");
        };
        DOCKER
            .ok(["exec", db, "psql", "-U", "app", "-d", "app", "-Atc", query])
            .trim()
            .to_string()
    }

    /// A client on the stack's network asking every task of the app, as a load balancer in
    /// front would: each round it resolves `app` (DNS round robin: the running, healthy tasks)
    /// and GETs /health from each address, then sleeps 50 ms, until it is stopped. One line
    /// per request: `ok ADDRESS` or `fail ADDRESS WHY`.
    pub fn client(&mut self) -> String {
        let name = format!("{}-client{}", self.name, self.clients.len());
        let script = "import socket, time, urllib.request\n\
            while True:\n    \
                try:\n        \
                    addresses = socket.gethostbyname_ex('app')[2]\n    \
                except OSError as error:\n        \
                    print(f'fail app {error!r}', flush=True)\n        \
                    addresses = []\n    \
                for address in addresses:\n        \
                    try:\n            \
                        url = f'http://{address}:8000/health'\n            \
                        status = urllib.request.urlopen(url, timeout=10).status\n            \
                        print(f'ok {address}' if status == 200 else f'fail {address} {status}', flush=True)\n        \
                    except Exception as error:\n            \
                        print(f'fail {address} {error!r}', flush=True)\n    \
                time.sleep(0.05)\n";
        DOCKER.ok([
            "run",
            "--detach",
            "--name",
            &name,
            "--network",
            &format!("{}_default", self.name),
            "python:3.11-slim",
            "python",
            "-c",
            script,
        ]);
        self.clients.push(name.clone());
        name
    }

    /// Stops a client: how many requests it made, to how many tasks, and those that failed.
    pub fn client_counts(&self, client: &str) -> (usize, usize, Vec<String>) {
        DOCKER.ok(["stop", "--time", "1", client]);
        let logs = DOCKER.ok(["logs", client]);
        let asked = logs.lines().count();
        let mut tasks: Vec<&str> = logs.lines().filter_map(|l| l.split(' ').nth(1)).collect();
        tasks.sort();
        tasks.dedup();
        let failed = logs
            .lines()
            .filter(|l| !l.starts_with("ok "))
            .map(str::to_string)
            .collect();
        (asked, tasks.len(), failed)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if thread::panicking() {
            for id in self.containers("app", true, &[]) {
                eprintln!("--- app task {id}\n{}", DOCKER.logs(&id));
            }
            eprintln!("--- tasks\n{}", self.tasks());
        }
        for client in &self.clients {
            DOCKER.remove(client);
        }
        DOCKER.output(["stack", "rm", &self.name]);
        let label = format!("label=com.docker.stack.namespace={}", self.name);
        let until = Instant::now() + Duration::from_secs(120);
        while Instant::now() < until {
            let left = DOCKER.output(["ps", "--all", "--quiet", "--filter", &label]);
            if left.stdout.is_empty() {
                break;
            }
            thread::sleep(Duration::from_millis(250));
        }
        DOCKER.output(["volume", "rm", &format!("{}_pgdata", self.name)]);
    }
}

/// The example's image with `revisions` (file name, source) added to migrations/versions,
/// tagged `tag`.
pub fn example_with(tag: &str, revisions: &[(&str, &str)]) -> String {
    let context = scratch();
    let mut containerfile = format!("FROM {EXAMPLE}\n");
    for (file, source) in revisions {
        fs::write(context.path().join(file), source).expect("revision");
        containerfile.push_str(&format!("COPY {file} migrations/versions/{file}\n"));
    }
    let path = context.path().join("Containerfile");
    fs::write(&path, containerfile).expect("Containerfile");
    build(
        DOCKER,
        &["-t", tag],
        path.to_str().expect("UNWRAP: UTF-8"),
        context.path(),
    );
    tag.to_string()
}

/// How many times each of `revisions` was applied across `logs` (alembic's "Running upgrade
/// A -> B," line).
pub fn applied(logs: &str, revision: &str) -> usize {
    logs.lines()
        .filter(|l| l.contains("Running upgrade") && l.contains(&format!("-> {revision},")))
        .count()
}

/// An expand-only revision after the example's head: a nullable column the old code ignores.
const EXPAND: (&str, &str) = (
    "0006_add_customer_nickname.py",
    r#""""add column customers.nickname (expand only: nullable, the old code ignores it)"""
from alembic import op
import sqlalchemy as sa

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.add_column("customers", sa.Column("nickname", sa.String(40), nullable=True))


def downgrade() -> None:
    op.drop_column("customers", "nickname")
"#,
);

/// A revision after EXPAND that creates a table, then fails.
const BROKEN: (&str, &str) = (
    "0007_broken.py",
    r#""""a broken revision: creates a table, then divides by zero"""
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.execute("CREATE TABLE half_done (id integer)")
    op.execute("SELECT 1 / 0")


def downgrade() -> None:
    op.execute("DROP TABLE half_done")
"#,
);

/// What a task's roadie says when it finds the schema at head before the lock.
const AT_HEAD: &str = "alembic at head 0005; alembic not started";

#[test]
fn swarm_deploys_5_tasks_on_an_empty_database_that_migrate_once_and_scales_to_20_at_head_without_python()
 {
    let stack = Stack::deploy("deploy", EXAMPLE);
    stack.healthy(5, Duration::from_secs(600));
    let logs = stack.app_logs();
    for revision in ["0001", "0002", "0003", "0004", "0005"] {
        assert_eq!(applied(&logs, revision), 1, "revision {revision}:\n{logs}");
    }
    assert_eq!(
        stack.sql("select count(*), max(version_num) from alembic_version"),
        "1|0005"
    );
    assert_eq!(
        stack.sql("select count(*) from customers"),
        "3",
        "seeded once"
    );
    // No task failed or was restarted: 5 tasks in all, 5 containers in all.
    let tasks = stack.tasks();
    assert_eq!(tasks.lines().count(), 5, "{tasks}");
    assert_eq!(stack.containers("app", true, &[]).len(), 5, "{tasks}");

    // At head: 15 more tasks, each finds the schema at head before the lock and never
    // starts alembic (Python starts only as the app itself).
    let first: Vec<String> = stack.containers("app", true, &[]);
    DOCKER.ok([
        "service",
        "scale",
        "--detach",
        &format!("{}=20", stack.service("app")),
    ]);
    stack.healthy(20, Duration::from_secs(600));
    let all = stack.containers("app", true, &[]);
    assert_eq!(
        all.len(),
        20,
        "no task failed or restarted:\n{}",
        stack.tasks()
    );
    for id in all.iter().filter(|id| !first.contains(id)) {
        let logs = DOCKER.logs(id);
        assert!(
            logs.contains(AT_HEAD),
            "task {id} did not skip alembic:\n{logs}"
        );
        assert!(
            !logs.contains("Running upgrade"),
            "task {id} migrated:\n{logs}"
        );
    }
}

#[test]
fn swarm_rolls_an_expand_migration_out_once_and_a_failing_one_back_with_0_failed_requests() {
    images(DOCKER);
    let v2 = example_with("localhost/roadie-test/example-fastapi-v2:test", &[EXPAND]);
    let v3 = example_with(
        "localhost/roadie-test/example-fastapi-v3:test",
        &[EXPAND, BROKEN],
    );
    let mut stack = Stack::deploy("update", EXAMPLE);
    stack.healthy(5, Duration::from_secs(600));

    // The update to v2: one revision more, applied once by the first new task, while the
    // old tasks serve; start-first, so 5 answer throughout.
    let client = stack.client();
    stack.deploy_image(&v2);
    stack.update_ends("completed", Duration::from_secs(600));
    stack.healthy(5, Duration::from_secs(120));
    let (asked, tasks, failed) = stack.client_counts(&client);
    // The 5 old tasks, then the 5 new ones, answered.
    assert!(tasks >= 10, "{asked} requests to {tasks} tasks");
    assert!(
        failed.is_empty(),
        "{} of {asked} failed: {failed:?}",
        failed.len()
    );
    assert_eq!(
        applied(&stack.app_logs(), "0006"),
        1,
        "{}",
        stack.app_logs()
    );
    assert_eq!(stack.sql("select version_num from alembic_version"), "0006");
    let running = stack.containers("app", false, &[&format!("ancestor={v2}")]);
    assert_eq!(running.len(), 5, "{}", stack.tasks());

    // The update to v3, whose migration fails: the first new task exits 65 naming it, the
    // service rolls back to v2, and the v2 tasks serve throughout.
    let client = stack.client();
    stack.deploy_image(&v3);
    stack.update_ends("rollback_completed", Duration::from_secs(600));
    stack.healthy(5, Duration::from_secs(120));
    let (asked, tasks, failed) = stack.client_counts(&client);
    assert!(tasks >= 5, "{asked} requests to {tasks} tasks");
    assert!(
        failed.is_empty(),
        "{} of {asked} failed: {failed:?}",
        failed.len()
    );
    let broken = stack.containers("app", true, &[&format!("ancestor={v3}")]);
    assert!(!broken.is_empty(), "no v3 task ran:\n{}", stack.tasks());
    let first = &broken[broken.len() - 1];
    let logs = DOCKER.logs(first);
    assert_eq!(DOCKER.exit_code(first), 65, "{logs}");
    // alembic names the revision it ran; roadie, the command that failed and that the app
    // was not started.
    assert!(
        logs.contains("Running upgrade 0006 -> 0007") && logs.contains("DivisionByZero"),
        "the failed revision and its error:\n{logs}"
    );
    assert!(
        logs.lines().any(|l| l.starts_with("[roadie] ERROR")
            && l.contains("alembic upgrade head")
            && l.contains("the app is not started")),
        "roadie's line:\n{logs}"
    );
    let running = stack.containers("app", false, &[&format!("ancestor={v2}")]);
    assert_eq!(running.len(), 5, "rolled back to v2:\n{}", stack.tasks());
    // Nothing half-applied: alembic's one transaction rolled the table back.
    assert_eq!(stack.sql("select version_num from alembic_version"), "0006");
    assert_eq!(stack.sql("select to_regclass('half_done') is null"), "t");
}

/// A revision after the example's head that creates a table, then holds its transaction 10 s:
/// a migration to kill halfway.
const SLOW: (&str, &str) = (
    "0006_slow.py",
    r#""""a slow revision: creates a table, then takes 10 s"""
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.execute("CREATE TABLE slow_step (id integer PRIMARY KEY)")
    op.execute("INSERT INTO slow_step VALUES (1)")
    op.execute("SELECT pg_sleep(10)")


def downgrade() -> None:
    op.execute("DROP TABLE slow_step")
"#,
);

#[test]
fn swarm_task_killed_mid_migration_another_task_completes_it_and_no_lock_is_left() {
    images(DOCKER);
    let slow = example_with("localhost/roadie-test/example-fastapi-slow:test", &[SLOW]);
    let stack = Stack::deploy("kill", &slow);
    // The task holding the lock: the one whose alembic reached the slow revision.
    let until = Instant::now() + Duration::from_secs(300);
    let migrating = loop {
        let found = stack
            .containers("app", false, &[])
            .into_iter()
            .find(|id| DOCKER.logs(id).contains("Running upgrade 0005 -> 0006"));
        if let Some(id) = found {
            break id;
        }
        assert!(
            Instant::now() < until,
            "no task reached 0006:\n{}",
            stack.tasks()
        );
        thread::sleep(Duration::from_millis(100));
    };
    DOCKER.ok(["kill", &migrating]);
    stack.healthy(5, Duration::from_secs(600));
    let logs = stack.app_logs();
    // The killed task's transaction was rolled back whole; one other task ran every revision
    // again and committed: the slow one started twice, its row is there once.
    assert_eq!(applied(&logs, "0006"), 2, "{logs}");
    assert_eq!(applied(&logs, "0001"), 2, "{logs}");
    assert_eq!(stack.sql("select version_num from alembic_version"), "0006");
    assert_eq!(stack.sql("select count(*) from slow_step"), "1");
    assert_eq!(
        stack.sql("select count(*) from customers"),
        "3",
        "seeded once"
    );
    // No lock left: roadie's advisory lock went with the killed task's session, and the task
    // that completed the migration released its own.
    assert_eq!(
        stack.sql("select count(*) from pg_locks where locktype = 'advisory'"),
        "0"
    );
    // The killed task was replaced (restart policy): 6 tasks in all, one of them failed.
    let tasks = stack.tasks();
    assert_eq!(tasks.lines().count(), 6, "{tasks}");
}
