//! alembic without Python: reads the script directory as alembic 1.20 would (`config.rs`), each
//! revision file statically (`revision.rs` over the tokenizer in `python.rs`), and builds the
//! revision graph with its heads, its verdict against the version table and the status list
//! (`graph.rs`); then `env.py`, for its version table and whether it migrates once
//! (`env_py.rs`); Flask-Migrate's `flask db upgrade` is `flask.rs`. It never runs Python and never guesses: what it cannot read exactly is a
//! [`Fallback`], and the caller runs alembic as before, saying which file and why in one line.
//!
//! Bad input, decided case by case (alembic itself fails on most of these):
//!
//! | input | outcome | why |
//! | --- | --- | --- |
//! | no `script_location` in the ini section nor in `[tool.alembic]` | [`BrokenConfig`] (78) | alembic: "No 'script_location' key found" |
//! | `script_location` that does not exist | [`BrokenConfig`] (78) | alembic: "Path doesn't exist" |
//! | `alembic.ini` configparser refuses (no section header, duplicate option, bad `%`) | [`BrokenConfig`] (78) | alembic fails with a traceback |
//! | `pyproject.toml` not TOML, `[tool.alembic]` not a table, a value of the wrong type | [`BrokenConfig`] (78) | alembic fails the same way |
//! | `path_separator` not one of alembic's names | [`BrokenConfig`] (78) | alembic: "is not a valid value" |
//! | `alembic.ini`/`pyproject.toml` unreadable or not UTF-8 | [`Fallback`] | alembic may run as another `--user` than roadie |
//! | `module:path` not found as a regular package under `prepend_sys_path` or the working directory | [`Fallback`] | only an import can tell |
//! | `sourceless = true` | [`Fallback`] | revisions may exist only as `.pyc` |
//! | a version location that does not exist | skipped | as alembic does |
//! | a versions directory or revision file roadie cannot read (permissions, not UTF-8, a non-UTF-8 coding cookie, not a regular file) | [`Fallback`] | alembic may run as another user; it decides |
//! | a revision file with a syntax error the tokenizer sees (unclosed string or bracket) | [`Fallback`] | alembic reports it with Python's own message |
//! | a revision file whose ids are not plain literals, or are bound other ways (see `revision.rs`) | [`Fallback`] | never guess |
//! | no revision file at all | [`Fallback`] | what an `env.py` that moves the versions at run time looks like; never "at head" |
//! | `env.py` unreadable, or migrating more than once or at run time (see `env_py.rs`) | [`Fallback`] | one version table says nothing of the others |
//! | `env.py`'s `version_table` computed | [`EnvSettings::table_unknown`] | a fallback unless `--alembic-version-table` names it |
//! | two files with one revision id; a `down_revision`/`depends_on` naming nothing; a cycle; a branch label used twice | [`GraphError`] (65) | alembic fails (or, for duplicates, silently keeps one) |
//!
//! A revision file that Python would refuse for reasons the tokenizer does not see (a bad
//! indentation, an import that fails) is read as its assignments say: the shortcut then trusts
//! the database, and the next `alembic` run reports the file.

mod config;
mod env_py;
mod flask;
mod graph;
mod ini;
mod python;
mod revision;

use std::fmt;
use std::path::{Path, PathBuf};

pub use config::{ConfigFiles, ScriptLocation, found_here, locate};
pub use env_py::EnvSettings;
pub use flask::load_flask;
pub use graph::{Graph, GraphError, RevisionStatus, State, Verdict};
pub use revision::RevisionScript;

/// The configuration is wrong in a way alembic would also refuse: one line naming the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenConfig {
    pub file: PathBuf,
    pub why: String,
}

/// roadie cannot read this exactly: run alembic as before, with one info line saying this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    pub file: PathBuf,
    pub why: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    Config(BrokenConfig),
    Fallback(Fallback),
    Graph(GraphError),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Config(BrokenConfig { file, why })
            | LoadError::Fallback(Fallback { file, why }) => {
                write!(f, "{}: {why}", file.display())
            }
            LoadError::Graph(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::Graph(e) => Some(e),
            _ => None,
        }
    }
}

/// What roadie read of an alembic project: its revision graph and what `env.py` says.
#[derive(Debug)]
pub struct Project {
    pub graph: Graph,
    pub env: EnvSettings,
    /// The `env.py` read, for the lines that name it.
    pub env_py: PathBuf,
}

/// Reads the configuration `files` (relative paths from `cwd`, alembic's working directory),
/// every revision file, builds the graph, then reads `env.py`. A graph with no revision at all
/// is a fallback: it is what an `env.py` that moves the versions at run time looks like, and
/// "no revisions, no rows" must never read as "at head".
pub fn load(files: &ConfigFiles, cwd: &Path) -> Result<Project, LoadError> {
    let mut project = read_project(files, cwd)?;
    if let (Some(line), None) = (project.env.flask_configure_args, &project.env.table_unknown) {
        project.env.table_unknown = Some(format!(
            "line {line}: context.configure(...) takes Flask-Migrate's Migrate(...) keywords, \
             which only `flask db` hands it"
        ));
    }
    Ok(project)
}

/// `load` without deciding what Flask-Migrate's keywords mean (`flask.rs` does).
fn read_project(files: &ConfigFiles, cwd: &Path) -> Result<Project, LoadError> {
    let location = locate(files, cwd)?;
    let mut scripts = Vec::new();
    for file in revision_files(&location)? {
        scripts.push((read_revision_file(&file)?, file));
    }
    let graph = Graph::build(scripts).map_err(|e| match e {
        GraphError::Unsupported { file, why } => LoadError::Fallback(Fallback { file, why }),
        other => LoadError::Graph(other),
    })?;
    if graph.heads().is_empty() {
        let dirs: Vec<String> = location
            .version_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        return Err(LoadError::Fallback(Fallback {
            file: location.script_dir.clone(),
            why: format!(
                "no revision file in {} (env.py may choose the versions at run time)",
                dirs.join(", ")
            ),
        }));
    }
    let env_py = location.script_dir.join("env.py");
    let env = read_env_py(&env_py)?;
    Ok(Project { graph, env, env_py })
}

/// `env.py` as alembic's `ScriptDirectory.run_env` loads it; what roadie cannot be sure of is
/// a fallback naming the file and the line.
fn read_env_py(path: &Path) -> Result<EnvSettings, LoadError> {
    let fallback = |why: String| {
        LoadError::Fallback(Fallback {
            file: path.to_path_buf(),
            why,
        })
    };
    let bytes = std::fs::read(path).map_err(|e| fallback(format!("cannot be read: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|_| fallback("is not UTF-8".into()))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    env_py::read(text).map_err(fallback)
}

/// alembic's `_load_revisions` and `Script._list_py_dir`/`_from_path`: `*.py` files not named
/// `__init__*` nor `.#*`, name-sorted per directory; subdirectories (not `__pycache__`, not
/// followed through symlinks) only with `recursive_version_locations`; a file reached twice
/// (same real path) counts once.
pub fn revision_files(location: &ScriptLocation) -> Result<Vec<PathBuf>, LoadError> {
    let mut files = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for dir in location.version_dirs.iter().filter(|d| d.exists()) {
        let mut pending = vec![dir.clone()];
        while let Some(root) = pending.pop() {
            if root
                .file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with("__pycache__"))
            {
                continue;
            }
            let (mut names, mut subdirs) = (Vec::new(), Vec::new());
            let unreadable = |e: std::io::Error| {
                LoadError::Fallback(Fallback {
                    file: root.clone(),
                    why: format!("cannot list the versions directory: {e}"),
                })
            };
            for entry in std::fs::read_dir(&root).map_err(unreadable)? {
                let entry = entry.map_err(unreadable)?;
                let path = entry.path();
                let Some(name) = entry.file_name().to_str().map(String::from) else {
                    return Err(LoadError::Fallback(Fallback {
                        file: path,
                        why: "a file name that is not UTF-8".into(),
                    }));
                };
                if path.is_dir() {
                    let symlink = entry.file_type().map(|t| t.is_symlink()).unwrap_or(true);
                    if !symlink {
                        subdirs.push(path);
                    }
                } else if name.ends_with(".py")
                    && !name.starts_with("__init__")
                    && !name.starts_with(".#")
                    && !name.contains('\n')
                {
                    names.push(name);
                }
            }
            names.sort();
            for name in names {
                let path = root.join(&name);
                let real = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
                if seen.insert(real) {
                    files.push(path);
                }
            }
            if location.recursive {
                subdirs.sort();
                pending.extend(subdirs.into_iter().rev());
            }
        }
    }
    Ok(files)
}

fn read_revision_file(path: &Path) -> Result<RevisionScript, LoadError> {
    let fallback = |why: String| {
        LoadError::Fallback(Fallback {
            file: path.to_path_buf(),
            why,
        })
    };
    if !path.is_file() {
        return Err(fallback("not a regular file".into()));
    }
    let bytes = std::fs::read(path).map_err(|e| fallback(format!("cannot be read: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|_| fallback("is not UTF-8".into()))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    if let Some(coding) = coding_cookie(text).filter(|c| !is_utf8_name(c)) {
        return Err(fallback(format!("declares the source encoding {coding}")));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    revision::read(text, &name).map_err(fallback)
}

/// PEP 263: `coding[:=]NAME` in a comment on line 1 or 2.
fn coding_cookie(text: &str) -> Option<&str> {
    text.lines().take(2).find_map(|line| {
        let comment = line
            .trim_start_matches([' ', '\t', '\x0c'])
            .strip_prefix('#')?;
        let at = comment.find("coding")?;
        let rest = comment[at + 6..].strip_prefix([':', '='])?;
        let rest = rest.trim_start_matches([' ', '\t']);
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '-' || c == '_' || c == '.'))
            .unwrap_or(rest.len());
        (end > 0).then(|| &rest[..end])
    })
}

fn is_utf8_name(coding: &str) -> bool {
    let normal = coding.to_lowercase().replace('_', "-");
    normal == "utf-8" || normal == "utf8" || normal.starts_with("utf-8-")
}

#[cfg(test)]
mod tests;
