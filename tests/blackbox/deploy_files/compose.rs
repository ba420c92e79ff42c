//! compose/: docker-compose 1.29 (Debian's; it needs no engine for `config`) resolves the files
//! as `up` would (anchors merged, the override applied, paths made absolute), and the model it
//! prints is what is asserted. The services' own environment then boots the example for real.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::{DEFAULT_STOP_GRACE, MARGIN, evidence, example_dir, output, repo, seconds, strings};
use super::{venv_bin, yaml_documents};
use crate::support::postgres::Postgres;
use crate::support::server::Server as _;
use crate::support::{Mode, roadie, scratch};

const OVERRIDE: &str = "compose.migrations-service.yaml";

/// `docker-compose [--profile P]... -f compose.yaml [-f F]... ARGS` in compose/, with nothing
/// from the caller's environment that Compose would read.
fn docker_compose(files: &[&str], profiles: &[&str], args: &[&str]) -> String {
    let mut command = Command::new("docker-compose");
    command.current_dir(repo().join("compose"));
    for name in [
        "COMPOSE_FILE",
        "COMPOSE_PROFILES",
        "COMPOSE_PROJECT_NAME",
        "ROADIE_IMAGE",
    ] {
        command.env_remove(name);
    }
    for profile in profiles {
        command.args(["--profile", profile]);
    }
    for file in ["compose.yaml"].iter().chain(files) {
        command.args(["-f", file]);
    }
    command.args(args);
    let out = output(
        command,
        b"",
        "scripts/test.sh installs it (apt-get install docker-compose)",
    );
    let what = format!("docker-compose {files:?} {profiles:?} {args:?}");
    assert!(out.status.success(), "{}", evidence(&what, &out));
    String::from_utf8(out.stdout).expect("YAML is UTF-8")
}

/// The model `docker-compose config` resolves from compose.yaml and `files`.
fn config(files: &[&str], profiles: &[&str]) -> Value {
    let mut documents = yaml_documents(&docker_compose(files, profiles, &["config"]));
    assert_eq!(documents.len(), 1, "one model: {documents:?}");
    documents.remove(0)
}

/// A service's `environment:` as a map (Compose prints it as one).
fn environment(service: &Value) -> BTreeMap<&str, &str> {
    service["environment"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or_else(|| panic!("{k}: {v}"))))
        .collect()
}

/// The secrets a service mounts (at /run/secrets/NAME).
fn secrets(service: &Value) -> Vec<&str> {
    service["secrets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| s["source"].as_str().expect("a secret's source"))
        .collect()
}

/// The services built from the example, i.e. the ones roadie boots.
fn roadie_services(model: &Value) -> Vec<(&str, &Value)> {
    let services = model["services"].as_object().expect("services");
    let found: Vec<_> = services
        .iter()
        .filter(|(_, s)| s["image"] == "roadie-example-fastapi")
        .map(|(name, s)| (name.as_str(), s))
        .collect();
    assert!(!found.is_empty(), "no service runs the example: {model}");
    found
}

#[test]
fn compose_yaml_runs_three_replicas_of_the_app_beside_postgres_with_the_secrets_in_files() {
    let model = config(&[], &[]);
    let services = &model["services"];

    let postgres = &services["postgres"];
    assert_eq!(postgres["image"], "postgres:15");
    let test = strings(&postgres["healthcheck"]["test"]);
    assert_eq!(&test[..2], ["CMD", "pg_isready"], "{postgres}");
    assert_eq!(
        environment(postgres)["POSTGRES_PASSWORD_FILE"],
        "/run/secrets/postgres-password"
    );
    assert_eq!(secrets(postgres), ["postgres-password"]);

    let app = &services["app"];
    assert_eq!(app["deploy"]["replicas"], 3, "{app}");
    // The image's ENTRYPOINT (roadie) and CMD (uvicorn) run, with nothing in between.
    assert!(app.get("command").is_none() && app.get("entrypoint").is_none());
    // roadie waits for the database itself: started, not healthy.
    assert_eq!(
        app["depends_on"]["postgres"]["condition"],
        "service_started"
    );
    let build = Path::new(app["build"]["context"].as_str().expect("a build context"));
    assert_eq!(build, example_dir(), "{app}");
    assert_eq!(app["build"]["args"]["ROADIE_IMAGE"], "roadie");

    let migrations = &services["migrations"];
    assert_eq!(strings(&migrations["profiles"]), ["migrations"]);
    assert_eq!(strings(&migrations["command"]), ["migrate"]);
    assert_eq!(migrations["restart"], "no");

    for (name, service) in roadie_services(&model) {
        let env = environment(service);
        assert_eq!(
            env["DATABASE_URL_FILE"], "/run/secrets/database-url",
            "{name}"
        );
        assert_eq!(secrets(service), ["database-url"], "{name}");
    }
    // Nothing secret where `docker inspect` shows it: only *_FILE names.
    for (name, service) in model["services"].as_object().expect("services") {
        for key in environment(service)
            .keys()
            .filter(|k| !k.ends_with("_FILE"))
        {
            assert!(
                !(key.contains("PASSWORD") || key.ends_with("DATABASE_URL")),
                "{name} has {key} in its environment"
            );
        }
    }
    // Only the migrations service is behind a profile: `up` starts postgres and the app.
    let profiles = docker_compose(&[], &[], &["config", "--profiles"]);
    assert_eq!(profiles.trim(), "migrations");
}

#[test]
fn the_migrations_service_variant_migrates_once_and_the_app_then_skips_migrations() {
    let model = config(&[OVERRIDE], &["migrations"]);
    let app = &model["services"]["app"];
    assert_eq!(
        app["depends_on"]["migrations"]["condition"], "service_completed_successfully",
        "{app}"
    );
    assert_eq!(
        app["depends_on"]["postgres"]["condition"],
        "service_started"
    );
    assert_eq!(environment(app)["ROADIE_SKIP_MIGRATIONS"], "1");
    // The override adds to the app's environment; it keeps the URL and the grace.
    assert_eq!(
        environment(app)["DATABASE_URL_FILE"],
        "/run/secrets/database-url"
    );
    assert_eq!(app["deploy"]["replicas"], 3);
    assert_eq!(
        strings(&model["services"]["migrations"]["command"]),
        ["migrate"]
    );
    // compose.yaml alone migrates in the app.
    let plain = config(&[], &[]);
    assert!(!environment(&plain["services"]["app"]).contains_key("ROADIE_SKIP_MIGRATIONS"));
}

#[test]
fn every_compose_service_running_roadie_ends_its_stop_grace_before_docker_kills_it() {
    for model in [config(&[], &[]), config(&[OVERRIDE], &["migrations"])] {
        for (name, service) in roadie_services(&model) {
            let grace = environment(service)
                .get("ROADIE_STOP_GRACE")
                .map_or(DEFAULT_STOP_GRACE, |g| seconds(&Value::from(*g)));
            // Docker's own default is 10 s.
            let period = service.get("stop_grace_period").map_or(10.0, seconds);
            assert!(
                period >= grace + MARGIN,
                "{name}: stop_grace_period {period}s < ROADIE_STOP_GRACE {grace}s + {MARGIN}s"
            );
        }
    }
}

#[test]
fn the_compose_secrets_agree_and_name_the_postgres_service() {
    let model = config(&[], &[]);
    let file = |name: &str| {
        let path = model["secrets"][name]["file"]
            .as_str()
            .unwrap_or_else(|| panic!("secret {name}: {model}"));
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    let password = file("postgres-password");
    let url = url::Url::parse(file("database-url").trim()).expect("the URL secret is a URL");
    let postgres = environment(&model["services"]["postgres"]);
    assert_eq!(url.scheme(), "postgresql+psycopg", "{url}");
    assert_eq!(url.host_str(), Some("postgres"), "the service's name");
    assert_eq!(url.port(), Some(5432));
    assert_eq!(url.username(), postgres["POSTGRES_USER"]);
    assert_eq!(url.password(), Some(password.trim()));
    assert_eq!(url.path(), format!("/{}", postgres["POSTGRES_DB"]));
}

/// roadie with a compose service's environment, its /run/secrets/ files mapped to `secrets`,
/// in the example directory with the venv on PATH (what the image has).
fn as_in_compose(service: &Value, secrets_dir: &Path, args: &[&str]) -> crate::support::Roadie {
    let path = format!(
        "{}:/usr/bin:/bin",
        venv_bin("python").parent().expect("bin").display()
    );
    let mut r = roadie(Mode::Pid1, args)
        .current_dir(example_dir())
        .env("PATH", &path)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    for (key, value) in environment(service) {
        let value = match value.strip_prefix("/run/secrets/") {
            Some(name) => secrets_dir.join(name).to_string_lossy().into_owned(),
            None => value.to_string(),
        };
        r = r.env(key, &value);
    }
    r
}

#[test]
fn the_services_environment_migrates_and_serves_with_the_url_only_in_a_secret_file() {
    let pg = Postgres::started();
    let dir = scratch();
    // The secret as compose.yaml's file holds it, for this test's server.
    let url = pg
        .app_url()
        .replacen("postgres://", "postgresql+psycopg://", 1);
    std::fs::write(dir.path().join("database-url"), format!("{url}\n")).expect("secret");
    let model = config(&[OVERRIDE], &["migrations"]);

    let migrations = &model["services"]["migrations"];
    let command = strings(&migrations["command"]);
    let migrated = as_in_compose(migrations, dir.path(), &command).run();
    migrated
        .code(0)
        .stderr_has("database ready in")
        .stderr_has("running alembic upgrade head")
        .stderr_has("Running upgrade 0004 -> 0005");
    assert_eq!(pg.psql("SELECT version_num FROM alembic_version"), "0005");

    // The app, as the override runs it: it reads DATABASE_URL_FILE itself (app/db.py).
    let count = "from sqlalchemy import text; from app.db import engine; \
                 print('customers', engine.connect().execute(text('SELECT count(*) FROM customers')).scalar())";
    let app = as_in_compose(
        &model["services"]["app"],
        dir.path(),
        &["python", "-c", count],
    )
    .run();
    app.code(0)
        .stderr_has("--skip-migrations: not migrating")
        .stdout_has("customers 3");
}
