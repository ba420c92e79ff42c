//! Projects that alembic itself writes (`alembic init`, `revision`, `merge`, with the generic and
//! the pyproject templates): roadie reads its own output the way it reads itself.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rstest::rstest;

use super::{Project, ask_alembic, assert_agrees, rows};

const DEADLINE: Duration = Duration::from_secs(60);

/// Runs the venv's `alembic` in `dir`; its stdout.
fn alembic(dir: &Path, args: &[&str]) -> String {
    let program = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/alembic");
    assert!(
        program.exists(),
        "{} is missing: run scripts/venv.sh",
        program.display()
    );
    let out = Command::new(&program)
        .args(args)
        .current_dir(dir)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("start alembic");
    assert!(
        out.status.success(),
        "alembic {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The revision id alembic prints as `Generating .../<id>_<slug>.py ...  done`.
fn generated_id(output: &str) -> String {
    let path = output
        .split_whitespace()
        .find(|w| w.ends_with(".py"))
        .unwrap_or_else(|| panic!("no file in {output:?}"));
    let name = Path::new(path)
        .file_name()
        .expect("UNWRAP: a file")
        .to_string_lossy()
        .into_owned();
    name.split('_')
        .next()
        .expect("UNWRAP: split yields one")
        .to_string()
}

#[rstest]
#[case::generic_template("generic")]
#[case::pyproject_template("pyproject")]
fn alembic_reads_what_alembic_generates(#[case] template: &str) {
    let p = Project::new();
    let dir = p.path();
    alembic(dir, &["init", "--template", template, "migrations"]);
    let ini = std::fs::read_to_string(dir.join("alembic.ini")).expect("alembic.ini");
    p.write(
        "alembic.ini",
        &ini.replace(
            "driver://user:pass@localhost/dbname",
            "sqlite:///%(here)s/oracle.sqlite",
        ),
    );
    let a = generated_id(&alembic(dir, &["revision", "-m", "create account"]));
    alembic(
        dir,
        &["revision", "-m", "second", "--rev-id", "0002_custom"],
    );
    let other = generated_id(&alembic(
        dir,
        &[
            "revision",
            "-m",
            "other root",
            "--head",
            "base",
            "--splice",
            "--branch-label",
            "other",
        ],
    ));
    let merge = generated_id(&alembic(dir, &["merge", "heads", "-m", "merge"]));
    let dependent = generated_id(&alembic(
        dir,
        &["revision", "-m", "dependent", "--depends-on", &a],
    ));
    let case = p.case(
        &[],
        "",
        vec![
            rows(&[&dependent]),
            rows(&[&merge]),
            rows(&["0002_custom", &other]),
            rows(&[&a]),
        ],
    );
    assert_agrees(
        &case,
        &ask_alembic(std::slice::from_ref(&case), DEADLINE)[0],
    );
}
