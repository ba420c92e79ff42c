//! Where the database's URL comes from: `--database-url`, `ROADIE_DATABASE_URL`, `DATABASE_URL`,
//! the direct URL for migrations, and the official images' variables (`POSTGRES_*`,
//! `MARIADB_*`/`MYSQL_*`), each also from the file its `*_FILE` names, as the images read Docker
//! secrets. Nothing here connects.

use std::path::Path;

use url::Url;

use super::{DatabaseUrl, Driver};

/// Finds the database: `--database-url`, else `ROADIE_DATABASE_URL`, else `DATABASE_URL`, else
/// built from the official images' variables: PostgreSQL's ([`POSTGRES`]) or MariaDB/MySQL's
/// ([`MARIADB`]), whichever kind has its host set; both hosts set is an error, since roadie
/// cannot tell which database the app uses (a URL variable settles it: it wins over both).
/// Every variable may come from its `*_FILE`, as the official images read Docker secrets.
/// `None`: no database configured. `env` reads a variable (empty counts as unset).
pub fn resolve(
    flag: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<DatabaseUrl>, String> {
    let env = |name: &str| env(name).filter(|v| !v.is_empty());
    if let Some(text) = flag {
        return DatabaseUrl::parse(text, "--database-url").map(Some);
    }
    for name in ["ROADIE_DATABASE_URL", "DATABASE_URL"] {
        if let Some((text, source)) = secret(name, &env)? {
            return DatabaseUrl::parse(&text, &source).map(Some);
        }
    }
    let postgres = POSTGRES.host(&env)?;
    let mariadb = MARIADB.host(&env)?;
    match (postgres, mariadb) {
        (Some((_, pg)), Some((_, my))) => Err(format!(
            "both {pg} and {my} are set: roadie cannot tell whether the app uses PostgreSQL or \
             MariaDB/MySQL; set DATABASE_URL (it wins over both), or unset one"
        )),
        (Some(host), None) => POSTGRES.url(host, &env).map(Some),
        (None, Some(host)) => MARIADB.url(host, &env).map(Some),
        (None, None) => Ok(None),
    }
}

/// The variables of one kind of official image, each a list of names of which the first set
/// wins (MariaDB's image reads `MYSQL_*` where `MARIADB_*` is unset; roadie does the same).
struct ImageVariables {
    /// The scheme of the URL built, and the words for its source (`POSTGRES_* variables`).
    scheme: &'static str,
    source: &'static str,
    host: &'static [&'static str],
    port: &'static [&'static str],
    default_port: u16,
    user: &'static [&'static str],
    default_user: &'static str,
    password: &'static [&'static str],
    /// The password when the user is the default one (MariaDB's root), after `password`.
    default_user_password: &'static [&'static str],
    database: &'static [&'static str],
    /// The database defaults to the user's name (PostgreSQL); else it must be named.
    database_is_user: bool,
}

/// The postgres image's variables, and `POSTGRES_SERVER`, the FastAPI full-stack template's
/// synonym of `POSTGRES_HOST` (which wins when both are set). Defaults: user `postgres`, port
/// 5432, the database named as the user.
const POSTGRES: ImageVariables = ImageVariables {
    scheme: "postgres",
    source: "POSTGRES_* variables",
    host: &["POSTGRES_HOST", "POSTGRES_SERVER"],
    port: &["POSTGRES_PORT"],
    default_port: 5432,
    user: &["POSTGRES_USER"],
    default_user: "postgres",
    password: &["POSTGRES_PASSWORD"],
    default_user_password: &[],
    database: &["POSTGRES_DB"],
    database_is_user: true,
};

/// The mariadb and mysql images' variables (`MARIADB_*` first, then `MYSQL_*`), and a host and
/// port of roadie's choosing, spelled the same way (the images have none: they are the server).
/// Defaults: user `root` (with `MARIADB_ROOT_PASSWORD` / `MYSQL_ROOT_PASSWORD`), port 3306;
/// the database must be named.
const MARIADB: ImageVariables = ImageVariables {
    scheme: "mysql",
    source: "MARIADB_*/MYSQL_* variables",
    host: &["MARIADB_HOST", "MYSQL_HOST"],
    port: &["MARIADB_PORT", "MYSQL_PORT"],
    default_port: 3306,
    user: &["MARIADB_USER", "MYSQL_USER"],
    default_user: "root",
    password: &["MARIADB_PASSWORD", "MYSQL_PASSWORD"],
    default_user_password: &["MARIADB_ROOT_PASSWORD", "MYSQL_ROOT_PASSWORD"],
    database: &["MARIADB_DATABASE", "MYSQL_DATABASE"],
    database_is_user: false,
};

/// A value and the variable it came from (`NAME` or `NAME_FILE`).
type Found = Option<(String, String)>;

impl ImageVariables {
    /// The first of `names` set (or its `_FILE`).
    fn first(names: &[&str], env: &dyn Fn(&str) -> Option<String>) -> Result<Found, String> {
        for name in names {
            if let Some(found) = secret(name, env)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// The host, when this kind is configured at all.
    fn host(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Found, String> {
        Self::first(self.host, env)
    }

    /// The URL the variables make, around `host` (value, variable).
    fn url(
        &self,
        (host, host_var): (String, String),
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<DatabaseUrl, String> {
        let value = |names| Self::first(names, env).map(|found| found.map(|(v, _)| v));
        let user = value(self.user)?.unwrap_or_else(|| self.default_user.into());
        let mut password = value(self.password)?;
        if password.is_none() && user == self.default_user {
            password = value(self.default_user_password)?;
        }
        let database = match value(self.database)? {
            Some(database) => database,
            None if self.database_is_user => user.clone(),
            None => {
                return Err(format!(
                    "{host_var} is set but no database is named: set {} (or its _FILE)",
                    self.database.join(" or ")
                ));
            }
        };
        let port = match Self::first(self.port, env)? {
            Some((port, var)) => port
                .trim()
                .parse()
                .map_err(|_| format!("{var} {port:?}: expected a port number"))?,
            None => self.default_port,
        };
        let mut url =
            Url::parse(&format!("{}://localhost/", self.scheme)).expect("UNWRAP: a constant URL");
        url.set_host(Some(&host))
            .map_err(|e| format!("{host_var} {host:?}: {e}"))?;
        let _ = url.set_port(Some(port));
        // url encodes what a URL cannot hold, but leaves `%`: encode it, or sqlx decodes `%41`.
        let _ = url.set_username(&user.replace('%', "%25"));
        if let Some(password) = password {
            let _ = url.set_password(Some(&password.replace('%', "%25")));
        }
        url.path_segments_mut()
            .expect("UNWRAP: server URLs have a path")
            .clear()
            .push(&database);
        DatabaseUrl::parse(url.as_str(), self.source)
    }
}

/// The direct URL for migrations: `--migrate-database-url`, else `ROADIE_MIGRATE_DATABASE_URL`
/// (or its `_FILE`). It must be the app's kind of database; another database name than the
/// app's is allowed (a pooler may alias it: PgBouncer's `[databases]`), and the caller warns.
pub fn resolve_migrate(
    flag: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    app: Option<&DatabaseUrl>,
) -> Result<Option<DatabaseUrl>, String> {
    let env = |name: &str| env(name).filter(|v| !v.is_empty());
    let found = match flag {
        Some(text) => Some((text.to_string(), "--migrate-database-url".to_string())),
        None => secret("ROADIE_MIGRATE_DATABASE_URL", &env)?,
    };
    let Some((text, source)) = found else {
        return Ok(None);
    };
    let url = DatabaseUrl::parse(&text, &source)?;
    let Some(app) = app else {
        return Err(format!(
            "{source} is set but no database is: it is the direct URL of the app's database \
             (--database-url, ROADIE_DATABASE_URL, DATABASE_URL, POSTGRES_HOST or MARIADB_HOST)"
        ));
    };
    if url.driver() != app.driver() || url.driver() == Driver::Sqlite {
        return Err(format!(
            "{source} must be the direct URL of the app's {} server ({})",
            match app.driver() {
                Driver::Postgres => "PostgreSQL",
                Driver::MySql => "MySQL",
                Driver::Sqlite => "(SQLite has no",
            },
            app.source
        ));
    }
    Ok(Some(url))
}

/// `NAME`, or the contents of the file `NAME_FILE` names (as the official images read Docker
/// secrets), with the source for messages. Both set is an error, as in the postgres image.
fn secret(
    name: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<(String, String)>, String> {
    let file_var = format!("{name}_FILE");
    match (env(name), env(&file_var)) {
        (Some(_), Some(_)) => Err(format!("both {name} and {file_var} are set: use one")),
        (Some(value), None) => Ok(Some((value, name.to_string()))),
        (None, Some(path)) => {
            let value = std::fs::read_to_string(&path)
                .map_err(|e| format!("{file_var}={path}: cannot read it: {e}"))?;
            Ok(Some((
                value.trim_end_matches(['\n', '\r']).to_string(),
                file_var,
            )))
        }
        (None, None) => Ok(None),
    }
}

/// SQLite creates the file but not its directory: a missing one is a configuration error.
pub fn check_sqlite_directory(url: &DatabaseUrl) -> Result<(), String> {
    let Some(file) = url.sqlite_file() else {
        return Ok(());
    };
    let dir = match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if dir.is_dir() {
        Ok(())
    } else {
        Err(format!(
            "{}: the directory {} of the SQLite file does not exist",
            url.source,
            dir.display()
        ))
    }
}
