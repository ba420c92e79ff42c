//! A migration command roadie can read (alembic upgrade head) that exits 0 is not taken at its
//! word: the version table is read back, and a schema not at head is 65 naming the database
//! roadie read, what it holds and what the image expected (issue 23). Real alembic, real
//! PostgreSQL.

use std::path::Path;

use crate::support::postgres::Postgres;
use crate::support::server::Server as _;
use crate::support::{Mode, Roadie, alembic_project, roadie, scratch, venv_bin};

/// roadie reading `pg`'s database `app`, alembic from the venv migrating `alembic_url`.
fn boot(pg: &Postgres, project: &Path, alembic_url: &str) -> Roadie {
    let path = format!("{}:/usr/bin:/bin", venv_bin().display());
    roadie(
        Mode::Subreaper,
        [
            "--database-url",
            &pg.app_url(),
            "sh",
            "-c",
            "echo app-started",
        ],
    )
    .current_dir(project)
    .env("PATH", &path)
    .env("DATABASE_URL", alembic_url)
}

#[test]
fn an_env_py_that_does_not_commit_is_65_naming_what_the_table_holds() {
    let pg = Postgres::started();
    let dir = scratch();
    let project = alembic_project(dir.path());
    // What an async env.py on SQLAlchemy 2 does by accident: a statement before alembic's
    // begin_transaction() opens the connection's transaction, so alembic's context commits
    // nothing, and closing the connection rolls every revision back; alembic exits 0.
    let env_py = project.join("migrations/env.py");
    let text = std::fs::read_to_string(&env_py).unwrap();
    let opened = "    with engine.connect() as connection:\n";
    assert!(text.contains(opened), "the fixture's env.py changed");
    std::fs::write(
        &env_py,
        text.replace(
            opened,
            &format!("{opened}        connection.exec_driver_sql(\"SELECT 1\")\n"),
        ),
    )
    .unwrap();

    let failed = boot(&pg, &project, &pg.app_url()).run();
    failed
        .code(65)
        .stdout_lacks("app-started")
        .stderr_has("\"alembic upgrade head\" failed: it exited 0, but alembic_version in postgres://roadie:***@")
        .stderr_has("/app (from --database-url) holds no revision")
        .stderr_has("not this image's head 0005")
        .stderr_has("env.py does not commit")
        .stderr_lacks(crate::support::server::ROADIE_PASSWORD);
    assert!(!pg.table_exists("customers"), "alembic committed after all");
}

#[test]
fn alembic_migrating_another_database_is_65_naming_the_one_roadie_read() {
    let pg = Postgres::started();
    pg.psql("CREATE DATABASE elsewhere OWNER roadie");
    let dir = scratch();
    let project = alembic_project(dir.path());
    let elsewhere = pg.app_url().replace("/app", "/elsewhere");
    assert_ne!(elsewhere, pg.app_url());

    boot(&pg, &project, &elsewhere)
        .run()
        .code(65)
        .stdout_lacks("app-started")
        .stderr_has("alembic_version in postgres://roadie:***@")
        .stderr_has("lacks revisions 0001, 0002, 0003, 0004, 0005: \"alembic upgrade head\" runs")
        .stderr_has("/app (from --database-url) holds no revision")
        .stderr_has("env.py migrates another database or URL");
}

#[test]
fn a_migration_that_landed_is_read_back_and_the_app_starts() {
    let pg = Postgres::started();
    let dir = scratch();
    let project = alembic_project(dir.path());
    boot(&pg, &project, &pg.app_url())
        .run()
        .code(0)
        .stdout_has("app-started")
        .stderr_has("migration command done in")
        .stderr_has("; alembic at head 0005, read back");
}
