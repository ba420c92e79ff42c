//! examples/kubernetes/: every manifest validated offline against the Kubernetes API's own
//! schemas (kubernetes-validate, strict: an unknown or misplaced field is an error), then what a
//! schema cannot say: the stop fits the grace period, the URL comes from a Secret's file, and
//! each container runs what the image and the variant mean it to.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

use super::dockerfile::{image_cmd, image_uid};
use super::{DEFAULT_STOP_GRACE, MARGIN, app_command, flag, option, output, repo, seconds};
use super::{strings, venv_bin, yaml_documents};

const MANIFESTS: [&str; 3] = [
    "deployment.yaml",
    "deployment-initcontainer.yaml",
    "migrate-job.yaml",
];
const DEPLOYMENTS: [&str; 2] = ["deployment.yaml", "deployment-initcontainer.yaml"];

/// The oldest Kubernetes the manifests claim (the kubelet's own preStop sleep is on by default
/// from 1.30) and the newest the pinned kubernetes-validate knows.
const VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];

fn dir() -> PathBuf {
    repo().join("examples/kubernetes")
}

fn validate(file: &str, version: &str) -> Output {
    let mut command = Command::new(venv_bin("kubernetes-validate"));
    command
        .current_dir(dir())
        .args(["--strict", "--kubernetes-version", version, file]);
    output(
        command,
        b"",
        "scripts/venv.sh installs it from tests/requirements.txt",
    )
}

/// The one resource in `file`.
fn manifest(file: &str) -> Value {
    let path = dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let mut documents = yaml_documents(&text);
    assert_eq!(documents.len(), 1, "{file}: one resource");
    documents.remove(0)
}

fn pod(manifest: &Value) -> &Value {
    &manifest["spec"]["template"]["spec"]
}

/// (name, container) for the init containers, then the containers.
fn containers(pod: &Value) -> Vec<(&str, &Value)> {
    ["initContainers", "containers"]
        .iter()
        .flat_map(|key| pod[key].as_array().into_iter().flatten())
        .map(|c| (c["name"].as_str().expect("a container's name"), c))
        .collect()
}

/// The container named `name`.
fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    containers(pod)
        .into_iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no container {name}: {pod}"))
        .1
}

fn args(container: &Value) -> Vec<&str> {
    strings(&container["args"])
}

/// A container's `env` value for `name`.
fn env<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .map(|e| e["value"].as_str().expect("a plain value"))
}

/// roadie's stop grace in a container: the flag, else ROADIE_STOP_GRACE, else the default.
fn stop_grace(container: &Value) -> f64 {
    option(&args(container), "--stop-grace")
        .or_else(|| env(container, "ROADIE_STOP_GRACE"))
        .map_or(DEFAULT_STOP_GRACE, |g| seconds(&Value::from(g)))
}

/// How long a container's preStop hook sleeps (the kubelet's sleep or an exec'd `sleep N`).
fn pre_stop(container: &Value) -> f64 {
    let hook = &container["lifecycle"]["preStop"];
    if let Some(s) = hook["sleep"]["seconds"].as_f64() {
        return s;
    }
    match hook["exec"]["command"]
        .as_array()
        .map(|_| strings(&hook["exec"]["command"]))
    {
        Some(command) if command[0].ends_with("sleep") => seconds(&Value::from(command[1])),
        Some(command) => panic!("a preStop that is not a sleep: {command:?}"),
        None => 0.0,
    }
}

#[test]
fn the_kubernetes_manifests_validate_against_the_api_schemas_of_1_30_and_1_37() {
    for file in MANIFESTS {
        for version in VERSIONS {
            let out = validate(file, version);
            let said = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                out.status.success() && said.contains("passed"),
                "{file} against {version}: {}\n{said}",
                out.status
            );
        }
    }
}

#[test]
fn kubernetes_1_28_rejects_the_deployments_whose_pre_stop_is_the_kubelets_own_sleep() {
    // The validator reads the schema for real, and 1.30 is the oldest these manifests fit.
    for file in DEPLOYMENTS {
        let out = validate(file, "1.28.0");
        let said = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && said.contains("'sleep' was unexpected"),
            "{file} against 1.28: {}\n{said}",
            out.status
        );
    }
}

#[test]
fn every_pod_stops_within_its_termination_grace_period() {
    for file in MANIFESTS {
        let manifest = manifest(file);
        let pod = pod(&manifest);
        let period = pod["terminationGracePeriodSeconds"]
            .as_f64()
            .unwrap_or(30.0);
        for (name, container) in containers(pod) {
            let (sleep, grace) = (pre_stop(container), stop_grace(container));
            assert!(
                period >= sleep + grace + MARGIN,
                "{file} {name}: terminationGracePeriodSeconds {period} < preStop {sleep} + \
                 --stop-grace {grace} + {MARGIN}: the kubelet would SIGKILL roadie mid-stop"
            );
            // A serving container keeps serving while the endpoints drain.
            if container.get("ports").is_some() {
                assert!(sleep >= 1.0, "{file} {name}: no preStop sleep");
            }
        }
    }
}

#[test]
fn the_deployments_run_three_replicas_of_the_images_command_ready_on_its_http_port() {
    for file in DEPLOYMENTS {
        let manifest = manifest(file);
        assert_eq!(manifest["kind"], "Deployment");
        assert_eq!(manifest["spec"]["replicas"], 3, "{file}");
        let pod = pod(&manifest);
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{file}");
        assert_eq!(pod["securityContext"]["runAsUser"], image_uid(), "{file}");

        let app = container(pod, "app");
        let args = args(app);
        // roadie's options, then exactly the image's CMD: the two never drift apart.
        assert_eq!(app_command(&args), image_cmd(), "{file}");
        let probe = &app["readinessProbe"]["httpGet"];
        assert_eq!(probe["path"], "/health", "{file}");
        let port = app["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == probe["port"] || p["containerPort"] == probe["port"])
            .unwrap_or_else(|| panic!("{file}: the probe's port is not declared"));
        let listening = option(&app_command(&args)[1..], "--port").expect("uvicorn --port");
        assert_eq!(port["containerPort"].to_string(), listening, "{file}");
    }
}

#[test]
fn every_container_reads_the_database_url_from_a_secrets_file_and_nothing_secret_is_inline() {
    for file in MANIFESTS {
        let manifest = manifest(file);
        let pod = pod(&manifest);
        for (name, container) in containers(pod) {
            let path = env(container, "DATABASE_URL_FILE")
                .unwrap_or_else(|| panic!("{file} {name}: no DATABASE_URL_FILE"));
            let mount = container["volumeMounts"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|m| path.starts_with(&format!("{}/", m["mountPath"].as_str().unwrap())))
                .unwrap_or_else(|| panic!("{file} {name}: {path} is on no volume"));
            let volume = pod["volumes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|v| v["name"] == mount["name"])
                .unwrap_or_else(|| panic!("{file} {name}: no volume {}", mount["name"]));
            assert!(
                volume["secret"]["secretName"].is_string(),
                "{file}: {volume}"
            );
            // The key `kubectl create secret generic ... --from-file=url=...` makes.
            assert!(path.ends_with("/url"), "{file} {name}: {path}");
            for e in container["env"].as_array().into_iter().flatten() {
                let key = e["name"].as_str().unwrap_or_default();
                assert!(
                    !key.contains("PASSWORD") && key != "DATABASE_URL",
                    "{file} {name}: {key} inline"
                );
            }
            assert!(
                args(container).iter().all(|a| !a.contains("://")),
                "{file} {name}: a URL in argv"
            );
        }
    }
}

#[test]
fn the_initcontainer_and_the_job_run_roadie_migrate_and_only_then_the_app_skips_migrations() {
    let init = manifest("deployment-initcontainer.yaml");
    let init_pod = pod(&init);
    assert_eq!(init_pod["initContainers"].as_array().map(Vec::len), Some(1));
    assert_eq!(args(container(init_pod, "migrate"))[0], "migrate");
    assert!(flag(&args(container(init_pod, "app")), "--skip-migrations"));

    // Alone, the Deployment migrates in every replica, under the lock.
    let plain = manifest("deployment.yaml");
    assert!(pod(&plain).get("initContainers").is_none());
    assert!(!flag(
        &args(container(pod(&plain), "app")),
        "--skip-migrations"
    ));

    let job = manifest("migrate-job.yaml");
    assert_eq!(job["kind"], "Job");
    let job_pod = pod(&job);
    assert_eq!(job_pod["restartPolicy"], "Never");
    let migrate = args(container(job_pod, "migrate"));
    assert_eq!(migrate[0], "migrate");
    // The Job outlives roadie's own deadlines (--wait-timeout 60s, --lock-timeout 10m), so a
    // failure is roadie's exit code and message, not a bare DeadlineExceeded.
    let deadline = job["spec"]["activeDeadlineSeconds"]
        .as_f64()
        .expect("a deadline");
    let waits = option(&migrate, "--wait-timeout").map_or(60.0, |t| seconds(&t.into()))
        + option(&migrate, "--lock-timeout").map_or(600.0, |t| seconds(&t.into()));
    assert!(
        deadline > waits,
        "activeDeadlineSeconds {deadline} <= {waits}"
    );
}
