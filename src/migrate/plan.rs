//! The plan (PRODUCT.md's rules): skip, a native folder, or a migration command; and how roadie
//! recognises a migrator however it is started (`uv run alembic ...`, `python -m alembic`), so
//! the migrator as COMMAND waits but does not migrate first.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use crate::children::Program;

/// What the migrate stage will do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Nothing, and why (one log line); `None` when the "no database" line already said it.
    Skip(Option<String>),
    /// A sqlx-format folder, run natively.
    Native(PathBuf),
    /// Any migrator, run as a supervised child (`alembic upgrade head`).
    Command(Program),
}

/// The inputs of the plan: what the user asked for and what the working directory holds.
#[derive(Debug, Default)]
pub struct PlanInputs<'a> {
    pub database: bool,
    pub skip: bool,
    pub migrations: Option<&'a Path>,
    pub command: Option<&'a Program>,
    /// The app's argv, when there is one.
    pub app: Option<&'a [OsString]>,
    /// alembic's configuration found here (`alembic::found_here`), as the user would name it.
    pub alembic_config: Option<String>,
    pub migrations_dir: bool,
}

/// What the plan needs resolved: the auto-detected alembic command.
#[derive(Debug, PartialEq, Eq)]
pub enum PlanDecision {
    Plan(Plan),
    /// alembic's configuration is here (alembic.ini, `[tool.alembic]` in pyproject.toml,
    /// `ALEMBIC_CONFIG`): run `alembic upgrade head` (to be found on PATH).
    Alembic,
    Invalid(String),
}

/// PRODUCT.md's rules: `--skip-migrations`; the migrator as COMMAND waits but does not migrate;
/// `--migrations DIR` or `--migrate-command CMD`; else alembic's configuration (alembic.ini,
/// `[tool.alembic]` in pyproject.toml, `ALEMBIC_CONFIG`) means `alembic upgrade head`,
/// else a `migrations/` folder of sqlx files means native; else nothing.
pub fn decide(asked: &PlanInputs<'_>) -> PlanDecision {
    if !asked.database {
        return without_a_database(asked);
    }
    if asked.migrations.is_some() && asked.command.is_some() {
        return PlanDecision::Invalid(
            "--migrations and --migrate-command exclude each other".into(),
        );
    }
    if asked.skip {
        return PlanDecision::Plan(Plan::Skip(Some("--skip-migrations: not migrating".into())));
    }
    if let Some(app) = asked.app
        && is_the_migrator(app, asked.command)
    {
        return PlanDecision::Plan(Plan::Skip(Some(format!(
            "{} is the migrator itself: waiting, but not migrating first",
            effective_program(app)
                .unwrap_or_else(|| program_name(&app[0]))
                .to_string_lossy()
        ))));
    }
    if let Some(dir) = asked.migrations {
        return PlanDecision::Plan(Plan::Native(dir.to_path_buf()));
    }
    if let Some(command) = asked.command {
        return PlanDecision::Plan(Plan::Command(command.clone()));
    }
    if asked.alembic_config.is_some() {
        return PlanDecision::Alembic;
    }
    if asked.migrations_dir {
        return PlanDecision::Plan(Plan::Native(PathBuf::from("migrations")));
    }
    PlanDecision::Plan(Plan::Skip(Some(
        "no migrations: no --migrations, --migrate-command, alembic configuration (alembic.ini, \
         [tool.alembic] in pyproject.toml, ALEMBIC_CONFIG) or migrations/ here"
            .into(),
    )))
}

/// No database: nothing can migrate. Asking for migrations is an error, and so is having them
/// here (alembic.ini, a migrations/ folder), unless `--skip-migrations` says so: a forgotten
/// variable must not start the app on an unmigrated schema (`POSTGRES_SERVER` set where
/// `POSTGRES_HOST` was expected).
fn without_a_database(asked: &PlanInputs<'_>) -> PlanDecision {
    const LOOKED_FOR: &str = "--database-url, ROADIE_DATABASE_URL, DATABASE_URL, POSTGRES_HOST, \
                              POSTGRES_SERVER, MARIADB_HOST or MYSQL_HOST (each also as *_FILE)";
    if asked.migrations.is_some() || asked.command.is_some() {
        return PlanDecision::Invalid(format!(
            "--migrations and --migrate-command need a database to lock; none is configured \
             (looked for {LOOKED_FOR})"
        ));
    }
    let migrator = asked.app.is_some_and(|app| is_the_migrator(app, None));
    let found = if let Some(alembic) = &asked.alembic_config {
        Some(alembic.as_str())
    } else if asked.migrations_dir {
        Some("a migrations/ folder of sqlx files")
    } else {
        None
    };
    match found {
        Some(found) if !asked.skip && !migrator => PlanDecision::Invalid(format!(
            "found {found} in the working directory, but no database is configured (looked for \
             {LOOKED_FOR}): configure one, or pass --skip-migrations to start without migrating"
        )),
        _ => PlanDecision::Plan(Plan::Skip(None)),
    }
}

/// Programs that run someone else's code: sharing one with the migrator says nothing
/// (`python manage.py migrate` vs `python app.py`).
const LAUNCHERS: &[&str] = &[
    "sh", "bash", "dash", "ash", "zsh", "env", "python", "python3", "node", "npx", "npm", "yarn",
    "pnpm", "bun", "deno", "ruby", "bundle", "rails", "rake", "php", "java", "uv", "uvx", "poetry",
    "pipenv", "pdm", "hatch", "dotnet", "go", "cargo", "perl", "exec",
];

fn program_name(argv0: &OsStr) -> &OsStr {
    Path::new(argv0).file_name().unwrap_or(argv0)
}

/// The program a command really runs, past the launchers people start migrators with:
/// `python3 -m alembic` (any `python`, `python3`, `python3.12`), `uv run [--flags] alembic`,
/// `poetry run alembic`, `pipenv run alembic`. `None` when a launcher runs something else
/// (`python app.py`) or nothing.
fn effective_program(argv: &[OsString]) -> Option<&OsStr> {
    effective_argv(argv).map(|argv| program_name(&argv[0]))
}

/// `argv` from the program it really runs on (see `effective_program`), never empty.
fn effective_argv(argv: &[OsString]) -> Option<&[OsString]> {
    let name = program_name(argv.first()?).to_str()?;
    let rest = &argv[1..];
    if is_python(name) {
        return match rest {
            [flag, _, ..] if flag == "-m" => Some(&rest[1..]),
            _ => None,
        };
    }
    if matches!(name, "uv" | "poetry" | "pipenv") {
        let (run, after) = rest.split_first()?;
        if run != "run" {
            return None;
        }
        return effective_argv(skip_run_options(after));
    }
    Some(argv)
}

/// `alembic upgrade head` (or `heads`) as people write it, however it is started, with the
/// options that say where its configuration is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AlembicUpgradeHead {
    /// `-c FILE` / `--config FILE`, in order (an ini file and a pyproject.toml may both be).
    pub configs: Vec<PathBuf>,
    /// `-n NAME` / `--name NAME`: the ini section.
    pub name: Option<String>,
    /// `-x KEY=VALUE`: read by env.py alone, which roadie cannot read.
    pub x: Vec<String>,
    /// `upgrade heads`: every branch to its head (done when the table holds exactly the heads).
    pub heads: bool,
    /// Flask-Migrate's `flask db upgrade` rather than alembic's own command line.
    pub flask: Option<FlaskDb>,
}

/// Flask-Migrate's `flask db upgrade`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FlaskDb {
    /// `-d/--directory DIR`; `None`: what `Migrate(directory=...)` says in the app, by default
    /// `migrations`.
    pub directory: Option<PathBuf>,
}

/// Reads `argv` as `alembic [-c FILE] [-n NAME] [-x ARG]... [--raiseerr] [-q] upgrade head[s]`,
/// started directly or through a launcher; `None` for any other command (it stays opaque).
pub fn alembic_upgrade_head(argv: &[OsString]) -> Option<AlembicUpgradeHead> {
    let argv = effective_argv(argv)?;
    match program_name(&argv[0]).to_str()? {
        "alembic" => alembic_words(&argv[1..]),
        "flask" => flask_db_upgrade(flask_db(&argv[1..])?),
        _ => None,
    }
}

/// alembic's own command line after the program name.
fn alembic_words(argv: &[OsString]) -> Option<AlembicUpgradeHead> {
    let mut words = argv.iter().map(|a| a.to_str());
    let mut found = AlembicUpgradeHead::default();
    loop {
        let word = words.next()??;
        match word.split_once('=') {
            Some(("--config", v)) => found.configs.push(v.into()),
            Some(("--name", v)) => found.name = Some(v.into()),
            _ => match word {
                "-c" | "--config" => found.configs.push(words.next()??.into()),
                "-n" | "--name" => found.name = Some(words.next()??.into()),
                "-x" => found.x.push(words.next()??.into()),
                "--raiseerr" | "-q" | "--quiet" => {}
                "upgrade" => break,
                _ => return None,
            },
        }
    }
    found.heads = match words.next()?? {
        "head" => false,
        "heads" => true,
        _ => return None,
    };
    words.next().is_none().then_some(found)
}

/// `flask [--app APP] [--env-file FILE] [--debug] db ...`: the words after `db`; `None` for any
/// other flask command (`flask run` is an app).
fn flask_db(argv: &[OsString]) -> Option<&[OsString]> {
    let mut i = 0;
    loop {
        let word = argv.get(i)?.to_str()?;
        match word {
            "db" => return Some(&argv[i + 1..]),
            "--app" | "-A" | "--env-file" | "-e" => i += 2,
            "--debug" | "--no-debug" => i += 1,
            _ if word.starts_with("--app=") || word.starts_with("--env-file=") => i += 1,
            _ => return None,
        }
    }
}

/// Flask-Migrate's `db [-d DIR] [-x ARG] upgrade [-d DIR] [-x ARG] [head|heads]` (the words
/// after `db`); `--sql`, `--tag` (read by env.py) or another revision stay opaque.
fn flask_db_upgrade(argv: &[OsString]) -> Option<AlembicUpgradeHead> {
    let mut found = AlembicUpgradeHead::default();
    let (mut group_dir, mut command_dir) = (None, None);
    let mut words = argv.iter().map(|a| a.to_str());
    let mut upgrade = false;
    let mut revision = None;
    while let Some(word) = words.next() {
        let word = word?;
        let dir = if upgrade {
            &mut command_dir
        } else {
            &mut group_dir
        };
        match word.split_once('=') {
            Some(("--directory", v)) => *dir = Some(PathBuf::from(v)),
            Some(("--x-arg", v)) => found.x.push(v.into()),
            _ => match word {
                "-d" | "--directory" => *dir = Some(PathBuf::from(words.next()??)),
                "-x" | "--x-arg" => found.x.push(words.next()??.into()),
                "upgrade" if !upgrade => upgrade = true,
                "head" | "heads" if upgrade && revision.is_none() => revision = Some(word),
                _ => return None,
            },
        }
    }
    if !upgrade {
        return None;
    }
    found.heads = revision == Some("heads");
    found.flask = Some(FlaskDb {
        directory: command_dir.or(group_dir),
    });
    Some(found)
}

/// `uv run`'s options before the program (`--no-sync`, `--with alembic`, `--python=3.12`).
fn skip_run_options(argv: &[OsString]) -> &[OsString] {
    // uv run's options that take a separate value.
    const WITH_VALUE: &[&str] = &[
        "--with",
        "--with-editable",
        "--with-requirements",
        "--python",
        "-p",
        "--group",
        "--extra",
        "--env-file",
        "--directory",
        "--project",
        "--package",
        "--index",
        "--default-index",
        "--index-url",
        "--extra-index-url",
        "--find-links",
        "-f",
        "--config-file",
        "--cache-dir",
    ];
    let mut i = 0;
    while let Some(arg) = argv.get(i).and_then(|a| a.to_str()) {
        if arg == "--" {
            return &argv[i + 1..];
        }
        if !arg.starts_with('-') {
            break;
        }
        i += if WITH_VALUE.contains(&arg) { 2 } else { 1 };
    }
    argv.get(i..).unwrap_or_default()
}

fn is_python(name: &str) -> bool {
    let Some(version) = name.strip_prefix("python") else {
        return false;
    };
    version.is_empty() || version.chars().all(|c| c.is_ascii_digit() || c == '.')
}

/// Whether the app is the migrator itself, so `alembic downgrade -1` as COMMAND is not preceded
/// by an upgrade: alembic however it is started; the migrate command exactly; or the program
/// the migrate command really runs, when the app runs it too (`dbmate status` for `dbmate up`,
/// `uv run alembic current` for `alembic upgrade head`), not a bare launcher.
fn is_the_migrator(app: &[OsString], command: Option<&Program>) -> bool {
    let effective = effective_program(app);
    if effective == Some(OsStr::new("alembic")) {
        return true;
    }
    // Flask-Migrate's commands are `flask db ...`; any other flask command is the app.
    if effective == Some(OsStr::new("flask")) {
        return effective_argv(app).is_some_and(|argv| flask_db(&argv[1..]).is_some());
    }
    let Some(command) = command else {
        return false;
    };
    if command.argv == app {
        return true;
    }
    let Some(name) = effective.and_then(OsStr::to_str) else {
        return false;
    };
    let launcher = LAUNCHERS.contains(&name) || is_python(name);
    !launcher && effective_program(&command.argv) == Some(OsStr::new(name))
}

/// Whether `dir` holds at least one sqlx-format migration (`<version>_<description>.sql`).
pub fn has_sqlx_migrations(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries
        .flatten()
        .any(|e| is_sqlx_migration_name(&e.file_name().to_string_lossy()))
}

/// sqlx's file name rule: `<VERSION>_<DESCRIPTION>.sql`, VERSION an i64.
pub fn is_sqlx_migration_name(name: &str) -> bool {
    name.ends_with(".sql")
        && name
            .split_once('_')
            .is_some_and(|(v, _)| !v.is_empty() && v.parse::<i64>().is_ok())
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn program(argv0: &str) -> Program {
        Program {
            path: PathBuf::from(format!("/usr/bin/{argv0}")),
            argv: vec![argv0.into(), "upgrade".into()],
        }
    }

    #[rstest]
    #[case::no_database(PlanInputs { ..Default::default() }, PlanDecision::Plan(Plan::Skip(None)))]
    #[case::skip(PlanInputs { database: true, skip: true, alembic_config: Some("alembic.ini".into()), ..Default::default() }, PlanDecision::Plan(Plan::Skip(Some("--skip-migrations: not migrating".into()))))]
    #[case::alembic_ini(PlanInputs { database: true, alembic_config: Some("alembic.ini".into()), migrations_dir: true, ..Default::default() }, PlanDecision::Alembic)]
    #[case::pyproject_alone(PlanInputs { database: true, alembic_config: Some("[tool.alembic] in pyproject.toml".into()), ..Default::default() }, PlanDecision::Alembic)]
    #[case::migrations_dir(PlanInputs { database: true, migrations_dir: true, ..Default::default() }, PlanDecision::Plan(Plan::Native("migrations".into())))]
    #[case::nothing(PlanInputs { database: true, ..Default::default() }, PlanDecision::Plan(Plan::Skip(Some("no migrations: no --migrations, --migrate-command, alembic configuration (alembic.ini, [tool.alembic] in pyproject.toml, ALEMBIC_CONFIG) or migrations/ here".into()))))]
    #[case::explicit_folder(PlanInputs { database: true, migrations: Some(Path::new("db")), alembic_config: Some("alembic.ini".into()), ..Default::default() }, PlanDecision::Plan(Plan::Native("db".into())))]
    #[case::no_database_but_skip(PlanInputs { skip: true, alembic_config: Some("alembic.ini".into()), ..Default::default() }, PlanDecision::Plan(Plan::Skip(None)))]
    fn the_plan_follows_product_md(#[case] asked: PlanInputs<'_>, #[case] expected: PlanDecision) {
        assert_eq!(decide(&asked), expected);
    }

    fn argv(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[rstest]
    #[case(&["alembic", "downgrade", "-1"], &["alembic", "upgrade", "head"], true)]
    #[case(&["/venv/bin/alembic", "current"], &["dbmate", "up"], true)]
    #[case(&["dbmate", "status"], &["dbmate", "up"], true)]
    #[case(&["python3", "manage.py", "migrate"], &["python3", "manage.py", "migrate"], true)]
    #[case(&["python3", "app.py"], &["python3", "-c", "migrate()"], false)]
    #[case(&["python", "manage.py", "runserver"], &["python", "manage.py", "migrate"], false)]
    #[case(&["bundle", "exec", "puma"], &["bundle", "exec", "rake", "db:migrate"], false)]
    #[case(&["sh", "-c", "uvicorn app:app"], &["sh", "-c", "./migrate.sh"], false)]
    #[case(&["uvicorn", "app:app"], &["dbmate", "up"], false)]
    #[case(&["python", "-m", "alembic", "downgrade", "-1"], &["alembic", "upgrade", "head"], true)]
    #[case(&["python3", "-m", "alembic", "current"], &["dbmate", "up"], true)]
    #[case(&["/usr/bin/python3.12", "-m", "alembic", "downgrade", "-1"], &["alembic", "upgrade", "head"], true)]
    #[case(&["uv", "run", "alembic", "downgrade", "-1"], &["alembic", "upgrade", "head"], true)]
    #[case(&["uv", "run", "--no-sync", "--with", "psycopg", "alembic", "current"], &["dbmate", "up"], true)]
    #[case(&["poetry", "run", "alembic", "downgrade", "-1"], &["alembic", "upgrade", "head"], true)]
    #[case(&["pipenv", "run", "alembic", "history"], &["alembic", "upgrade", "head"], true)]
    #[case(&["uv", "run", "dbmate", "status"], &["dbmate", "up"], true)]
    #[case(&["uv", "run", "uvicorn", "app:app"], &["uv", "run", "alembic", "upgrade", "head"], false)]
    #[case(&["uvicorn", "alembic_app:app"], &["alembic", "upgrade", "head"], false)]
    #[case(&["python", "-m", "uvicorn", "alembic:app"], &["alembic", "upgrade", "head"], false)]
    #[case(&["python", "alembic.py"], &["alembic", "upgrade", "head"], false)]
    #[case(&["python3.x", "-m", "alembic"], &["dbmate", "up"], false)]
    #[case(&["flask", "db", "downgrade"], &["flask", "db", "upgrade"], true)]
    #[case(&["flask", "--app", "app", "db", "current"], &["alembic", "upgrade", "head"], true)]
    #[case(&["uv", "run", "flask", "db", "history"], &["dbmate", "up"], true)]
    #[case(&["python", "-m", "flask", "db", "downgrade"], &["flask", "db", "upgrade"], true)]
    #[case(&["flask", "run", "--host", "0.0.0.0"], &["flask", "db", "upgrade"], false)]
    #[case(&["flask", "--app", "app", "run"], &["flask", "--app", "app", "db", "upgrade"], false)]
    #[case(&["flask", "seed-data"], &["flask", "db", "upgrade"], false)]
    fn the_migrator_as_command_waits_but_does_not_migrate(
        #[case] app: &[&str],
        #[case] migrate_command: &[&str],
        #[case] is_migrator: bool,
    ) {
        let command = Program {
            path: PathBuf::from(migrate_command[0]),
            argv: argv(migrate_command),
        };
        let app = argv(app);
        let asked = PlanInputs {
            database: true,
            command: Some(&command),
            app: Some(&app),
            ..Default::default()
        };
        let skipped = matches!(decide(&asked), PlanDecision::Plan(Plan::Skip(Some(_))));
        assert_eq!(
            skipped, is_migrator,
            "{app:?} with --migrate-command {migrate_command:?}"
        );
    }

    #[rstest]
    #[case::alembic_ini(PlanInputs { alembic_config: Some("alembic.ini".into()), ..Default::default() }, "found alembic.ini")]
    #[case::pyproject_alone(PlanInputs { alembic_config: Some("[tool.alembic] in pyproject.toml".into()), ..Default::default() }, "found [tool.alembic] in pyproject.toml")]
    #[case::alembic_config_env(PlanInputs { alembic_config: Some("ALEMBIC_CONFIG=db/prod.ini".into()), ..Default::default() }, "found ALEMBIC_CONFIG=db/prod.ini")]
    #[case::migrations_dir(PlanInputs { migrations_dir: true, ..Default::default() }, "found a migrations/ folder")]
    fn migrations_found_without_a_database_are_refused_naming_them(
        #[case] asked: PlanInputs<'_>,
        #[case] says: &str,
    ) {
        let PlanDecision::Invalid(message) = decide(&asked) else {
            panic!("accepted: {asked:?}");
        };
        assert!(
            message.contains(says) && message.contains("POSTGRES_SERVER"),
            "{message}"
        );
        assert!(message.contains("--skip-migrations"), "{message}");
    }

    #[rstest]
    #[case(&["alembic", "upgrade", "head"], Some(AlembicUpgradeHead::default()))]
    #[case(&["python", "-m", "alembic", "upgrade", "head"], Some(AlembicUpgradeHead::default()))]
    #[case(&["uv", "run", "alembic", "upgrade", "head"], Some(AlembicUpgradeHead::default()))]
    #[case(&["/venv/bin/alembic", "-c", "db/alembic.ini", "-n", "tenant", "upgrade", "head"], Some(AlembicUpgradeHead { configs: vec!["db/alembic.ini".into()], name: Some("tenant".into()), x: vec![], heads: false, flask: None }))]
    #[case(&["alembic", "--config=a.ini", "--raiseerr", "-x", "data=true", "upgrade", "head"], Some(AlembicUpgradeHead { configs: vec!["a.ini".into()], name: None, x: vec!["data=true".into()], heads: false, flask: None }))]
    #[case(&["alembic", "upgrade", "heads"], Some(AlembicUpgradeHead { heads: true, ..Default::default() }))]
    #[case(&["uv", "run", "alembic", "-c", "a.ini", "upgrade", "heads"], Some(AlembicUpgradeHead { configs: vec!["a.ini".into()], heads: true, ..Default::default() }))]
    #[case(&["alembic", "upgrade", "heads", "--sql"], None)]
    #[case(&["flask", "db", "upgrade"], Some(AlembicUpgradeHead { flask: Some(FlaskDb::default()), ..Default::default() }))]
    #[case(&["flask", "--app", "app:create_app()", "db", "-d", "db/migrations", "upgrade", "heads"], Some(AlembicUpgradeHead { flask: Some(FlaskDb { directory: Some("db/migrations".into()) }), heads: true, ..Default::default() }))]
    #[case(&["uv", "run", "flask", "db", "--directory=outer", "upgrade", "--directory", "inner", "head"], Some(AlembicUpgradeHead { flask: Some(FlaskDb { directory: Some("inner".into()) }), ..Default::default() }))]
    #[case(&["python", "-m", "flask", "db", "upgrade", "-x", "tenant=a"], Some(AlembicUpgradeHead { flask: Some(FlaskDb::default()), x: vec!["tenant=a".into()], ..Default::default() }))]
    #[case(&["flask", "db", "upgrade", "--sql"], None)]
    #[case(&["flask", "db", "upgrade", "--tag", "t"], None)]
    #[case(&["flask", "db", "upgrade", "ae10"], None)]
    #[case(&["flask", "db", "downgrade"], None)]
    #[case(&["flask", "run"], None)]
    #[case(&["alembic", "upgrade", "branch@head"], None)]
    #[case(&["alembic", "upgrade", "head", "--sql"], None)]
    #[case(&["alembic", "upgrade", "+1"], None)]
    #[case(&["alembic", "-c"], None)]
    #[case(&["alembic", "downgrade", "-1"], None)]
    #[case(&["sh", "-c", "alembic upgrade head"], None)]
    #[case(&["python", "manage.py", "upgrade", "head"], None)]
    fn reads_alembic_upgrade_head_in_its_usual_forms(
        #[case] words: &[&str],
        #[case] expected: Option<AlembicUpgradeHead>,
    ) {
        assert_eq!(alembic_upgrade_head(&argv(words)), expected, "{words:?}");
    }

    #[test]
    fn explicit_migrations_without_a_database_or_both_kinds_are_invalid() {
        let command = program("alembic");
        let no_db = PlanInputs {
            command: Some(&command),
            ..Default::default()
        };
        assert!(matches!(decide(&no_db), PlanDecision::Invalid(_)));
        let both = PlanInputs {
            database: true,
            command: Some(&command),
            migrations: Some(Path::new("m")),
            ..Default::default()
        };
        assert!(matches!(decide(&both), PlanDecision::Invalid(_)));
    }

    #[test]
    fn a_folder_counts_when_it_holds_sqlx_files() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!has_sqlx_migrations(dir.path()));
        std::fs::write(dir.path().join("README.md"), "").unwrap();
        std::fs::write(dir.path().join("init.sql"), "").unwrap();
        assert!(!has_sqlx_migrations(dir.path()));
        std::fs::write(dir.path().join("20240101_create.sql"), "").unwrap();
        assert!(has_sqlx_migrations(dir.path()));
    }
}
