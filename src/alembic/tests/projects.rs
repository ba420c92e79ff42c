//! Projects as real ones configure alembic, each booted in a state chosen to make a wrong skip
//! visible, with the real `alembic upgrade` as the oracle (`upgrade_oracle.py`): roadie's
//! verdict (skip, run alembic, 65, 78) must be what alembic would do (a skip only where
//! alembic changes nothing, 65/78 only where alembic fails), and a fallback names its reason.
//! The templates alembic ships are copied from the installed package.

use std::path::{Path, PathBuf};

use std::time::Duration;

use serde::Deserialize;

use super::super::{ConfigFiles, EnvSettings, LoadError, Verdict, load, load_flask};
use super::{Project, Rev, run_oracle, venv_python};

const UPGRADE_ORACLE: &str = include_str!("upgrade_oracle.py");
const DEADLINE: Duration = Duration::from_secs(120);

/// What roadie decides for `alembic upgrade head[s]` (as `at_head.rs` does).
#[derive(Debug, Clone, PartialEq)]
enum Roadie {
    /// At head: alembic is not started.
    Skip,
    /// alembic runs; why (the fallback line, or `pending`).
    Run(String),
    /// Refused before Python starts (65), and why.
    Refuse(String),
    /// alembic's configuration is broken (78).
    Config(String),
}

/// What `alembic upgrade` did to the version tables.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Alembic {
    Noop,
    Changed,
    Fails,
    /// Anything: roadie runs alembic, so whatever it does is what happens.
    Any,
}

#[derive(Debug, Deserialize)]
struct Answer {
    before: std::collections::BTreeMap<String, std::collections::BTreeMap<String, Vec<String>>>,
    outcome: String,
}

/// One fixture: a project, how alembic is started, the tables before, and the two expectations.
struct Fixture {
    name: &'static str,
    project: Project,
    /// alembic's global options (`-c FILE`), before `upgrade`.
    options: Vec<String>,
    /// `upgrade heads` rather than `upgrade head`.
    heads: bool,
    /// Flask-Migrate: `flask --app app db [-d DIR] upgrade`, with `-d DIR` when `Some(Some)`.
    flask: Option<Option<&'static str>>,
    /// `--alembic-version-table` (no schema: the fixtures are SQLite files).
    flag: Option<&'static str>,
    env: Vec<(&'static str, &'static str)>,
    /// `(file relative to the project, table, rows)`; the first file is roadie's database.
    tables: Vec<(&'static str, &'static str, Vec<&'static str>)>,
    roadie: Roadie,
    alembic: Alembic,
}

/// The two revisions most fixtures use: `a1` then `b1` (head).
fn two_revisions(p: &Project, versions: &str) {
    p.revision(versions, &Rev::new("a1", &[]));
    p.revision(versions, &Rev::new("b1", &["a1"]));
}

/// alembic's template file `template/name`, as the installed package ships it.
pub fn template(template: &str, name: &str) -> String {
    std::fs::read_to_string(template_dir().join(template).join(name))
        .unwrap_or_else(|e| panic!("alembic's {template}/{name}: {e}"))
}

/// The installed alembic's `templates` directory.
fn template_dir() -> PathBuf {
    let python = venv_python();
    let lib = python
        .parent()
        .and_then(Path::parent)
        .expect("UNWRAP: .venv/bin/python")
        .join("lib");
    std::fs::read_dir(&lib)
        .ok()
        .and_then(|mut d| {
            d.find_map(|e| {
                e.ok()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("python"))
            })
        })
        .map(|e| e.path().join("site-packages/alembic/templates"))
        .filter(|p| p.is_dir())
        .unwrap_or_else(|| {
            panic!(
                "no alembic templates under {}: run scripts/venv.sh",
                lib.display()
            )
        })
}

/// Logging sections `fileConfig` needs (the templates' env.py call it on the ini).
const LOGGING: &str = "\
[loggers]
keys = root
[handlers]
keys = console
[formatters]
keys = generic
[logger_root]
level = WARNING
handlers = console
[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic
[formatter_generic]
format = %%(levelname)s %%(message)s
";

/// An alembic.ini of the generic template's shape (database `oracle.sqlite` beside it).
fn ini_with(options: &str) -> String {
    format!(
        "[alembic]\nscript_location = %(here)s/migrations\nsqlalchemy.url = sqlite:///%(here)s/oracle.sqlite\n{options}\n{LOGGING}"
    )
}

/// A project on the `generic` template's env.py, `edit` applied to it.
fn generic(edit: impl Fn(String) -> String) -> Project {
    let p = Project::new();
    p.write("alembic.ini", &ini_with(""));
    p.write("migrations/env.py", &edit(template("generic", "env.py")));
    two_revisions(&p, "migrations/versions");
    p
}

/// The generic template's online `configure` with `extra` keyword arguments.
fn online_configure(extra: &'static str) -> impl Fn(String) -> String {
    move |env: String| {
        let online = "connection=connection, target_metadata=target_metadata";
        assert!(env.contains(online), "alembic's generic env.py changed");
        let env = env.replace(online, &format!("{online}, {extra}"));
        if extra.contains("os.") {
            format!("import os\n{env}")
        } else {
            env
        }
    }
}

/// An env.py without the ini: the database named in it (pyproject.toml alone).
fn env_for(db: &Path) -> String {
    format!(
        "from alembic import context\nfrom sqlalchemy import create_engine\n\n\
         def run_migrations_online():\n    \
         with create_engine({url:?}).connect() as connection:\n        \
         context.configure(connection=connection, target_metadata=None)\n        \
         with context.begin_transaction():\n            context.run_migrations()\n\n\
         if context.is_offline_mode():\n    raise SystemExit('online only')\nelse:\n    run_migrations_online()\n",
        url = format!("sqlite:///{}", db.display())
    )
}

fn pyproject_alone() -> Project {
    let p = Project::new();
    p.write(
        "pyproject.toml",
        "[project]\nname = \"app\"\n\n[tool.alembic]\nscript_location = \"%(here)s/migrations\"\n",
    );
    p.write(
        "migrations/env.py",
        &env_for(&p.path().join("oracle.sqlite")),
    );
    two_revisions(&p, "migrations/versions");
    p
}

fn pyproject_template() -> Project {
    let p = Project::new();
    p.write(
        "pyproject.toml",
        "[tool.alembic]\nscript_location = \"%(here)s/migrations\"\nprepend_sys_path = [\".\"]\n",
    );
    p.write(
        "alembic.ini",
        &format!("[alembic]\nsqlalchemy.url = sqlite:///%(here)s/oracle.sqlite\n\n{LOGGING}"),
    );
    p.write("migrations/env.py", &template("pyproject", "env.py"));
    two_revisions(&p, "migrations/versions");
    p
}

fn multidb() -> Project {
    let p = Project::new();
    p.write(
        "alembic.ini",
        &format!(
            "[alembic]\nscript_location = %(here)s/migrations\ndatabases = engine1, engine2\n\n\
             [engine1]\nsqlalchemy.url = sqlite:///%(here)s/oracle.sqlite\n\n\
             [engine2]\nsqlalchemy.url = sqlite:///%(here)s/engine2.sqlite\n\n{LOGGING}"
        ),
    );
    p.write("migrations/env.py", &template("multidb", "env.py"));
    for rev in [Rev::new("a1", &[]), Rev::new("b1", &["a1"])] {
        // multidb's env.py calls upgrade(engine_name=...).
        let text = rev.render().replace(
            "def upgrade() -> None:",
            "def upgrade(engine_name: str) -> None:",
        );
        p.write(&format!("migrations/versions/{}_step.py", rev.id), &text);
    }
    p
}

const TENANT_LOOP_ENV: &str = "\
from alembic import context
from sqlalchemy import engine_from_config, pool

config = context.config


def run_migrations_online():
    connectable = engine_from_config(config.get_section(config.config_ini_section, {}), poolclass=pool.NullPool)
    with connectable.connect() as connection:
        for tenant in ('tenant_a', 'tenant_b'):
            context.configure(connection=connection, version_table=tenant + '_version')
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()


if context.is_offline_mode():
    raise SystemExit('online only')
else:
    run_migrations_online()
";

fn tenant_loop() -> Project {
    let p = Project::new();
    p.write("alembic.ini", &ini_with(""));
    p.write("migrations/env.py", TENANT_LOOP_ENV);
    two_revisions(&p, "migrations/versions");
    p
}

fn empty_versions() -> Project {
    let p = Project::new();
    p.write("alembic.ini", &ini_with(""));
    p.write("migrations/env.py", &template("generic", "env.py"));
    std::fs::create_dir_all(p.path().join("migrations/versions")).expect("mkdir");
    p
}

fn several_heads() -> Project {
    let p = generic(|e| e);
    p.revision("migrations/versions", &Rev::new("c1", &["a1"]));
    p
}

/// Revision files that do everything in their functions (and import from `app.modules`).
fn busy_revisions() -> Project {
    let p = Project::new();
    p.write("alembic.ini", &ini_with("prepend_sys_path = ."));
    p.write("migrations/env.py", &template("generic", "env.py"));
    p.write("app/__init__.py", "");
    p.write("app/modules/__init__.py", "");
    p.write("app/modules/billing.py", "TABLE = 'invoices'\n");
    p.revision("migrations/versions", &Rev::new("a1", &[]));
    let b1 = Rev::new("b1", &["a1"]).render().replace(
        "from alembic import op\n",
        "from alembic import op\nfrom app.modules.billing import TABLE\n",
    );
    let busy = "def upgrade() -> None:\n    \"\"\"Upgrade schema.\"\"\"\n    \
                for revision in ('x', 'y'):\n        \
                op.execute(f\"UPDATE {TABLE} SET rev = '{revision!r}'\")\n        \
                op.execute('UPDATE {} SET v = 1'.format(revision) + ' -- ' + revision)\n    \
                setattr(op, 'revision', 'z')\n    exec('down_revision = 1')\n";
    let b1 = b1.replace(
        "def upgrade() -> None:\n    \"\"\"Upgrade schema.\"\"\"\n    pass\n",
        busy,
    );
    assert!(b1.contains("setattr"), "Rev::render changed");
    p.write("migrations/versions/b1_step.py", &b1);
    p
}

/// `b1` labels itself with a computed `branch_labels`; with `depends`, `c1` depends on it.
fn computed_labels(depends: bool) -> Project {
    let p = generic(|e| e);
    let b1 = Rev::new("b1", &["a1"]).render().replace(
        "branch_labels: Union[str, Sequence[str], None] = None",
        "branch_labels = tuple(['sh' + 'op'])",
    );
    p.write("migrations/versions/b1_step.py", &b1);
    if depends {
        p.revision(
            "migrations/versions",
            &Rev::new("c1", &["b1"]).depends(&["shop"]),
        );
    }
    p
}

fn star_import() -> Project {
    let p = generic(|e| e);
    let b1 = Rev::new("b1", &["a1"])
        .render()
        .replace("import sqlalchemy as sa\n", "from sqlalchemy import *\n");
    p.write("migrations/versions/b1_step.py", &b1);
    p
}

/// A Flask app on Flask-Migrate (SQLite `oracle.sqlite`), `Migrate(app, db{migrate})`, its
/// migrations folder at `dir` as `flask db init` writes it (Flask-Migrate's flask template).
fn flask_app(dir: &str, migrate: &str, extra: &str) -> Project {
    let p = Project::new();
    p.write(
        "app.py",
        &format!(
            "import os\nfrom flask import Flask\nfrom flask_sqlalchemy import SQLAlchemy\n\
             from flask_migrate import Migrate\n\napp = Flask(__name__)\n\
             app.config['SQLALCHEMY_DATABASE_URI'] = 'sqlite:///' + os.path.join(\
             os.path.dirname(os.path.abspath(__file__)), 'oracle.sqlite')\n\
             db = SQLAlchemy(app)\nmigrate = Migrate(app, db{migrate})\n{extra}"
        ),
    );
    p.write(
        &format!("{dir}/alembic.ini"),
        &flask_template("alembic.ini.mako"),
    );
    p.write(&format!("{dir}/env.py"), &flask_template("env.py"));
    two_revisions(&p, &format!("{dir}/versions"));
    p
}

/// Flask-Migrate's `flask` template file `name`, as the installed package ships it.
fn flask_template(name: &str) -> String {
    let site = template_dir();
    let site = site
        .parent()
        .and_then(Path::parent)
        .expect("UNWRAP: site-packages/alembic/templates");
    let path = site.join("flask_migrate/templates/flask").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (scripts/venv.sh installs Flask-Migrate)",
            path.display()
        )
    })
}

fn fixtures() -> Vec<Fixture> {
    let run = |why: &str| Roadie::Run(why.to_string());
    let fixture = |name, project, tables, roadie, alembic| Fixture {
        name,
        project,
        options: Vec::new(),
        heads: false,
        flask: None,
        flag: None,
        env: Vec::new(),
        tables,
        roadie,
        alembic,
    };
    let main = |table, rows| vec![("oracle.sqlite", table, rows)];
    vec![
        fixture(
            "generic template at head",
            generic(|e| e),
            main("alembic_version", vec!["b1"]),
            Roadie::Skip,
            Alembic::Noop,
        ),
        fixture(
            "generic template one behind",
            generic(|e| e),
            main("alembic_version", vec!["a1"]),
            run("pending"),
            Alembic::Changed,
        ),
        fixture(
            "pyproject template at head",
            pyproject_template(),
            main("alembic_version", vec!["b1"]),
            Roadie::Skip,
            Alembic::Noop,
        ),
        fixture(
            "pyproject template one behind",
            pyproject_template(),
            main("alembic_version", vec!["a1"]),
            run("pending"),
            Alembic::Changed,
        ),
        fixture(
            "pyproject.toml alone at head",
            pyproject_alone(),
            main("alembic_version", vec!["b1"]),
            Roadie::Skip,
            Alembic::Noop,
        ),
        fixture(
            "pyproject.toml alone, no table",
            pyproject_alone(),
            main("other", vec![]),
            run("pending"),
            Alembic::Changed,
        ),
        fixture(
            "multidb template, engine1 at head, engine2 behind",
            multidb(),
            vec![
                ("oracle.sqlite", "alembic_version", vec!["b1"]),
                ("engine2.sqlite", "alembic_version", vec!["a1"]),
            ],
            run("env.py: line 114: context.configure(...) runs inside the loop of line 112"),
            Alembic::Changed,
        ),
        fixture(
            "literal version_table at head, another graph's alembic_version",
            generic(online_configure("version_table=\"activity_version\"")),
            vec![
                ("oracle.sqlite", "activity_version", vec!["b1"]),
                ("oracle.sqlite", "alembic_version", vec!["c0ffee"]),
            ],
            Roadie::Skip,
            Alembic::Noop,
        ),
        fixture(
            "literal version_table behind, alembic_version at head",
            generic(online_configure("version_table=\"activity_version\"")),
            vec![
                ("oracle.sqlite", "activity_version", vec!["a1"]),
                ("oracle.sqlite", "alembic_version", vec!["b1"]),
            ],
            run("pending"),
            Alembic::Changed,
        ),
        Fixture {
            env: vec![("VERSION_TABLE", "t2")],
            ..fixture(
                "computed version_table behind, alembic_version at head",
                generic(online_configure(
                    "version_table=os.environ.get('VERSION_TABLE', 'alembic_version')",
                )),
                vec![
                    ("oracle.sqlite", "t2", vec!["a1"]),
                    ("oracle.sqlite", "alembic_version", vec!["b1"]),
                ],
                run("env.py: line 69: version_table is not a literal string"),
                Alembic::Changed,
            )
        },
        Fixture {
            env: vec![("VERSION_TABLE", "t2")],
            flag: Some("t2"),
            ..fixture(
                "computed version_table at head, named by the flag",
                generic(online_configure(
                    "version_table=os.environ.get('VERSION_TABLE', 'alembic_version')",
                )),
                vec![("oracle.sqlite", "t2", vec!["b1"])],
                Roadie::Skip,
                Alembic::Noop,
            )
        },
        Fixture {
            flag: Some("tenant_a_version"),
            ..fixture(
                "tenant loop, the flag naming the tenant at head",
                tenant_loop(),
                vec![
                    ("oracle.sqlite", "tenant_a_version", vec!["b1"]),
                    ("oracle.sqlite", "tenant_b_version", vec!["a1"]),
                ],
                run("env.py: line 11: context.configure(...) runs inside the loop of line 10"),
                Alembic::Changed,
            )
        },
        fixture(
            "env.py reads -x",
            generic(|e| {
                e.replace(
                    "config = context.config\n",
                    "config = context.config\nSCHEMA = context.get_x_argument(as_dictionary=True).get('schema')\n",
                )
            }),
            main("alembic_version", vec!["b1"]),
            run("env.py: line 11: reads alembic's -x arguments"),
            Alembic::Noop,
        ),
        fixture(
            "empty versions folder, no table",
            empty_versions(),
            vec![("oracle.sqlite", "unrelated", vec![])],
            run("no revision file in"),
            Alembic::Any,
        ),
        fixture(
            "empty versions folder, empty table",
            empty_versions(),
            main("alembic_version", vec![]),
            run("no revision file in"),
            Alembic::Any,
        ),
        fixture(
            "several heads, upgrade head",
            several_heads(),
            main("alembic_version", vec!["b1", "c1"]),
            Roadie::Refuse("several heads".into()),
            Alembic::Fails,
        ),
        Fixture {
            heads: true,
            ..fixture(
                "several heads, upgrade heads at both",
                several_heads(),
                main("alembic_version", vec!["b1", "c1"]),
                Roadie::Skip,
                Alembic::Noop,
            )
        },
        Fixture {
            heads: true,
            ..fixture(
                "several heads, upgrade heads, one branch behind",
                several_heads(),
                main("alembic_version", vec!["b1"]),
                run("pending"),
                Alembic::Changed,
            )
        },
        fixture(
            "a revision no script knows",
            generic(|e| e),
            main("alembic_version", vec!["c0ffee"]),
            Roadie::Refuse("c0ffee".into()),
            Alembic::Fails,
        ),
        fixture(
            "no script_location",
            {
                let p = generic(|e| e);
                p.write(
                    "alembic.ini",
                    &format!(
                        "[alembic]\nsqlalchemy.url = sqlite:///%(here)s/oracle.sqlite\n{LOGGING}"
                    ),
                );
                p
            },
            main("alembic_version", vec!["b1"]),
            Roadie::Config("no script_location".into()),
            Alembic::Fails,
        ),
        fixture(
            "revision files busy in their functions, at head",
            busy_revisions(),
            main("alembic_version", vec!["b1"]),
            Roadie::Skip,
            Alembic::Noop,
        ),
        fixture(
            "a computed branch_labels, at head",
            computed_labels(false),
            main("alembic_version", vec!["b1"]),
            Roadie::Skip,
            Alembic::Noop,
        ),
        fixture(
            "a depends_on naming a computed label",
            computed_labels(true),
            main("alembic_version", vec!["c1"]),
            run("depends_on shop names no revision; it may be a branch label"),
            Alembic::Any,
        ),
        fixture(
            "a star import in a revision",
            star_import(),
            main("alembic_version", vec!["b1"]),
            run("a star import can bind `revision`"),
            Alembic::Any,
        ),
        Fixture {
            flask: Some(None),
            ..fixture(
                "flask db upgrade at head",
                flask_app("migrations", "", ""),
                main("alembic_version", vec!["b1"]),
                Roadie::Skip,
                Alembic::Noop,
            )
        },
        Fixture {
            flask: Some(None),
            ..fixture(
                "flask db upgrade one behind",
                flask_app("migrations", "", ""),
                main("alembic_version", vec!["a1"]),
                run("pending"),
                Alembic::Changed,
            )
        },
        Fixture {
            flask: Some(Some("db/migrations")),
            ..fixture(
                "flask db -d upgrade at head, Migrate(directory=...) too",
                flask_app("db/migrations", ", directory='db/migrations'", ""),
                main("alembic_version", vec!["b1"]),
                Roadie::Skip,
                Alembic::Noop,
            )
        },
        Fixture {
            flask: Some(None),
            ..fixture(
                "flask db upgrade, Migrate(directory=...) and a stale migrations/",
                {
                    let p = flask_app("db/migrations", ", directory='db/migrations'", "");
                    p.write("migrations/alembic.ini", "[alembic]\n");
                    p
                },
                main("alembic_version", vec!["a1"]),
                run("app.py: line 9: sets a directory, which may be Migrate(directory=...)"),
                Alembic::Changed,
            )
        },
        Fixture {
            flask: Some(None),
            ..fixture(
                "flask db upgrade, Migrate(version_table=...) behind, alembic_version at head",
                flask_app("migrations", ", version_table='app_version'", ""),
                vec![
                    ("oracle.sqlite", "app_version", vec!["a1"]),
                    ("oracle.sqlite", "alembic_version", vec!["b1"]),
                ],
                run("app.py: line 9: names version_table"),
                Alembic::Changed,
            )
        },
        Fixture {
            flask: Some(None),
            ..fixture(
                "flask db upgrade, a configure callback",
                flask_app(
                    "migrations",
                    "",
                    "\n@migrate.configure\ndef configure_alembic(config):\n    return config\n",
                ),
                main("alembic_version", vec!["b1"]),
                run("app.py: line 11: a Flask-Migrate configure callback"),
                Alembic::Any,
            )
        },
        Fixture {
            flask: Some(None),
            heads: true,
            ..fixture(
                "flask db upgrade heads at both heads",
                {
                    let p = flask_app("migrations", "", "");
                    p.revision("migrations/versions", &Rev::new("c1", &["a1"]));
                    p
                },
                main("alembic_version", vec!["b1", "c1"]),
                Roadie::Skip,
                Alembic::Noop,
            )
        },
    ]
}

/// roadie's verdict for `fixture`, the tables as the oracle read them before the upgrade.
fn roadie_verdict(fixture: &Fixture, answer: &Answer) -> Roadie {
    let configs: Vec<PathBuf> = fixture
        .options
        .chunks(2)
        .map(|o| PathBuf::from(&o[1]))
        .collect();
    let files = ConfigFiles::from_options(&configs, None, None).expect("valid options");
    let loaded = match fixture.flask {
        Some(directory) => load_flask(directory.map(Path::new), fixture.project.path()),
        None => load(&files, fixture.project.path()),
    };
    let project = match loaded {
        Ok(project) => project,
        Err(LoadError::Config(e)) => return Roadie::Config(e.why),
        Err(LoadError::Graph(e)) => return Roadie::Refuse(e.to_string()),
        Err(LoadError::Fallback(f)) => {
            return Roadie::Run(format!("{}: {}", f.file.display(), f.why));
        }
    };
    let table = match (fixture.flag, &project.env) {
        (Some(flag), _) => flag.to_string(),
        (
            None,
            EnvSettings {
                table_unknown: Some(why),
                ..
            },
        ) => {
            return Roadie::Run(format!("{}: {why}", project.env_py.display()));
        }
        (
            None,
            EnvSettings {
                version_table: Some((name, _)),
                ..
            },
        ) => name.clone(),
        (None, _) => "alembic_version".into(),
    };
    let heads = project.graph.heads();
    if heads.len() > 1 && !fixture.heads {
        return Roadie::Refuse(format!("several heads ({})", heads.join(", ")));
    }
    let db = fixture.project.path().join(fixture.tables[0].0);
    let rows = answer.before[&db.display().to_string()]
        .get(&table)
        .cloned()
        .unwrap_or_default();
    match project.graph.verdict(&rows) {
        Verdict::AtHead => Roadie::Skip,
        Verdict::Pending { .. } => Roadie::Run("pending".into()),
        Verdict::UnknownRevision { unknown } => Roadie::Refuse(unknown.join(", ")),
    }
}

fn ask(fixtures: &[Fixture]) -> Vec<Answer> {
    let cases: Vec<serde_json::Value> = fixtures
        .iter()
        .map(|f| {
            let mut tables = serde_json::Map::new();
            for (file, table, rows) in &f.tables {
                let file = f.project.path().join(file).display().to_string();
                let entry = tables.entry(file).or_insert_with(|| serde_json::json!({}));
                entry[*table] = serde_json::json!(rows);
            }
            let mut args = f.options.clone();
            if let Some(directory) = f.flask {
                args.extend(["--app".into(), "app".into(), "db".into()]);
                if let Some(directory) = directory {
                    args.extend(["-d".into(), directory.into()]);
                }
            }
            args.extend(["upgrade".into(), if f.heads { "heads" } else { "head" }.into()]);
            serde_json::json!({
                "cwd": f.project.path(),
                "args": args,
                "env": f.env.iter().map(|(k, v)| (k.to_string(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
                "tables": tables,
                "flask": f.flask.is_some(),
            })
        })
        .collect();
    run_oracle("upgrade oracle", UPGRADE_ORACLE, &cases, DEADLINE)
}

fn kind(outcome: &str) -> Alembic {
    match outcome {
        "noop" => Alembic::Noop,
        "changed" => Alembic::Changed,
        _ => Alembic::Fails,
    }
}

#[test]
fn roadies_verdict_on_real_project_shapes_is_what_alembic_upgrade_does() {
    let fixtures = fixtures();
    let answers = ask(&fixtures);
    let mut failures = Vec::new();
    let (mut read, mut fell_back) = (0, Vec::new());
    for (f, answer) in fixtures.iter().zip(&answers) {
        let ours = roadie_verdict(f, answer);
        let theirs = kind(&answer.outcome);
        let consistent = match &ours {
            Roadie::Skip => theirs == Alembic::Noop,
            Roadie::Refuse(_) | Roadie::Config(_) => theirs == Alembic::Fails,
            Roadie::Run(_) => true,
        };
        let as_expected = match (&ours, &f.roadie) {
            (Roadie::Skip, Roadie::Skip) => true,
            (Roadie::Run(a), Roadie::Run(b))
            | (Roadie::Refuse(a), Roadie::Refuse(b))
            | (Roadie::Config(a), Roadie::Config(b)) => a.contains(b.as_str()),
            _ => false,
        };
        let alembic_as_expected = f.alembic == Alembic::Any || f.alembic == theirs;
        if !(consistent && as_expected && alembic_as_expected) {
            failures.push(format!(
                "{}: roadie {ours:?} (expected {:?}); alembic upgrade: {} (expected {:?})",
                f.name, f.roadie, answer.outcome, f.alembic
            ));
        }
        match &ours {
            Roadie::Run(why) if why != "pending" => fell_back.push(format!("{}: {why}", f.name)),
            _ => read += 1,
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The figures for the note: how many roadie reads, and why each fallback.
    eprintln!(
        "{read} of {} fixtures read; fallbacks:\n{}",
        fixtures.len(),
        fell_back.join("\n")
    );
}

#[test]
fn every_template_alembic_ships_keeps_the_shortcut_except_multidb() {
    for name in ["generic", "async", "pyproject", "pyproject_async"] {
        let env = template(name, "env.py");
        assert_eq!(
            super::super::env_py::read(&env),
            Ok(EnvSettings::default()),
            "alembic's {name} template"
        );
    }
    let why =
        super::super::env_py::read(&template("multidb", "env.py")).expect_err("multidb falls back");
    assert!(why.contains("runs inside the loop of line"), "{why}");
}

#[test]
fn flask_migrates_templates_keep_the_shortcut_except_multidb() {
    let site = template_dir();
    let flask = site
        .parent()
        .and_then(Path::parent)
        .expect("UNWRAP: site-packages/alembic/templates")
        .join("flask_migrate/templates");
    let read = |name: &str| {
        let path = flask.join(name).join("env.py");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (scripts/venv.sh installs Flask-Migrate)",
                path.display()
            )
        });
        super::super::env_py::read(&text)
    };
    for name in ["flask", "aioflask"] {
        let settings = read(name).unwrap_or_else(|why| panic!("Flask-Migrate's {name}: {why}"));
        assert!(
            settings.flask_configure_args.is_some(),
            "{name}: {settings:?}"
        );
        assert_eq!(settings.table_unknown, None, "{name}");
    }
    for name in ["flask-multidb", "aioflask-multidb"] {
        let why = read(name).expect_err("multidb falls back");
        assert!(why.contains("loop"), "{name}: {why}");
    }
}
