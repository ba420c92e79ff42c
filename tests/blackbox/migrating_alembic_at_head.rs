//! alembic without Python on the hot path: roadie reads the revision graph from the scripts and
//! the version table itself, so a boot at head never starts alembic, broken graphs are said
//! before Python would have imported anything, `migrate status` lists the revisions, and
//! `--wait-for-schema` waits for another process's `alembic upgrade head`. The test project's
//! env.py appends a line to $ALEMBIC_IMPORTED_MARKER each time alembic runs it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::postgres::Postgres;
use crate::support::server::Server as _;
use crate::support::{Mode, Roadie, alembic_project, app, roadie, scratch, venv_bin};

/// Adds revision `id` after `down` (a plain table, so it applies anywhere).
fn revision(project: &Path, id: &str, down: &str) {
    std::fs::write(
        project.join(format!("migrations/versions/{id}_more.py")),
        format!(
            "revision = \"{id}\"\ndown_revision = {down}\nbranch_labels = None\n\
             depends_on = None\n\nfrom alembic import op\n\n\ndef upgrade():\n    \
             op.execute(\"CREATE TABLE t_{id} (id int)\")\n\n\ndef downgrade():\n    \
             op.execute(\"DROP TABLE t_{id}\")\n"
        ),
    )
    .unwrap();
}

/// How many times alembic ran (env.py's marker lines).
fn alembic_runs(marker: &Path) -> usize {
    std::fs::read_to_string(marker)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// roadie in `project` with `argv`, alembic from the venv, env.py's marker at `marker`.
fn boot(pg: &Postgres, project: &Path, marker: &Path, argv: &[&str]) -> Roadie {
    let path = format!("{}:/usr/bin:/bin", venv_bin().display());
    let mut args = vec!["--database-url".to_string(), pg.app_url()];
    args.extend(argv.iter().map(|s| s.to_string()));
    roadie(Mode::Subreaper, args)
        .current_dir(project)
        .env("PATH", &path)
        .env("DATABASE_URL", &pg.app_url())
        .env("ALEMBIC_IMPORTED_MARKER", &marker.to_string_lossy())
}

const APP: [&str; 3] = ["sh", "-c", "echo app-started"];

#[test]
fn a_boot_at_head_never_starts_alembic_and_a_new_revision_does() {
    let pg = Postgres::started();
    let dir = scratch();
    let project = alembic_project(dir.path());
    let marker = dir.path().join("marker");
    boot(&pg, &project, &marker, &APP).run().code(0);
    assert_eq!(alembic_runs(&marker), 1, "the first boot migrates");

    boot(&pg, &project, &marker, &APP)
        .run()
        .code(0)
        .stdout_has("app-started")
        .stderr_has("schema up to date (alembic at head 0005; alembic not started)")
        .stderr_lacks("under the migration lock");
    assert_eq!(alembic_runs(&marker), 1, "alembic started at head");

    revision(&project, "0006", "\"0005\"");
    boot(&pg, &project, &marker, &APP)
        .run()
        .code(0)
        .stderr_has("under the migration lock");
    assert_eq!(alembic_runs(&marker), 2);
    assert_eq!(pg.psql("SELECT version_num FROM alembic_version"), "0006");

    // The escape hatch: alembic always starts.
    boot(
        &pg,
        &project,
        &marker,
        &["--no-alembic-shortcut", APP[0], APP[1], APP[2]],
    )
    .run()
    .code(0)
    .stderr_has("under the migration lock");
    assert_eq!(alembic_runs(&marker), 3);
}

#[test]
fn ten_replicas_at_head_start_no_alembic_and_with_one_pending_alembic_runs_once() {
    let pg = Postgres::started();
    let dir = scratch();
    let project = alembic_project(dir.path());
    let marker = dir.path().join("marker");
    boot(&pg, &project, &marker, &APP).run().code(0);
    let ten = |expect: Option<&str>| {
        let replicas: Vec<_> = (0..10)
            .map(|_| boot(&pg, &project, &marker, &APP).start())
            .collect();
        for r in replicas {
            let finished = r.finish_within(Duration::from_secs(120));
            finished.code(0).stdout_has("app-started");
            if let Some(expect) = expect {
                finished.stderr_has(expect);
            }
        }
    };
    ten(Some("alembic not started"));
    assert_eq!(
        alembic_runs(&marker),
        1,
        "a replica at head started alembic"
    );

    revision(&project, "0006", "\"0005\"");
    // One runs alembic; the others wait for the lock and find the work done.
    ten(None);
    assert_eq!(
        alembic_runs(&marker),
        2,
        "alembic ran more than once for one pending revision"
    );
    assert_eq!(pg.psql("SELECT version_num FROM alembic_version"), "0006");
}

#[test]
fn broken_graphs_are_65_before_python_would_start() {
    let pg = Postgres::started();
    for (case, setup, says) in [
        (
            "several heads",
            &(|p: &Path| {
                revision(p, "0006", "\"0005\"");
                revision(p, "0007", "\"0005\"");
            }) as &dyn Fn(&Path),
            "several heads (",
        ),
        (
            "a missing down_revision",
            &|p: &Path| revision(p, "0006", "\"0099\""),
            "0099",
        ),
        (
            "two files with one id",
            &|p: &Path| {
                revision(p, "0006", "\"0005\"");
                std::fs::copy(
                    p.join("migrations/versions/0006_more.py"),
                    p.join("migrations/versions/0006_again.py"),
                )
                .unwrap();
            },
            "0006",
        ),
    ] {
        let dir = scratch();
        let project = alembic_project(dir.path());
        let marker = dir.path().join("marker");
        setup(&project);
        let finished = boot(&pg, &project, &marker, &APP).run();
        finished
            .code(65)
            .stderr_has(says)
            .stderr_lacks("app-started");
        assert_eq!(
            alembic_runs(&marker),
            0,
            "{case}: alembic started\n{finished}"
        );
    }
}

#[test]
fn a_revision_no_script_knows_is_65_naming_it_without_starting_alembic() {
    let pg = Postgres::started();
    let dir = scratch();
    let project = alembic_project(dir.path());
    let marker = dir.path().join("marker");
    boot(&pg, &project, &marker, &APP).run().code(0);
    pg.psql("UPDATE alembic_version SET version_num = 'f00dfeed'");
    boot(&pg, &project, &marker, &APP)
        .run()
        .code(65)
        .stderr_has("revision f00dfeed is not in this image's scripts")
        .stderr_has("the image is older than the schema");
    assert_eq!(alembic_runs(&marker), 1);
}

/// Rewrites the copy's `context.configure(...)` arguments (env.py names its version table).
fn configure_with(project: &Path, extra: &str) {
    let env = project.join("migrations/env.py");
    let text = std::fs::read_to_string(&env).unwrap();
    let old = "target_metadata=target_metadata,\n";
    assert!(text.contains(old), "the test app's env.py changed");
    std::fs::write(
        &env,
        text.replace(old, &format!("{old}            {extra},\n")),
    )
    .unwrap();
}

#[test]
fn a_version_table_env_py_names_as_a_literal_is_read_there() {
    let pg = Postgres::started();
    let dir = scratch();
    let project = alembic_project(dir.path());
    let marker = dir.path().join("marker");
    configure_with(&project, "version_table=\"app_versions\"");
    boot(&pg, &project, &marker, &APP).run().code(0);
    assert_eq!(pg.psql("SELECT version_num FROM app_versions"), "0005");
    boot(&pg, &project, &marker, &APP)
        .run()
        .code(0)
        .stderr_has("alembic at head 0005; alembic not started");
    assert_eq!(alembic_runs(&marker), 1);
    // Another graph's table at a revision these scripts do not know: not this project's.
    pg.psql("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)");
    pg.psql("INSERT INTO alembic_version VALUES ('c0ffee')");
    boot(&pg, &project, &marker, &APP)
        .run()
        .code(0)
        .stderr_has("alembic not started");
    assert_eq!(alembic_runs(&marker), 1);
}

#[test]
fn a_version_table_schema_env_py_names_is_read_in_that_schema() {
    let pg = Postgres::started();
    pg.psql("CREATE SCHEMA audit AUTHORIZATION roadie");
    let dir = scratch();
    let project = alembic_project(dir.path());
    let marker = dir.path().join("marker");
    configure_with(
        &project,
        "version_table_schema=\"audit\", version_table=\"schema_versions\"",
    );
    boot(&pg, &project, &marker, &APP).run().code(0);
    assert_eq!(
        pg.psql("SELECT version_num FROM audit.schema_versions"),
        "0005"
    );
    boot(&pg, &project, &marker, &APP)
        .run()
        .code(0)
        .stderr_has("alembic at head 0005; alembic not started");
    assert_eq!(alembic_runs(&marker), 1);
}

#[test]
fn a_computed_version_table_runs_alembic_unless_the_flag_names_it() {
    let pg = Postgres::started();
    let dir = scratch();
    let project = alembic_project(dir.path());
    let marker = dir.path().join("marker");
    configure_with(&project, "version_table=os.environ[\"APP_VERSION_TABLE\"]");
    let renamed = |r: Roadie| r.env("APP_VERSION_TABLE", "app_versions");
    renamed(boot(&pg, &project, &marker, &APP)).run().code(0);
    assert_eq!(alembic_runs(&marker), 1);
    // Not told: roadie cannot know the table, says so naming env.py's line, and alembic decides.
    let env = std::fs::read_to_string(project.join("migrations/env.py")).unwrap();
    let line = 1 + env
        .lines()
        .position(|l| l.contains("version_table="))
        .unwrap();
    renamed(boot(&pg, &project, &marker, &APP))
        .run()
        .code(0)
        .stderr_has(&format!(
            "env.py: roadie cannot tell which version table env.py uses (line {line}: \
             version_table is not a literal string"
        ));
    assert_eq!(alembic_runs(&marker), 2);
    renamed(boot(
        &pg,
        &project,
        &marker,
        &[
            "--alembic-version-table",
            "app_versions",
            APP[0],
            APP[1],
            APP[2],
        ],
    ))
    .run()
    .code(0)
    .stderr_has("alembic not started");
    assert_eq!(alembic_runs(&marker), 2);
}

#[test]
fn a_tenant_loop_in_env_py_always_runs_alembic_even_with_the_flag() {
    let pg = Postgres::started();
    let dir = scratch();
    let project = alembic_project(dir.path());
    let marker = dir.path().join("marker");
    boot(&pg, &project, &marker, &APP).run().code(0);
    let env = project.join("migrations/env.py");
    let text = std::fs::read_to_string(&env).unwrap();
    // Two passes over the tenants: each a configure + run_migrations, inside a loop.
    let looped = text.replace(
        "    with engine.connect() as connection:\n",
        "    for _tenant in (\"a\",):\n     with engine.connect() as connection:\n",
    );
    assert_ne!(looped, text);
    std::fs::write(&env, &looped).unwrap();
    let line_of = |needle: &str| {
        1 + looped
            .lines()
            .position(|l| l.trim_start().starts_with(needle))
            .unwrap()
    };
    let says = format!(
        "env.py without Python (line {}: context.configure(...) runs inside the loop of line {}",
        line_of("context.configure("),
        line_of("for _tenant in")
    );
    boot(
        &pg,
        &project,
        &marker,
        &[
            "--alembic-version-table",
            "alembic_version",
            APP[0],
            APP[1],
            APP[2],
        ],
    )
    .run()
    .code(0)
    .stderr_has(&says);
    assert_eq!(alembic_runs(&marker), 2);
}

#[test]
fn an_empty_versions_folder_is_never_at_head() {
    let pg = Postgres::started();
    let dir = scratch();
    let project = alembic_project(dir.path());
    let marker = dir.path().join("marker");
    for entry in std::fs::read_dir(project.join("migrations/versions")).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    for _ in 0..2 {
        boot(&pg, &project, &marker, &APP)
            .run()
            .code(0)
            .stderr_has("no revision file in")
            .stderr_lacks("alembic not started");
    }
    assert_eq!(alembic_runs(&marker), 2);
}

#[test]
fn a_project_configured_in_pyproject_toml_alone_is_migrated_and_needs_a_database() {
    let pg = Postgres::started();
    let dir = scratch();
    let project = alembic_project(dir.path());
    let marker = dir.path().join("marker");
    std::fs::remove_file(project.join("alembic.ini")).unwrap();
    // Without alembic.ini there is no logging configuration for env.py to read.
    let env = project.join("migrations/env.py");
    let text = std::fs::read_to_string(&env).unwrap();
    let logging =
        "if config.config_file_name is not None:\n    fileConfig(config.config_file_name)\n";
    assert!(text.contains(logging), "the test app's env.py changed");
    std::fs::write(&env, text.replace(logging, "")).unwrap();
    std::fs::write(
        project.join("pyproject.toml"),
        "[project]\nname = \"app\"\n\n[tool.alembic]\nscript_location = \"%(here)s/migrations\"\n",
    )
    .unwrap();
    boot(&pg, &project, &marker, &APP)
        .run()
        .code(0)
        .stdout_has("app-started");
    assert_eq!(pg.psql("SELECT version_num FROM alembic_version"), "0005");
    boot(&pg, &project, &marker, &APP)
        .run()
        .code(0)
        .stderr_has("alembic not started");
    assert_eq!(alembic_runs(&marker), 1);
    // No database: the configuration found is named, and the app does not start unmigrated.
    let path = format!("{}:/usr/bin:/bin", venv_bin().display());
    roadie(Mode::Subreaper, APP)
        .current_dir(&project)
        .env("PATH", &path)
        .run()
        .code(78)
        .stderr_has("found [tool.alembic] in pyproject.toml in the working directory")
        .stderr_lacks("app-started");
}

#[test]
fn upgrade_heads_is_at_head_when_the_table_holds_every_head_and_status_shows_them() {
    let pg = Postgres::started();
    let dir = scratch();
    let project = alembic_project(dir.path());
    let marker = dir.path().join("marker");
    revision(&project, "0006", "\"0005\"");
    revision(&project, "0007", "\"0005\"");
    let heads = |pg: &Postgres| {
        boot(
            pg,
            &project,
            &marker,
            &[
                "--migrate-command",
                "alembic upgrade heads",
                APP[0],
                APP[1],
                APP[2],
            ],
        )
        .run()
    };
    heads(&pg).code(0).stdout_has("app-started");
    assert_eq!(alembic_runs(&marker), 1);
    heads(&pg)
        .code(0)
        .stderr_has("alembic at head 0006, 0007; alembic not started");
    assert_eq!(alembic_runs(&marker), 1);
    // One branch back: not at head, alembic runs.
    pg.psql("DELETE FROM alembic_version WHERE version_num = '0007'");
    pg.psql("DROP TABLE t_0007");
    heads(&pg).code(0).stderr_lacks("alembic not started");
    assert_eq!(alembic_runs(&marker), 2);
    // `migrate status` prints the graph with both heads marked (only the boot refuses them).
    let text = roadie_status(&pg, &project, &marker, &[]);
    text.code(0).stdout_has("0006").stdout_has("0007");
    let heads_marked = text
        .stdout
        .lines()
        .filter(|l| l.contains("head") && !l.starts_with("revision"))
        .count();
    assert_eq!(heads_marked, 2, "{}", text.stdout);
    let json = roadie_status(&pg, &project, &marker, &["--json"]);
    let rows: serde_json::Value = serde_json::from_str(json.code(0).stdout.trim()).unwrap();
    let marked: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["head"] == true)
        .map(|r| r["revision"].as_str().unwrap())
        .collect();
    assert_eq!(marked, ["0006", "0007"]);
}

#[test]
fn migrate_status_lists_each_revision_without_python_and_in_json() {
    let pg = Postgres::started();
    let dir = scratch();
    let project = alembic_project(dir.path());
    let marker = dir.path().join("marker");
    boot(&pg, &project, &marker, &APP).run().code(0);
    revision(&project, "0006", "\"0005\"");
    let text = roadie_status(&pg, &project, &marker, &[]);
    text.code(0)
        .stdout_has("alembic_version in postgres://roadie:***@")
        .stdout_has("/app (from --database-url)\n")
        .stdout_has("0001")
        .stdout_has("applied")
        .stdout_has("0006")
        .stdout_has("pending")
        // Paths relative to the working directory (the project).
        .stdout_has(" migrations/versions/0001_create_customers.py\n");
    assert!(!text.stdout.contains(&*project.to_string_lossy()), "{text}");
    let json = roadie_status(&pg, &project, &marker, &["--json"]);
    json.code(0);
    let rows: serde_json::Value = serde_json::from_str(json.stdout.trim()).unwrap();
    let states: Vec<(String, String)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["revision"].as_str().unwrap().to_string(),
                r["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(states.len(), 6, "{states:?}");
    assert_eq!(states[0], ("0001".into(), "applied".into()));
    assert_eq!(states[5], ("0006".into(), "pending".into()));
    assert_eq!(alembic_runs(&marker), 1, "status started alembic");
}

fn roadie_status(
    pg: &Postgres,
    project: &Path,
    marker: &Path,
    extra: &[&str],
) -> crate::support::Finished {
    let mut args = vec![
        "migrate".to_string(),
        "status".into(),
        "--database-url".into(),
        pg.app_url(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    // alembic must be on PATH (the plan names it), though status never starts it.
    let path = format!("{}:/usr/bin:/bin", venv_bin().display());
    roadie(Mode::Subreaper, args)
        .current_dir(project)
        .env("PATH", &path)
        .env("ALEMBIC_IMPORTED_MARKER", &marker.to_string_lossy())
        .run()
}

#[test]
fn a_replica_waits_for_the_schema_while_alembic_runs_elsewhere() {
    let pg = Postgres::started();
    let dir = scratch();
    let project = alembic_project(dir.path());
    let marker = dir.path().join("marker");
    let waiter = boot(
        &pg,
        &project,
        &marker,
        &["--wait-for-schema", APP[0], APP[1], APP[2]],
    )
    .start();
    waiter.stderr_containing("database ready in");
    // `roadie migrate` takes its options after the subcommand.
    let path = format!("{}:/usr/bin:/bin", venv_bin().display());
    let migrator = roadie(
        Mode::Subreaper,
        ["migrate", "--database-url", &pg.app_url()],
    )
    .current_dir(&project)
    .env("PATH", &path)
    .env("DATABASE_URL", &pg.app_url())
    .env("ALEMBIC_IMPORTED_MARKER", &marker.to_string_lossy())
    .env("ALEMBIC_APP_SLEEP", "2")
    .start();
    let migrated = migrator.finish_within(Duration::from_secs(60));
    let migrated_at = Instant::now();
    migrated.code(0);
    let started = waiter.finish_within(Duration::from_secs(60));
    started
        .code(0)
        .stdout_has("app-started")
        .stderr_has("schema up to date, after");
    assert!(
        migrated_at.elapsed() < Duration::from_secs(1),
        "{:?}\n{started}",
        migrated_at.elapsed()
    );
    assert_eq!(alembic_runs(&marker), 1, "only the migrator ran alembic");

    // Nothing applies a new revision: 69 naming it.
    revision(&project, "0006", "\"0005\"");
    boot(
        &pg,
        &project,
        &marker,
        &[
            "--wait-for-schema",
            "--wait-timeout",
            "1s",
            APP[0],
            APP[1],
            APP[2],
        ],
    )
    .run()
    .code(69)
    .stderr_has("the schema of postgres://roadie:***@")
    .stderr_has("missing alembic revision 0006");
}

/// A Flask-Migrate app in `dir`: app.py (its URL from DATABASE_URL, a line appended to
/// $ALEMBIC_IMPORTED_MARKER each time Python imports it), `flask db init`'s migrations/ and
/// the test app's revisions 0001 to 0005.
fn flask_project(dir: &Path) -> PathBuf {
    let project = dir.join("flask_app");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("app.py"),
        "import os\nfrom flask import Flask\nfrom flask_sqlalchemy import SQLAlchemy\n\
         from flask_migrate import Migrate\n\n\
         if os.environ.get('ALEMBIC_IMPORTED_MARKER'):\n    \
         with open(os.environ['ALEMBIC_IMPORTED_MARKER'], 'a') as marker:\n        \
         marker.write('flask started\\n')\n\
         app = Flask(__name__)\n\
         url = os.environ.get('DATABASE_URL', 'sqlite://')\n\
         app.config['SQLALCHEMY_DATABASE_URI'] = url.replace('postgres://', 'postgresql+psycopg://', 1)\n\
         db = SQLAlchemy(app)\nmigrate = Migrate(app, db)\n",
    )
    .unwrap();
    let init = std::process::Command::new(venv_bin().join("flask"))
        .args(["--app", "app", "db", "init"])
        .current_dir(&project)
        .output()
        .unwrap();
    assert!(init.status.success(), "flask db init: {init:?}");
    let versions = PathBuf::from(app("alembic")).join("migrations/versions");
    for entry in std::fs::read_dir(versions).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "py") {
            std::fs::copy(
                &path,
                project
                    .join("migrations/versions")
                    .join(path.file_name().unwrap()),
            )
            .unwrap();
        }
    }
    project
}

const FLASK_UPGRADE: &str = "flask --app app db upgrade";

#[test]
fn flask_db_upgrade_is_read_and_skipped_at_head_and_flask_db_as_command_does_not_migrate() {
    let pg = Postgres::started();
    let dir = scratch();
    let project = flask_project(dir.path());
    let marker = dir.path().join("marker");
    let with_flask = |argv: &[&str]| {
        let mut args = vec!["--migrate-command", FLASK_UPGRADE];
        args.extend(argv);
        boot(&pg, &project, &marker, &args)
    };
    with_flask(&APP).run().code(0).stdout_has("app-started");
    assert_eq!(alembic_runs(&marker), 1, "the first boot migrates");
    assert_eq!(pg.psql("SELECT version_num FROM alembic_version"), "0005");
    with_flask(&APP)
        .run()
        .code(0)
        .stderr_has("schema up to date (alembic at head 0005; alembic not started)");
    assert_eq!(alembic_runs(&marker), 1, "flask started at head");

    // A pending revision, and Flask-Migrate's own command as COMMAND: it waits, runs, and
    // nothing migrates first.
    revision(&project, "0006", "\"0005\"");
    with_flask(&["flask", "--app", "app", "db", "current"])
        .run()
        .code(0)
        .stderr_has("is the migrator itself: waiting, but not migrating first")
        .stdout_has("0005");
    assert_eq!(pg.psql("SELECT version_num FROM alembic_version"), "0005");
    assert_eq!(alembic_runs(&marker), 2, "only the COMMAND ran");
    with_flask(&APP).run().code(0);
    assert_eq!(pg.psql("SELECT version_num FROM alembic_version"), "0006");
}
