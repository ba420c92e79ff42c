//! The files users copy to deploy roadie, each checked by the tool that will read it: compose/
//! by docker-compose itself, examples/kubernetes/ against the Kubernetes API's schemas
//! (offline), the example's Dockerfile against what the manifests run, and entrypoint/ run for
//! real with the built roadie. No image is built here (no Docker engine): what only an engine
//! would show is not covered.

mod compose;
mod dockerfile;
mod entrypoint;
mod kubernetes;

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc::channel;
use std::thread;

use serde_json::Value;

use crate::support::{DEADLINE, kill_tree};

/// What every stop in these files leaves between roadie's `--stop-grace` (plus a preStop
/// sleep) and the platform's SIGKILL, in seconds: the comments in the files promise 5 s.
const MARGIN: f64 = 5.0;

/// roadie's `--stop-grace` when neither the flag nor ROADIE_STOP_GRACE is given.
const DEFAULT_STOP_GRACE: f64 = 10.0;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn example_dir() -> PathBuf {
    repo().join("examples/fastapi-alembic")
}

/// The venv scripts/venv.sh builds: a missing one fails the test (scripts/test.sh makes it).
fn venv_bin(tool: &str) -> PathBuf {
    let path = repo().join(".venv/bin").join(tool);
    assert!(
        path.exists(),
        "{} is missing: run scripts/venv.sh (scripts/test.sh does)",
        path.display()
    );
    path
}

/// Runs `command` with `stdin`, within the harness's deadline (killed after it), and returns
/// how it ended. A program that cannot be started fails the test, naming what installs it.
fn output(mut command: Command, stdin: &[u8], installed_by: &str) -> Output {
    let shown = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("{shown}: cannot start it ({e}); {installed_by}"));
    let mut pipe = child.stdin.take().expect("UNWRAP: stdin is piped");
    let bytes = stdin.to_vec();
    thread::spawn(move || pipe.write_all(&bytes));
    let pid = child.id() as i32;
    let (done, ended) = channel();
    thread::spawn(move || done.send(child.wait_with_output()));
    match ended.recv_timeout(DEADLINE) {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => panic!("{shown}: {e}"),
        Err(_) => {
            kill_tree(pid);
            panic!("{shown}: still running after {DEADLINE:?}")
        }
    }
}

/// Everything known about a finished tool, for a failure message.
fn evidence(what: &str, output: &Output) -> String {
    format!(
        "{what}: {}\n  stdout:\n{}\n  stderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Every YAML document in `text`, as JSON, read by PyYAML (which docker-compose 1.29 and
/// kubernetes-validate read with too) from the venv.
fn yaml_documents(text: &str) -> Vec<Value> {
    let mut python = Command::new(venv_bin("python"));
    python.args([
        "-c",
        "import json, sys, yaml; json.dump(list(yaml.safe_load_all(sys.stdin)), sys.stdout)",
    ]);
    let out = output(python, text.as_bytes(), "scripts/venv.sh makes the venv");
    assert!(out.status.success(), "{}", evidence("yaml to json", &out));
    let Value::Array(documents) = serde_json::from_slice(&out.stdout).expect("json.dump's JSON")
    else {
        unreachable!("a list was dumped")
    };
    documents
}

/// A duration as roadie (`500ms`, `20s`, `10m`) or Kubernetes (a number of seconds) writes
/// it, in seconds.
fn seconds(value: &Value) -> f64 {
    if let Some(n) = value.as_f64() {
        return n;
    }
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("a duration: {value}"));
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .unwrap_or_else(|_| panic!("a duration: {text:?}"));
    number
        * match unit {
            "ms" => 0.001,
            "" | "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => panic!("a duration: {text:?}"),
        }
}

/// The strings of a JSON array (argv, a list of names).
fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("a list: {value}"))
        .iter()
        .map(|v| v.as_str().unwrap_or_else(|| panic!("a string: {v}")))
        .collect()
}

/// The value of roadie's option `name` in `args` (`--stop-grace 20s` or `--stop-grace=20s`),
/// looking only before `--`, where the app's own arguments begin.
fn option<'a>(args: &[&'a str], name: &str) -> Option<&'a str> {
    let roadies = args.split(|a| *a == "--").next().unwrap_or_default();
    roadies.iter().enumerate().find_map(|(i, arg)| {
        if *arg == name {
            roadies.get(i + 1).copied()
        } else {
            arg.strip_prefix(name)?.strip_prefix('=')
        }
    })
}

/// Whether roadie's flag `name` is given in `args` before `--`.
fn flag(args: &[&str], name: &str) -> bool {
    args.iter().take_while(|a| **a != "--").any(|a| *a == name)
}

/// The app's command in `args`: what follows `--`.
fn app_command<'a>(args: &[&'a str]) -> Vec<&'a str> {
    args.iter()
        .skip_while(|a| **a != "--")
        .skip(1)
        .copied()
        .collect()
}
