//! Where alembic's scripts are, read as alembic 1.20 reads its configuration (config.py,
//! script/base.py `ScriptDirectory.from_config`): `alembic.ini` (section `alembic` or `-n NAME`)
//! first, then `[tool.alembic]` in `pyproject.toml`, option by option. Paths and `module:path`
//! resources are resolved without importing anything; what needs Python is a fallback.

use std::path::{Component, Path, PathBuf};

use super::ini::Ini;
use super::{BrokenConfig, Fallback, LoadError};

/// Which files alembic would read: `-c` (up to one `.ini` and one `pyproject.toml`), else
/// `ALEMBIC_CONFIG`, else `alembic.ini` and `pyproject.toml` in the working directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFiles {
    pub ini: PathBuf,
    pub pyproject: PathBuf,
    /// `-n/--name`: the ini section (the TOML section is always `[tool.alembic]`).
    pub section: String,
    /// `script_location` set in code before alembic reads it (Flask-Migrate's
    /// `set_main_option`): wins over both files.
    pub script_location: Option<String>,
    /// Whether `pyproject.toml` is read at all (Flask-Migrate hands alembic the ini alone).
    pub read_pyproject: bool,
}

impl Default for ConfigFiles {
    fn default() -> Self {
        ConfigFiles {
            ini: PathBuf::from("alembic.ini"),
            pyproject: PathBuf::from("pyproject.toml"),
            section: "alembic".into(),
            script_location: None,
            read_pyproject: true,
        }
    }
}

impl ConfigFiles {
    /// What Flask-Migrate's `Migrate.get_config` builds for `flask db -d DIRECTORY`:
    /// `DIRECTORY/alembic.ini`, `script_location` set to DIRECTORY, no `pyproject.toml`.
    pub fn flask_migrate(directory: &Path) -> Self {
        ConfigFiles {
            ini: directory.join("alembic.ini"),
            script_location: Some(directory.to_string_lossy().into_owned()),
            read_pyproject: false,
            ..ConfigFiles::default()
        }
    }

    /// alembic's `CommandLine._inis_from_config`: `configs` are the `-c` values in order,
    /// `env_config` is `ALEMBIC_CONFIG`.
    pub fn from_options(
        configs: &[PathBuf],
        name: Option<&str>,
        env_config: Option<&Path>,
    ) -> Result<Self, String> {
        let mut files = ConfigFiles::default();
        if let Some(name) = name {
            files.section = name.to_string();
        }
        let is_pyproject = |p: &Path| p.file_name().is_some_and(|n| n == "pyproject.toml");
        if let Some(env) = env_config.filter(|p| !p.as_os_str().is_empty()) {
            if is_pyproject(env) {
                files.pyproject = env.to_path_buf();
            } else {
                files.ini = env.to_path_buf();
            }
        }
        let (mut toml, mut ini) = (None, None);
        for config in configs {
            let slot = if is_pyproject(config) {
                &mut toml
            } else {
                &mut ini
            };
            if slot.replace(config.clone()).is_some() {
                return Err(if is_pyproject(config) {
                    "pyproject.toml indicated more than once".into()
                } else {
                    "only one ini file may be indicated".into()
                });
            }
        }
        if !configs.is_empty() {
            files.pyproject = toml.unwrap_or_else(|| PathBuf::from("pyproject.toml"));
            files.ini = ini.unwrap_or_else(|| PathBuf::from("alembic.ini"));
        }
        Ok(files)
    }
}

/// What alembic would read in `cwd` when started without `-c`, if anything: `ALEMBIC_CONFIG`'s
/// file, `alembic.ini`, or a `pyproject.toml` with a `[tool.alembic]` table (alembic 1.16+ runs
/// from that alone). Named as a user would recognise it, for the plan's log and its refusals.
pub fn found_here(cwd: &Path, env_config: Option<&Path>) -> Option<String> {
    let files = ConfigFiles::from_options(&[], None, env_config)
        .expect("UNWRAP: without -c there is nothing to refuse");
    let env_named = |p: &Path| env_config.is_some_and(|e| e == p);
    if cwd.join(&files.ini).is_file() {
        return Some(if env_named(&files.ini) {
            format!("ALEMBIC_CONFIG={}", files.ini.display())
        } else {
            files.ini.display().to_string()
        });
    }
    let text = std::fs::read_to_string(cwd.join(&files.pyproject)).ok()?;
    let has_table = match text.parse::<toml::Table>() {
        Ok(doc) => doc.get("tool").and_then(|t| t.get("alembic")).is_some(),
        // Broken TOML that mentions the table: alembic would try it, and the load says 78.
        Err(_) => text.contains("[tool.alembic"),
    };
    has_table.then(|| {
        let name = files.pyproject.display();
        if env_named(&files.pyproject) {
            format!("[tool.alembic] in ALEMBIC_CONFIG={name}")
        } else {
            format!("[tool.alembic] in {name}")
        }
    })
}

/// What the revision reader needs: the script directory and where its revision files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptLocation {
    pub script_dir: PathBuf,
    /// Absolute; the ones that do not exist are kept (alembic skips them when listing).
    pub version_dirs: Vec<PathBuf>,
    /// `recursive_version_locations`.
    pub recursive: bool,
}

/// The two sources of options, in alembic's order of precedence.
struct Sources {
    ini: Option<Ini>,
    ini_path: PathBuf,
    section: String,
    toml: Option<toml::Table>,
    toml_path: PathBuf,
    /// `%(here)s` in TOML values: the pyproject's directory.
    toml_here: String,
}

/// One option's value, from the ini (a string) or from TOML (any type).
enum Raw {
    Ini(String),
    Toml(toml::Value),
}

pub fn locate(files: &ConfigFiles, cwd: &Path) -> Result<ScriptLocation, LoadError> {
    let sources = Sources::read(files, cwd)?;
    let set_in_code = files.script_location.clone().map(Raw::Ini);
    let script_location =
        match set_in_code.map_or_else(|| sources.option("script_location"), |s| Ok(Some(s)))? {
            Some(Raw::Ini(value)) => value,
            Some(Raw::Toml(value)) => sources.toml_string("script_location", value)?,
            None => {
                return Err(config_error(
                    &sources.ini_path,
                    format!(
                        "no script_location in its [{}] section, nor in [tool.alembic] of {}",
                        sources.section,
                        sources.toml_path.display()
                    ),
                ));
            }
        };
    let sys_path = sources.prepend_sys_path()?;
    let script_dir = resource(&script_location, cwd, &sys_path, &sources.ini_path)?;
    if !script_dir.exists() {
        return Err(config_error(
            &sources.ini_path,
            format!("script_location {} does not exist", script_dir.display()),
        ));
    }
    if sources.boolean("sourceless")? {
        return Err(fallback(
            &sources.ini_path,
            "sourceless = true (revisions may exist only as .pyc)".into(),
        ));
    }
    let version_dirs = match sources.version_locations()? {
        Some(list) => list
            .iter()
            .map(|loc| resource(loc, cwd, &sys_path, &sources.ini_path))
            .collect::<Result<_, _>>()?,
        None => vec![absolute(&script_dir.join("versions"), cwd)],
    };
    Ok(ScriptLocation {
        script_dir,
        version_dirs,
        recursive: sources.boolean("recursive_version_locations")?,
    })
}

fn config_error(file: &Path, why: String) -> LoadError {
    LoadError::Config(BrokenConfig {
        file: file.to_path_buf(),
        why,
    })
}

fn fallback(file: &Path, why: String) -> LoadError {
    LoadError::Fallback(Fallback {
        file: file.to_path_buf(),
        why,
    })
}

/// `Path.absolute()`: joined to the working directory, `.` components dropped, `..` kept.
fn absolute(path: &Path, cwd: &Path) -> PathBuf {
    cwd.join(path)
        .components()
        .filter(|c| *c != Component::CurDir)
        .collect()
}

impl Sources {
    fn read(files: &ConfigFiles, cwd: &Path) -> Result<Sources, LoadError> {
        let ini_path = absolute(&files.ini, cwd);
        let toml_path = absolute(&files.pyproject, cwd);
        let dir_of = |p: &Path| {
            p.parent()
                .unwrap_or(Path::new("/"))
                .to_string_lossy()
                .into_owned()
        };
        // configparser's read() skips a file that does not exist.
        let ini = match std::fs::read(&ini_path) {
            Ok(bytes) => {
                let text = String::from_utf8(bytes)
                    .map_err(|_| fallback(&ini_path, "is not UTF-8".into()))?;
                let here = dir_of(&ini_path);
                Some(
                    Ini::parse(&text, &[("here", &here)])
                        .map_err(|why| config_error(&ini_path, why))?,
                )
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(fallback(&ini_path, format!("cannot be read: {e}"))),
        };
        let toml = match std::fs::read_to_string(&toml_path) {
            _ if !files.read_pyproject => None,
            Ok(text) => {
                let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| {
                    config_error(&toml_path, format!("is not valid TOML: {}", e.message()))
                })?;
                match doc.get("tool").and_then(|t| t.get("alembic")) {
                    None => None,
                    Some(toml::Value::Table(table)) => Some(table.clone()),
                    Some(_) => {
                        return Err(config_error(
                            &toml_path,
                            "[tool.alembic] is not a table".into(),
                        ));
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(fallback(&toml_path, format!("cannot be read: {e}"))),
        };
        Ok(Sources {
            ini,
            ini_path,
            section: files.section.clone(),
            toml,
            toml_here: dir_of(&toml_path),
            toml_path,
        })
    }

    /// The ini value (interpolated) if its section has the option, else the TOML value.
    fn option(&self, name: &str) -> Result<Option<Raw>, LoadError> {
        if let Some(value) = self.ini_value(name)? {
            return Ok(Some(Raw::Ini(value)));
        }
        Ok(self
            .toml
            .as_ref()
            .and_then(|t| t.get(name))
            .cloned()
            .map(Raw::Toml))
    }

    fn ini_value(&self, name: &str) -> Result<Option<String>, LoadError> {
        let Some(ini) = &self.ini else {
            return Ok(None);
        };
        ini.get(&self.section, name).map_err(|why| {
            config_error(&self.ini_path, format!("[{}] {name}: {why}", self.section))
        })
    }

    /// A TOML string with `value % toml_args` applied.
    fn toml_string(&self, name: &str, value: toml::Value) -> Result<String, LoadError> {
        match value {
            toml::Value::String(s) => percent_here(&s, &self.toml_here).map_err(|why| {
                config_error(&self.toml_path, format!("[tool.alembic] {name}: {why}"))
            }),
            _ => Err(config_error(
                &self.toml_path,
                format!("[tool.alembic] {name} is not a string"),
            )),
        }
    }

    fn toml_list(&self, name: &str, value: toml::Value) -> Result<Vec<String>, LoadError> {
        match value {
            toml::Value::Array(items) => items
                .into_iter()
                .map(|v| self.toml_string(name, v))
                .collect(),
            _ => Err(config_error(
                &self.toml_path,
                format!("[tool.alembic] {name} is not a list"),
            )),
        }
    }

    /// `get_alembic_boolean_option`: the ini's exact `true`, or a TOML boolean.
    fn boolean(&self, name: &str) -> Result<bool, LoadError> {
        match self.option(name)? {
            Some(Raw::Ini(value)) => Ok(value == "true"),
            Some(Raw::Toml(toml::Value::Boolean(b))) => Ok(b),
            Some(Raw::Toml(_)) => Err(config_error(
                &self.toml_path,
                format!("boolean value expected for TOML parameter {name:?}"),
            )),
            None => Ok(false),
        }
    }

    /// `get_version_locations_list`: a non-empty ini value split by `path_separator` (or the
    /// deprecated `version_path_separator`), or by spaces and commas when neither is set; else
    /// the TOML list.
    fn version_locations(&self) -> Result<Option<Vec<String>>, LoadError> {
        self.path_list(
            "version_locations",
            &["path_separator", "version_path_separator"],
            r", *| +",
        )
    }

    /// `get_prepend_sys_paths_list`, the same way (only `path_separator`; legacy split also on `:`).
    fn prepend_sys_path(&self) -> Result<Vec<String>, LoadError> {
        Ok(self
            .path_list("prepend_sys_path", &["path_separator"], r", *| +|:")?
            .unwrap_or_default())
    }

    fn path_list(
        &self,
        name: &str,
        separators: &[&str],
        legacy: &str,
    ) -> Result<Option<Vec<String>>, LoadError> {
        match self.ini_value(name)? {
            Some(value) if !value.is_empty() => {
                let mut separator = None;
                for option in separators {
                    if let Some(choice) = self.ini_value(option)? {
                        separator = Some(separator_char(&choice).ok_or_else(|| {
                            config_error(
                                &self.ini_path,
                                format!("{choice:?} is not a valid value for {option}; expected 'space', 'newline', 'os', ':', ';'"),
                            )
                        })?);
                        break;
                    }
                }
                Ok(Some(match separator {
                    Some(sep) => value
                        .split(sep)
                        .filter(|x| !x.is_empty())
                        .map(|x| x.trim().to_string())
                        .collect(),
                    None => legacy_split(&value, legacy == r", *| +|:"),
                }))
            }
            _ => match self.toml.as_ref().and_then(|t| t.get(name)).cloned() {
                None => Ok(None),
                Some(value) => self.toml_list(name, value).map(Some),
            },
        }
    }
}

/// alembic's separator names (`os` is `os.pathsep`, `:` on POSIX).
fn separator_char(choice: &str) -> Option<char> {
    match choice {
        "space" => Some(' '),
        "newline" => Some('\n'),
        "os" | ":" => Some(':'),
        ";" => Some(';'),
        _ => None,
    }
}

/// `re.split(r", *|(?: +)", value)` (and `|\:` when `colon`), empty pieces kept as Python does.
fn legacy_split(value: &str, colon: bool) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut piece = String::new();
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ',' => {
                pieces.push(std::mem::take(&mut piece));
                while chars.peek() == Some(&' ') {
                    chars.next();
                }
            }
            ' ' => {
                pieces.push(std::mem::take(&mut piece));
                while chars.peek() == Some(&' ') {
                    chars.next();
                }
            }
            ':' if colon => pieces.push(std::mem::take(&mut piece)),
            _ => piece.push(c),
        }
    }
    pieces.push(piece);
    pieces
}

/// Python's `value % {"here": here}` for the forms alembic documents (`%(here)s`, `%%`).
fn percent_here(value: &str, here: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(p) = rest.find('%') {
        out.push_str(&rest[..p]);
        rest = &rest[p..];
        if let Some(after) = rest.strip_prefix("%%") {
            out.push('%');
            rest = after;
        } else if let Some(after) = rest.strip_prefix("%(here)s") {
            out.push_str(here);
            rest = after;
        } else {
            return Err(format!(
                "unsupported % substitution at {rest:?} (only %(here)s and %%)"
            ));
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// `coerce_resource_to_filename(...).absolute()`: a relative name with a colon is
/// `package:path`, found in the `prepend_sys_path` entries, then the working directory (as
/// `python -m alembic` would import it), without importing; anything else is a path.
fn resource(
    location: &str,
    cwd: &Path,
    sys_path: &[String],
    config: &Path,
) -> Result<PathBuf, LoadError> {
    if location.starts_with('/') || !location.contains(':') {
        return Ok(absolute(Path::new(location), cwd));
    }
    let mut tokens = location.split(':');
    let package = tokens.next().unwrap_or_default();
    let roots = sys_path
        .iter()
        .map(|p| absolute(Path::new(p), cwd))
        .chain([cwd.to_path_buf()]);
    let package_dir = roots
        .map(|root| regular_package(&root, package))
        .find(|found| !matches!(found, Found::No))
        .unwrap_or(Found::No);
    match package_dir {
        Found::Package(dir) => Ok(tokens.fold(dir, |dir, token| dir.join(token))),
        Found::Namespace => Err(fallback(
            config,
            format!(
                "{location}: package {package} is a namespace package, which only Python can resolve"
            ),
        )),
        Found::No => Err(fallback(
            config,
            format!(
                "{location}: package {package} is not under prepend_sys_path or the working directory"
            ),
        )),
    }
}

enum Found {
    Package(PathBuf),
    Namespace,
    No,
}

/// `a.b` under `root` as a regular package (an `__init__.py` at every level).
fn regular_package(root: &Path, dotted: &str) -> Found {
    if dotted.is_empty() || dotted.split('.').any(|p| p.is_empty()) {
        return Found::No;
    }
    let mut dir = root.to_path_buf();
    for part in dotted.split('.') {
        dir.push(part);
        if !dir.is_dir() {
            return Found::No;
        }
        if !dir.join("__init__.py").is_file() {
            return Found::Namespace;
        }
    }
    Found::Package(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::none(&[], None, None, ("alembic.ini", "pyproject.toml", "alembic"))]
    #[case::ini(&["conf/a.ini"], Some("prod"), None, ("conf/a.ini", "pyproject.toml", "prod"))]
    #[case::pyproject(&["sub/pyproject.toml"], None, None, ("alembic.ini", "sub/pyproject.toml", "alembic"))]
    #[case::both(&["x.ini", "y/pyproject.toml"], None, None, ("x.ini", "y/pyproject.toml", "alembic"))]
    #[case::env_ini(&[], None, Some("e.ini"), ("e.ini", "pyproject.toml", "alembic"))]
    #[case::env_pyproject(&[], None, Some("e/pyproject.toml"), ("alembic.ini", "e/pyproject.toml", "alembic"))]
    #[case::flag_beats_env(&["x.ini"], None, Some("e/pyproject.toml"), ("x.ini", "pyproject.toml", "alembic"))]
    fn config_files_as_alembic_picks_them(
        #[case] configs: &[&str],
        #[case] name: Option<&str>,
        #[case] env: Option<&str>,
        #[case] expected: (&str, &str, &str),
    ) {
        let configs: Vec<PathBuf> = configs.iter().map(PathBuf::from).collect();
        let files = ConfigFiles::from_options(&configs, name, env.map(Path::new)).expect("valid");
        assert_eq!(
            (
                files.ini.to_str().expect("utf-8"),
                files.pyproject.to_str().expect("utf-8"),
                files.section.as_str()
            ),
            expected
        );
    }

    #[test]
    fn two_ini_files_are_refused() {
        let configs = [PathBuf::from("a.ini"), PathBuf::from("b.ini")];
        assert!(ConfigFiles::from_options(&configs, None, None).is_err());
    }

    /// A project in a temporary directory: `(relative path, content)` files; directories end in `/`.
    fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for (path, content) in files {
            let full = dir.path().join(path);
            if path.ends_with('/') {
                std::fs::create_dir_all(&full).expect("mkdir");
            } else {
                std::fs::create_dir_all(full.parent().expect("UNWRAP: has a parent"))
                    .expect("mkdir");
                std::fs::write(&full, content).expect("write");
            }
        }
        dir
    }

    #[derive(Debug, PartialEq)]
    enum Outcome {
        /// The script directory and version directories, relative to the project.
        Found(String, Vec<String>, bool),
        Config,
        Fallback,
    }

    fn outcome(files: &[(&str, &str)]) -> Outcome {
        let dir = project(files);
        let rel = |p: &Path| {
            p.strip_prefix(dir.path())
                .expect("inside the project")
                .display()
                .to_string()
        };
        match locate(&ConfigFiles::default(), dir.path()) {
            Ok(l) => Outcome::Found(
                rel(&l.script_dir),
                l.version_dirs.iter().map(|d| rel(d)).collect(),
                l.recursive,
            ),
            Err(LoadError::Config(_)) => Outcome::Config,
            Err(LoadError::Fallback(_)) => Outcome::Fallback,
            Err(other) => panic!("unexpected {other}"),
        }
    }

    fn found(script: &str, versions: &[&str], recursive: bool) -> Outcome {
        Outcome::Found(
            script.into(),
            versions.iter().map(|s| s.to_string()).collect(),
            recursive,
        )
    }

    const INI_SRC_PACKAGE: &str = "[alembic]\nscript_location = app.db:migrations\nprepend_sys_path = src\npath_separator = os\n";

    #[rstest]
    #[case::relative_to_the_working_directory(&[("alembic.ini", "[alembic]\nscript_location = m\n"), ("m/", "")], found("m", &["m/versions"], false))]
    #[case::package_in_a_src_layout(
        &[("alembic.ini", INI_SRC_PACKAGE), ("src/app/__init__.py", ""), ("src/app/db/__init__.py", ""), ("src/app/db/migrations/", "")],
        found("src/app/db/migrations", &["src/app/db/migrations/versions"], false)
    )]
    #[case::namespace_package(&[("alembic.ini", INI_SRC_PACKAGE), ("src/app/db/migrations/", "")], Outcome::Fallback)]
    #[case::package_not_found(&[("alembic.ini", INI_SRC_PACKAGE)], Outcome::Fallback)]
    #[case::sourceless(&[("alembic.ini", "[alembic]\nscript_location = m\nsourceless = true\n"), ("m/", "")], Outcome::Fallback)]
    #[case::boolean_is_exactly_true(&[("alembic.ini", "[alembic]\nscript_location = m\nrecursive_version_locations = True\n"), ("m/", "")], found("m", &["m/versions"], false))]
    #[case::toml_boolean(&[("pyproject.toml", "[tool.alembic]\nscript_location = 'm'\nrecursive_version_locations = true\n"), ("m/", "")], found("m", &["m/versions"], true))]
    #[case::toml_boolean_as_string(&[("pyproject.toml", "[tool.alembic]\nscript_location = 'm'\nrecursive_version_locations = 'true'\n"), ("m/", "")], Outcome::Config)]
    #[case::toml_list_as_string(&[("pyproject.toml", "[tool.alembic]\nscript_location = 'm'\nversion_locations = 'v'\n"), ("m/", "")], Outcome::Config)]
    #[case::ini_beats_toml(
        &[("alembic.ini", "[alembic]\nscript_location = a\n"), ("pyproject.toml", "[tool.alembic]\nscript_location = 'b'\nversion_locations = ['%(here)s/v']\n"), ("a/", "")],
        found("a", &["v"], false)
    )]
    #[case::other_section_is_not_read(&[("alembic.ini", "[other]\nscript_location = m\n"), ("m/", "")], Outcome::Config)]
    #[case::bad_path_separator(&[("alembic.ini", "[alembic]\nscript_location = m\nversion_locations = a\npath_separator = comma\n"), ("m/", "")], Outcome::Config)]
    #[case::deprecated_version_path_separator(
        &[("alembic.ini", "[alembic]\nscript_location = m\nversion_locations = a;b\nversion_path_separator = ;\n"), ("m/", "")],
        found("m", &["a", "b"], false)
    )]
    #[case::newline_separator(
        &[("alembic.ini", "[alembic]\nscript_location = m\nversion_locations =\n  a\n  b\npath_separator = newline\n"), ("m/", "")],
        found("m", &["a", "b"], false)
    )]
    fn locates_the_scripts_as_alembic_does(
        #[case] files: &[(&str, &str)],
        #[case] expected: Outcome,
    ) {
        assert_eq!(outcome(files), expected);
    }

    #[rstest]
    #[case::nothing(&[], None, None)]
    #[case::alembic_ini(&[("alembic.ini", "[alembic]\n")], None, Some("alembic.ini"))]
    #[case::pyproject_alone(&[("pyproject.toml", "[project]\nname = 'x'\n[tool.alembic]\nscript_location = 'm'\n")], None, Some("[tool.alembic] in pyproject.toml"))]
    #[case::pyproject_without_the_table(&[("pyproject.toml", "[project]\nname = 'x'\n")], None, None)]
    #[case::pyproject_broken(&[("pyproject.toml", "[tool.alembic\n")], None, Some("[tool.alembic] in pyproject.toml"))]
    #[case::ini_first(&[("alembic.ini", ""), ("pyproject.toml", "[tool.alembic]\n")], None, Some("alembic.ini"))]
    #[case::env_ini(&[("db/prod.ini", "")], Some("db/prod.ini"), Some("ALEMBIC_CONFIG=db/prod.ini"))]
    #[case::env_ini_missing(&[("alembic.ini", "")], Some("db/prod.ini"), None)]
    #[case::env_pyproject(&[("app/pyproject.toml", "[tool.alembic]\n")], Some("app/pyproject.toml"), Some("[tool.alembic] in ALEMBIC_CONFIG=app/pyproject.toml"))]
    fn finds_the_configuration_where_alembic_does(
        #[case] files: &[(&str, &str)],
        #[case] env: Option<&str>,
        #[case] expected: Option<&str>,
    ) {
        let dir = project(files);
        assert_eq!(
            found_here(dir.path(), env.map(Path::new)).as_deref(),
            expected
        );
    }

    #[test]
    fn flask_migrate_sets_script_location_and_reads_no_pyproject() {
        let dir = project(&[
            (
                "db/migrations/alembic.ini",
                "[alembic]\nscript_location = elsewhere\n",
            ),
            ("db/migrations/versions/", ""),
            (
                "pyproject.toml",
                "[tool.alembic]\nversion_locations = ['%(here)s/other']\n",
            ),
        ]);
        let files = ConfigFiles::flask_migrate(Path::new("db/migrations"));
        let found = locate(&files, dir.path()).expect("located");
        assert_eq!(found.script_dir, dir.path().join("db/migrations"));
        assert_eq!(
            found.version_dirs,
            [dir.path().join("db/migrations/versions")]
        );
    }

    #[rstest]
    #[case::commas_and_spaces("a, b  c,d", false, &["a", "b", "c", "d"])]
    #[case::comma_space_kept_empty("a,  ,b", false, &["a", "", "b"])]
    #[case::newlines_are_not_separators("a\nb", false, &["a\nb"])]
    #[case::colons_for_sys_path(".:src", true, &[".", "src"])]
    fn legacy_split_is_pythons_regex_split(
        #[case] value: &str,
        #[case] colon: bool,
        #[case] expected: &[&str],
    ) {
        assert_eq!(legacy_split(value, colon), expected);
    }

    #[rstest]
    #[case("%(here)s/alembic", Ok("/p/alembic".to_string()))]
    #[case("100%%", Ok("100%".to_string()))]
    #[case("%s", Err(()))]
    #[case("%(other)s", Err(()))]
    fn toml_values_substitute_here(#[case] value: &str, #[case] expected: Result<String, ()>) {
        assert_eq!(percent_here(value, "/p").map_err(|_| ()), expected);
    }
}
