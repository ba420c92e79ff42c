//! roadie's reading of alembic projects against the real alembic (the oracle, from the venv that
//! scripts/venv.sh makes at `<manifest dir>/.venv`; these tests fail without it): hand-made
//! projects of every configuration shape (`fixtures.rs`), projects alembic writes itself
//! (`generated.rs`), random revision graphs
//! (`random_graphs.rs`) and the bad-input table (`bad_input.rs`). alembic runs once per test, in one Python process (`oracle.py`).

mod bad_input;
mod fixtures;
mod generated;
mod projects;
mod random_graphs;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::{ConfigFiles, Graph, Verdict, load};

const ORACLE: &str = include_str!("tests/oracle.py");

/// `env.py` for `alembic current`: connects to `sqlalchemy.url` and reads the version table.
const ENV_PY: &str = "\
from alembic import context
from sqlalchemy import create_engine

with create_engine(context.config.get_main_option('sqlalchemy.url')).connect() as connection:
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()
";

/// A throwaway alembic project.
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new() -> Project {
        Project {
            dir: tempfile::tempdir().expect("UNWRAP: a temporary directory"),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, relative: &str, content: &str) -> &Project {
        let path = self.path().join(relative);
        std::fs::create_dir_all(path.parent().expect("UNWRAP: a file in a directory"))
            .expect("mkdir");
        std::fs::write(&path, content).expect("write");
        self
    }

    /// A script directory at `relative` (its env.py; the versions directory is up to the caller).
    fn script_dir(&self, relative: &str) -> &Project {
        self.write(&format!("{relative}/env.py"), ENV_PY)
    }

    /// Writes `rev` into the directory `relative`, named as alembic names files.
    fn revision(&self, relative: &str, rev: &Rev) -> &Project {
        self.write(&format!("{relative}/{}_step.py", rev.id), &rev.render())
    }

    /// A case for the oracle: alembic run in the project's root with `args`, its database the
    /// `oracle.sqlite` next to `db_dir`'s config.
    fn case(&self, args: &[&str], db_dir: &str, row_sets: Vec<Vec<String>>) -> Case {
        Case {
            cwd: self.path().to_path_buf(),
            args: args.iter().map(|s| s.to_string()).collect(),
            db: self.path().join(db_dir).join("oracle.sqlite"),
            row_sets,
        }
    }
}

/// `[section]` of an alembic.ini with the database next to it and `options` (lines).
fn ini(section: &str, options: &str) -> String {
    format!("[{section}]\nsqlalchemy.url = sqlite:///%(here)s/oracle.sqlite\n{options}\n")
}

/// A revision as a test declares it.
#[derive(Debug, Clone)]
struct Rev {
    id: String,
    down: Vec<String>,
    labels: Vec<String>,
    depends: Vec<String>,
}

impl Rev {
    fn new(id: &str, down: &[&str]) -> Rev {
        Rev {
            id: id.into(),
            down: down.iter().map(|s| s.to_string()).collect(),
            labels: Vec::new(),
            depends: Vec::new(),
        }
    }

    fn labels(mut self, labels: &[&str]) -> Rev {
        self.labels = labels.iter().map(|s| s.to_string()).collect();
        self
    }

    fn depends(mut self, depends: &[&str]) -> Rev {
        self.depends = depends.iter().map(|s| s.to_string()).collect();
        self
    }

    /// The file alembic 1.20's generic template writes (a merge as a tuple, as `alembic merge` does).
    fn render(&self) -> String {
        let value = |ids: &[String]| match ids {
            [] => "None".to_string(),
            [one] => format!("{one:?}"),
            many => format!(
                "({})",
                many.iter()
                    .map(|s| format!("{s:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        format!(
            "\"\"\"step\n\nRevision ID: {id}\nRevises: {revises}\nCreate Date: 2026-12-05 13:00:00.000000\n\n\"\"\"\n\
             from typing import Sequence, Union\n\nfrom alembic import op\nimport sqlalchemy as sa\n\n\n\
             # revision identifiers, used by Alembic.\n\
             revision: str = {rev:?}\n\
             down_revision: Union[str, Sequence[str], None] = {down}\n\
             branch_labels: Union[str, Sequence[str], None] = {labels}\n\
             depends_on: Union[str, Sequence[str], None] = {depends}\n\n\n\
             def upgrade() -> None:\n    \"\"\"Upgrade schema.\"\"\"\n    pass\n\n\n\
             def downgrade() -> None:\n    \"\"\"Downgrade schema.\"\"\"\n    pass\n",
            id = self.id,
            revises = self.down.join(", "),
            rev = self.id,
            down = value(&self.down),
            labels = value(&self.labels),
            depends = value(&self.depends),
        )
    }
}

#[derive(Debug, serde::Serialize)]
struct Case {
    cwd: PathBuf,
    args: Vec<String>,
    db: PathBuf,
    row_sets: Vec<Vec<String>>,
}

/// What alembic says about one case (see oracle.py).
#[derive(Debug, Deserialize)]
struct Answer {
    heads_status: String,
    heads: Vec<String>,
    #[serde(default)]
    revisions: Vec<String>,
    #[serde(default)]
    bases: Vec<String>,
    #[serde(default)]
    branch_points: Vec<String>,
    #[serde(default)]
    merge_points: Vec<String>,
    /// Per row set: `ok` (at head), `not_at_head`, or `error: ...`.
    check_heads: Vec<String>,
}

/// The venv's python, with alembic importable; one clear panic naming scripts/venv.sh when
/// it is not there (rather than an import error deep in the oracle).
fn venv_python() -> PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin");
    let python = bin.join("python");
    assert!(
        python.exists() && bin.join("alembic").exists(),
        "{} has no python with alembic: these tests ask the real alembic; run scripts/venv.sh \
         (it makes the venv and installs tests/requirements.txt)",
        bin.display()
    );
    python
}

/// Runs the oracle on `cases` in one Python process, with a deadline.
fn ask_alembic(cases: &[Case], deadline: Duration) -> Vec<Answer> {
    run_oracle("alembic oracle", ORACLE, &cases, deadline)
}

/// Runs `script` (an oracle in Python) in the venv's python, `cases` as JSON on its stdin, and
/// reads its JSON answer from its stdout, within `deadline`; `what` names it in a failure.
fn run_oracle<T: serde::de::DeserializeOwned>(
    what: &str,
    script: &str,
    cases: &(impl serde::Serialize + ?Sized),
    deadline: Duration,
) -> T {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), script).expect("write the oracle");
    let mut child = Command::new(venv_python())
        .arg(file.path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the venv's python");
    let input = serde_json::to_vec(cases).expect("serialize cases");
    child
        .stdin
        .take()
        .expect("UNWRAP: piped")
        .write_all(&input)
        .expect("send cases");
    let started = Instant::now();
    while child.try_wait().expect("poll python").is_none() {
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the {what} took more than {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("python's output");
    assert!(
        output.status.success(),
        "the {what} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "the oracle's answer is not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// roadie's reading of the case's project, with the same options alembic got.
fn roadie_graph(case: &Case) -> Graph {
    let (mut configs, mut name) = (Vec::new(), None);
    let mut args = case.args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-c" => configs.push(PathBuf::from(args.next().expect("UNWRAP: -c FILE"))),
            "-n" => name = args.next().map(String::as_str),
            other => panic!("unexpected option {other}"),
        }
    }
    let files = ConfigFiles::from_options(&configs, name, None).expect("valid options");
    load(&files, &case.cwd)
        .map(|project| project.graph)
        .unwrap_or_else(|e| panic!("roadie cannot read {}: {e}", case.cwd.display()))
}

/// Asserts that roadie sees what alembic sees: the revisions, heads, bases, branch points and
/// merges, and the check-heads verdict for every row set.
fn assert_agrees(case: &Case, answer: &Answer) {
    assert_eq!(
        answer.heads_status, "ok",
        "alembic heads failed for {case:?}"
    );
    let graph = roadie_graph(case);
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let own = |v: Vec<&str>| sorted(v.into_iter().map(String::from).collect());
    let status = graph.status::<&str>(&[]);
    let flagged = |flag: fn(&super::RevisionStatus) -> bool| {
        sorted(
            status
                .iter()
                .filter(|s| flag(s))
                .map(|s| s.revision.clone())
                .collect(),
        )
    };
    let context = format!("project {} ({:?})", case.cwd.display(), case.args);
    assert_eq!(
        own(graph.revisions()),
        answer.revisions,
        "revisions of {context}"
    );
    assert_eq!(own(graph.heads()), answer.heads, "heads of {context}");
    assert_eq!(own(graph.bases()), answer.bases, "bases of {context}");
    assert_eq!(
        flagged(|s| s.branch_point),
        answer.branch_points,
        "branch points of {context}"
    );
    assert_eq!(
        flagged(|s| s.merge_point),
        answer.merge_points,
        "merge points of {context}"
    );
    assert_eq!(case.row_sets.len(), answer.check_heads.len());
    for (rows, alembic) in case.row_sets.iter().zip(&answer.check_heads) {
        assert!(
            alembic == "ok" || alembic == "not_at_head",
            "alembic current failed for {rows:?} in {context}: {alembic}"
        );
        let ours = graph.verdict(rows);
        assert_eq!(
            ours == Verdict::AtHead,
            alembic == "ok",
            "rows {rows:?} of {context}: roadie says {ours:?}, alembic current --check-heads says {alembic}"
        );
    }
}

fn rows(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| s.to_string()).collect()
}
