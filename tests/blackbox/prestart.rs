//! What the prestart scripts did, done right: a seed step under the migration lock runs once
//! however many replicas start (`--locked-hooks`), `roadie migrate --hooks` is the one-shot
//! prestart service, the migrator is recognised however it is started, nothing is skipped in
//! silence, and a program that cannot start is named with 126.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rstest::rstest;

use crate::support::mariadb::{self, MariaDb};
use crate::support::postgres::{BIN, Postgres};
use crate::support::server::Server as _;
use crate::support::{Mode, Roadie, app, roadie, scratch, script, venv_bin};

/// One migration: the users table the seed fills.
fn users_folder(dir: &Path) -> PathBuf {
    let path = dir.join("migrations");
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(
        path.join("1_create_users.sql"),
        "CREATE TABLE users (name VARCHAR(100) NOT NULL);",
    )
    .unwrap();
    path
}

/// A seed hook as the FastAPI template writes it: look for the first user, create it when
/// missing. The pause between the look and the insert makes racing replicas insert twice
/// unless something serialises them.
fn seed_hooks(dir: &Path, count: &str, insert: &str) -> PathBuf {
    let hooks = dir.join("locked-hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    script(
        &hooks,
        "10-first-user",
        &format!("set -e\nn=$({count})\nsleep 0.3\nif [ \"$n\" = 0 ]; then {insert}; fi"),
        0o755,
    );
    hooks
}

/// `replicas` roadies at once, each migrating `migrations` and seeding with `hooks`.
fn replicas(url: &str, migrations: &Path, hooks: &Path, replicas: usize, env: &[(&str, &str)]) {
    let started: Vec<_> = (0..replicas)
        .map(|_| {
            let mut r = roadie(
                Mode::Subreaper,
                [
                    "--database-url",
                    url,
                    "--migrations",
                    &migrations.to_string_lossy(),
                    "--locked-hooks",
                    &hooks.to_string_lossy(),
                    "sh",
                    "-c",
                    "echo app-started",
                ],
            );
            for (k, v) in env {
                r = r.env(k, v);
            }
            r.start()
        })
        .collect();
    for r in started {
        r.finish_within(Duration::from_secs(60))
            .code(0)
            .stdout_has("app-started")
            .stderr_has("1 hook done");
    }
}

#[test]
fn ten_postgres_replicas_seed_the_first_user_once_with_and_without_migrations_pending() {
    let pg = Postgres::started();
    let dir = scratch();
    let migrations = users_folder(dir.path());
    let psql = format!("{BIN}/psql \"$SEED_URL\" -tAc");
    let hooks = seed_hooks(
        dir.path(),
        &format!("{psql} \"SELECT count(*) FROM users WHERE name = 'admin'\""),
        &format!("{psql} \"INSERT INTO users VALUES ('admin')\""),
    );
    let url = pg.app_url();
    replicas(&url, &migrations, &hooks, 10, &[("SEED_URL", &url)]);
    assert_eq!(pg.psql("SELECT count(*) FROM users"), "1");
    // At head now: nothing to migrate, and the lock is still what keeps the seed single.
    pg.psql("DELETE FROM users");
    replicas(&url, &migrations, &hooks, 10, &[("SEED_URL", &url)]);
    assert_eq!(pg.psql("SELECT count(*) FROM users"), "1");
}

#[test]
fn ten_mariadb_replicas_seed_the_first_user_once_with_and_without_migrations_pending() {
    let db = MariaDb::started();
    let dir = scratch();
    let migrations = users_folder(dir.path());
    let url = db.app_url();
    let port = url.rsplit(':').next().unwrap().split('/').next().unwrap();
    let client = format!(
        "mariadb -h 127.0.0.1 -P {port} -u roadie -p{} app -N -e",
        mariadb::ROADIE_PASSWORD
    );
    let hooks = seed_hooks(
        dir.path(),
        &format!("{client} \"SELECT COUNT(*) FROM users WHERE name = 'admin'\""),
        &format!("{client} \"INSERT INTO users VALUES ('admin')\""),
    );
    replicas(&url, &migrations, &hooks, 10, &[]);
    assert_eq!(db.sql("SELECT COUNT(*) FROM app.users"), "1");
    db.sql("DELETE FROM app.users");
    replicas(&url, &migrations, &hooks, 10, &[]);
    assert_eq!(db.sql("SELECT COUNT(*) FROM app.users"), "1");
}

#[test]
fn ten_sqlite_replicas_seed_the_first_user_once_with_and_without_migrations_pending() {
    let dir = scratch();
    let migrations = users_folder(dir.path());
    let file = dir.path().join("app.db");
    let sqlite = |sql: &str| {
        format!(
            "python3 -c \"import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); \
             print(c.execute(sys.argv[2]).fetchone()[0] if sys.argv[2].startswith('SELECT') \
             else c.execute(sys.argv[2]) and c.commit() or '')\" \"$SEED_FILE\" \"{sql}\""
        )
    };
    let hooks = seed_hooks(
        dir.path(),
        &sqlite("SELECT count(*) FROM users WHERE name = 'admin'"),
        &sqlite("INSERT INTO users VALUES ('admin')"),
    );
    let url = format!("sqlite:{}", file.display());
    let seed_file = file.to_string_lossy().into_owned();
    let users = |sql: &str| {
        let out = std::process::Command::new("python3")
            .args([
                "-c",
                "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); r=c.execute(sys.argv[2]).fetchone(); c.commit(); print(r[0] if r else '')",
                &seed_file,
                sql,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    replicas(&url, &migrations, &hooks, 10, &[("SEED_FILE", &seed_file)]);
    assert_eq!(users("SELECT count(*) FROM users"), "1");
    users("DELETE FROM users");
    replicas(&url, &migrations, &hooks, 10, &[("SEED_FILE", &seed_file)]);
    assert_eq!(users("SELECT count(*) FROM users"), "1");
}

#[test]
fn roadie_migrate_with_hooks_is_the_one_shot_prestart_service() {
    let pg = Postgres::started();
    let dir = scratch();
    let migrations = users_folder(dir.path());
    let url = pg.app_url();
    let psql = format!("{BIN}/psql \"$SEED_URL\" -tAc");
    let hooks = seed_hooks(
        dir.path(),
        &format!("{psql} \"SELECT count(*) FROM users WHERE name = 'admin'\""),
        &format!("{psql} \"INSERT INTO users VALUES ('admin')\""),
    );
    let plain_hooks = dir.path().join("hooks");
    std::fs::create_dir(&plain_hooks).unwrap();
    script(
        &plain_hooks,
        "10-render-config",
        "echo config-rendered",
        0o755,
    );
    roadie(
        Mode::Subreaper,
        [
            "migrate",
            "--database-url",
            &url,
            "--migrations",
            &migrations.to_string_lossy(),
            "--locked-hooks",
            &hooks.to_string_lossy(),
            "--hooks",
            &plain_hooks.to_string_lossy(),
        ],
    )
    .env("SEED_URL", &url)
    .run()
    .code(0)
    .stdout_has("config-rendered");
    assert_eq!(pg.psql("SELECT count(*) FROM users"), "1");
    // Then the app replicas, told not to migrate: they start on the prepared schema.
    let apps: Vec<_> = (0..3)
        .map(|_| {
            roadie(
                Mode::Subreaper,
                [
                    "--database-url",
                    &url,
                    "--skip-migrations",
                    "sh",
                    "-c",
                    "echo app-started",
                ],
            )
            .start()
        })
        .collect();
    for r in apps {
        r.finish().code(0).stdout_has("app-started");
    }
    assert_eq!(pg.psql("SELECT count(*) FROM users"), "1");
}

#[rstest]
#[case(&["wait", "--hooks", "/"], "--hooks is not used by `roadie wait`")]
#[case(&["migrate", "status", "--locked-hooks", "/"], "--locked-hooks is not used by `roadie migrate status`")]
#[case(&["migrate", "--success-exit-code", "143"], "--success-exit-code is not used by `roadie migrate`")]
fn a_flag_a_subcommand_does_not_use_is_a_usage_error(#[case] args: &[&str], #[case] says: &str) {
    roadie(Mode::Subreaper, args.iter().copied())
        .run()
        .code(64)
        .stderr_has(says);
}

/// roadie running `argv` in `project`, a copy of the alembic test project (5 revisions, 0001
/// to 0005) that poetry and pipenv take for a project of theirs, using the venv as it is.
fn in_alembic_project(pg: &Postgres, project: &Path, argv: &[&str]) -> Roadie {
    let venv = venv_bin();
    let path = format!("{}:/usr/bin:/bin", venv.display());
    let mut args = vec!["--database-url".to_string(), pg.app_url()];
    args.extend(argv.iter().map(|s| s.to_string()));
    roadie(Mode::Subreaper, args)
        .current_dir(project)
        .env("PATH", &path)
        .env("DATABASE_URL", &pg.app_url())
        .env("VIRTUAL_ENV", &venv.parent().unwrap().to_string_lossy())
        .env("POETRY_VIRTUALENVS_CREATE", "false")
        .env("PIPENV_VERBOSITY", "-1")
}

/// A copy of the alembic test project with the files poetry and pipenv look for.
fn alembic_project(dir: &Path) -> PathBuf {
    let project = dir.join("project");
    let copied = std::process::Command::new("cp")
        .args(["-r", &app("alembic"), &project.to_string_lossy()])
        .status()
        .unwrap();
    assert!(copied.success());
    std::fs::write(
        project.join("pyproject.toml"),
        "[tool.poetry]\nname = \"alembic-app\"\nversion = \"0.1.0\"\ndescription = \"\"\n\
         authors = []\npackage-mode = false\n",
    )
    .unwrap();
    std::fs::write(project.join("Pipfile"), "").unwrap();
    project
}

#[rstest]
#[case(&["python3", "-m", "alembic", "downgrade", "-1"])]
#[case(&["python", "-m", "alembic", "downgrade", "-1"])]
#[case(&["alembic", "downgrade", "-1"])]
#[case(&["uv", "run", "--no-project", "alembic", "downgrade", "-1"])]
#[case(&["poetry", "run", "alembic", "downgrade", "-1"])]
#[case(&["pipenv", "run", "alembic", "downgrade", "-1"])]
fn the_migrator_started_through_an_interpreter_moves_down_exactly_one(#[case] argv: &[&str]) {
    let pg = Postgres::started();
    let dir = scratch();
    let project = alembic_project(dir.path());
    // One below head: the migrator as the app upgrades to 0004 and nothing more.
    in_alembic_project(&pg, &project, &["alembic", "upgrade", "0004"])
        .run()
        .code(0);
    assert_eq!(pg.psql("SELECT version_num FROM alembic_version"), "0004");
    in_alembic_project(&pg, &project, argv)
        .run()
        .code(0)
        .stderr_has("alembic is the migrator itself: waiting, but not migrating first");
    assert_eq!(pg.psql("SELECT version_num FROM alembic_version"), "0003");
}

#[test]
fn postgres_server_boots_like_postgres_host() {
    let pg = Postgres::started();
    let url = pg.app_url();
    let port = url.rsplit(':').next().unwrap().split('/').next().unwrap();
    roadie(Mode::Subreaper, ["sh", "-c", "echo app-started"])
        .env("POSTGRES_SERVER", "127.0.0.1")
        .env("POSTGRES_PORT", port)
        .env("POSTGRES_USER", "roadie")
        .env(
            "POSTGRES_PASSWORD",
            crate::support::postgres::ROADIE_PASSWORD,
        )
        .env("POSTGRES_DB", "app")
        .run()
        .code(0)
        .stdout_has("app-started")
        .stderr_has("database ready in");
}

#[test]
fn alembic_ini_without_a_database_is_refused_naming_it() {
    roadie(Mode::Subreaper, ["sh", "-c", "echo app-started"])
        .current_dir(app("alembic"))
        .env("POSTGRES_HOST", "")
        .run()
        .code(78)
        .stderr_has("found alembic.ini in the working directory, but no database is configured")
        .stderr_has("POSTGRES_SERVER")
        .stderr_lacks("app-started");
    roadie(
        Mode::Subreaper,
        ["--skip-migrations", "sh", "-c", "echo app-started"],
    )
    .current_dir(app("alembic"))
    .run()
    .code(0)
    .stdout_has("app-started");
}

/// Writes an executable file with exactly `text`.
fn executable(dir: &Path, name: &str, text: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[rstest]
#[case::crlf("#!/bin/sh\r\necho hi\r\n", "bad interpreter \"/bin/sh^M\"")]
#[case::missing(
    "#!/usr/bin/no-such-interpreter\necho hi\n",
    "bad interpreter \"/usr/bin/no-such-interpreter\": no such file"
)]
fn a_bad_interpreter_is_126_naming_it_for_hooks_the_migration_command_and_the_app(
    #[case] text: &str,
    #[case] says: &str,
) {
    let dir = scratch();
    let hooks = dir.path().join("hooks");
    std::fs::create_dir(&hooks).unwrap();
    let hook = executable(&hooks, "10-bad", text);
    let program = executable(dir.path(), "bad", text);
    let db = format!("sqlite:{}/app.db", dir.path().display());
    let program = program.to_string_lossy().into_owned();

    let as_hook = roadie(
        Mode::Subreaper,
        ["--hooks", &hooks.to_string_lossy(), "sh", "-c", "echo app"],
    )
    .run();
    as_hook
        .code(126)
        .stderr_has(&hook.to_string_lossy())
        .stderr_has(says);

    let as_command = roadie(
        Mode::Subreaper,
        [
            "--database-url",
            &db,
            "--migrate-command",
            &program,
            "sh",
            "-c",
            "echo app",
        ],
    )
    .run();
    as_command.code(126).stderr_has(&program).stderr_has(says);

    let as_app = roadie(Mode::Subreaper, [program.as_str()]).run();
    as_app.code(126).stderr_has(&program).stderr_has(says);
}

#[test]
fn a_hooks_directory_ignores_dotfiles_warns_on_others_and_names_a_broken_link() {
    let dir = scratch();
    let hooks = dir.path().join("hooks");
    std::fs::create_dir(&hooks).unwrap();
    std::fs::write(hooks.join(".gitkeep"), "").unwrap();
    std::fs::write(hooks.join("README.md"), "# hooks\n").unwrap();
    std::os::unix::fs::symlink("/nonexistent/seed.sh", hooks.join("20-seed")).unwrap();
    script(&hooks, "10-ok", "echo hook-ran", 0o755);
    roadie(
        Mode::Subreaper,
        ["--hooks", &hooks.to_string_lossy(), "sh", "-c", "echo app"],
    )
    .run()
    .code(0)
    .stdout_has("hook-ran")
    .stderr_lacks(".gitkeep")
    .stderr_has("README.md: not executable")
    .stderr_has("20-seed: a symlink to /nonexistent/seed.sh, which does not exist");
}

/// A lone replica at head takes the lock only for its locked hooks: its summary says so, and
/// not that another replica migrated the schema (issue 23).
#[rstest]
fn a_lone_boot_at_head_says_the_lock_was_for_the_locked_hooks(
    #[values("native", "alembic")] migrator: &str,
) {
    let pg = Postgres::started();
    let dir = scratch();
    let hooks = dir.path().join("locked-hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    script(&hooks, "10-seed", "echo seeded", 0o755);
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin");
    let (cwd, mut args) = match migrator {
        "native" => {
            let migrations = users_folder(dir.path());
            (
                dir.path().to_path_buf(),
                vec!["--migrations".to_string(), migrations.display().to_string()],
            )
        }
        _ => (PathBuf::from(app("alembic")), Vec::new()),
    };
    args.extend(
        [
            "--database-url",
            &pg.app_url(),
            "--locked-hooks",
            &hooks.to_string_lossy(),
            "sh",
            "-c",
            "echo app-started",
        ]
        .map(String::from),
    );
    let boot = || {
        roadie(Mode::Subreaper, args.clone())
            .current_dir(&cwd)
            .env("PATH", &format!("{}:/usr/bin:/bin", venv.display()))
            .env("DATABASE_URL", &pg.app_url())
            .run()
    };
    boot().code(0).stdout_has("app-started");
    boot()
        .code(0)
        .stdout_has("app-started")
        .stderr_has("schema up to date (")
        .stderr_has("lock taken for --locked-hooks after")
        .stderr_has("1 hook done")
        .stderr_lacks("another replica");
}
