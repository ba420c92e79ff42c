//! Flask-Migrate's `flask db upgrade`: alembic configured in code (`Migrate.get_config`: the
//! ini in the migrations directory, `script_location` set to it, no `pyproject.toml`), and an
//! `env.py` that hands `context.configure` the keywords of `Migrate(app, db, **kwargs)`. Those
//! live in the app's code, which roadie does not run: it looks through the app's Python files
//! for the ways they could move the version table or the scripts (a `version_table` keyword, a
//! `@migrate.configure` callback, and without `-d` a `directory=` for `Migrate(...)`) and falls
//! back to Flask-Migrate when it finds one.

use std::path::{Path, PathBuf};

use super::{ConfigFiles, Fallback, LoadError, Project, read_project};

/// More Python files or directories than this under the working directory: not an app roadie
/// can look through (a working directory of `/`, say).
const MAX_FILES: usize = 20_000;
const MAX_DIRS: usize = 5_000;

/// Directories that hold installed packages or tooling, not the app's own code.
const NOT_THE_APP: &[&str] = &[
    "node_modules",
    "site-packages",
    "dist-packages",
    "__pycache__",
    "venv",
    "env",
];

/// The project `flask db [-d DIRECTORY] upgrade` works on, from `cwd`. Without `-d`, the app's
/// `Migrate(directory=...)` decides, by default `migrations`: a `directory=` in the app, or no
/// `migrations` here, is a fallback (only the app knows).
pub fn load_flask(directory: Option<&Path>, cwd: &Path) -> Result<Project, LoadError> {
    let given = directory.is_some();
    let directory = directory.unwrap_or(Path::new("migrations"));
    if !given && !cwd.join(directory).is_dir() {
        return Err(LoadError::Fallback(Fallback {
            file: cwd.join(directory),
            why: "does not exist: Migrate(directory=...) in the app may name another".into(),
        }));
    }
    // Without -d, where the scripts are comes first (the app decides it).
    if !given {
        let looking = Looking {
            version_table: true,
            directory: true,
        };
        check_app_sources(cwd, &cwd.join(directory), looking)?;
    }
    let project = read_project(&ConfigFiles::flask_migrate(directory), cwd)?;
    if given && project.env.flask_configure_args.is_some() {
        let looking = Looking {
            version_table: true,
            directory: false,
        };
        check_app_sources(cwd, &cwd.join(directory), looking)?;
    }
    Ok(project)
}

/// What the app's code is looked through for.
#[derive(Debug, Clone, Copy)]
struct Looking {
    /// `version_table` (env.py hands `Migrate(...)`'s keywords to `context.configure`).
    version_table: bool,
    /// `directory=` (no `-d` on the command line).
    directory: bool,
}

/// Fails (a fallback naming the file and line) when the app's code may pass `Migrate(...)` a
/// `version_table` or register a configure callback; `migrations` (its own env.py and
/// revisions) is not the app.
fn check_app_sources(cwd: &Path, migrations: &Path, looking: Looking) -> Result<(), LoadError> {
    let fallback = |file: PathBuf, why: String| LoadError::Fallback(Fallback { file, why });
    let mut pending = vec![cwd.to_path_buf()];
    let (mut seen, mut dirs) = (0usize, 0usize);
    while let Some(dir) = pending.pop() {
        dirs += 1;
        if dirs > MAX_DIRS {
            return Err(fallback(
                cwd.to_path_buf(),
                format!(
                    "more than {MAX_DIRS} directories to look through for Migrate(...)'s keywords"
                ),
            ));
        }
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| fallback(dir.clone(), format!("cannot be listed: {e}")))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let kind = entry.file_type().ok();
            if kind.is_some_and(|k| k.is_dir()) {
                let skipped = name.starts_with('.')
                    || NOT_THE_APP.contains(&name.as_str())
                    || path == migrations;
                if !skipped {
                    pending.push(path);
                }
                continue;
            }
            if !name.ends_with(".py") {
                continue;
            }
            seen += 1;
            if seen > MAX_FILES {
                return Err(fallback(
                    cwd.to_path_buf(),
                    format!(
                        "more than {MAX_FILES} Python files to look through for Migrate(...)'s keywords"
                    ),
                ));
            }
            let Ok(text) = std::fs::read_to_string(&path) else {
                return Err(fallback(
                    path,
                    "cannot be read to look for Migrate(...)'s keywords".into(),
                ));
            };
            if let Some(why) = moves_alembic(&text, looking) {
                return Err(fallback(path, why));
            }
        }
    }
    Ok(())
}

/// The first line of `source` that may change where Flask-Migrate's alembic looks.
fn moves_alembic(source: &str, looking: Looking) -> Option<String> {
    source.lines().enumerate().find_map(|(i, line)| {
        let code = line.trim_start();
        if code.starts_with('#') {
            return None;
        }
        let directory = code.find("directory").is_some_and(|at| {
            let rest = code[at + "directory".len()..].trim_start();
            rest.starts_with('=') && !rest.starts_with("==")
        });
        if looking.directory && directory {
            Some(format!(
                "line {}: sets a directory, which may be Migrate(directory=...): flask db -d \
                 DIRECTORY would say",
                i + 1
            ))
        } else if looking.version_table && code.contains("version_table") {
            Some(format!(
                "line {}: names version_table, which Migrate(...) hands env.py's \
                 context.configure",
                i + 1
            ))
        } else if code.starts_with('@') && code.trim_end().ends_with(".configure") {
            Some(format!(
                "line {}: a Flask-Migrate configure callback can change alembic's \
                 configuration at run time",
                i + 1
            ))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const BOTH: Looking = Looking {
        version_table: true,
        directory: true,
    };

    #[rstest]
    #[case::plain("migrate = Migrate(app, db, compare_type=True)\n", None)]
    #[case::directory(
        "migrate = Migrate(app, db, directory = 'db/migrations')\n",
        Some("line 1: sets a directory")
    )]
    #[case::compared_not_set("if directory == 'x':\n    pass\n", None)]
    #[case::comment("# Migrate(app, db, version_table='x') one day\n", None)]
    #[case::keyword(
        "migrate = Migrate(app, db,\n    version_table='app_version')\n",
        Some("line 2: names version_table")
    )]
    #[case::callback(
        "@migrate.configure\ndef configure_alembic(config):\n    return config\n",
        Some("line 1: a Flask-Migrate configure callback")
    )]
    fn app_code_that_moves_alembic_is_found(#[case] source: &str, #[case] says: Option<&str>) {
        let found = moves_alembic(source, BOTH);
        match says {
            None => assert_eq!(found, None),
            Some(says) => assert!(
                found.as_deref().is_some_and(|w| w.contains(says)),
                "{found:?}"
            ),
        }
    }
}
