//! The history tables: what the database has of the migrations this image knows (the native
//! folder's `_sqlx_migrations`, alembic's version table), read without a session state (one
//! simple query each, so it works through a transaction pooler), and sqlx's migrator run on a
//! connection.

use std::fmt;

use sqlx::Row;
use sqlx::migrate::{AppliedMigration, Migrate, MigrateError as SqlxMigrateError, Migrator};

#[cfg(feature = "postgres")]
use super::postgres;
pub use super::sqlx_shared::{MIGRATIONS_TABLE, Recorded};
use super::{Connection, Driver, on_each_driver};

/// `[SCHEMA.]NAME` of alembic's version table (`--alembic-version-table`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionTable {
    schema: Option<String>,
    name: String,
}

impl VersionTable {
    /// Reads `[SCHEMA.]NAME`; each part a plain SQL identifier (letters, digits, `_`, not
    /// starting with a digit), since it goes into a query as it is.
    pub fn parse(text: &str) -> Result<Self, String> {
        let plain = |part: &str| {
            !part.is_empty()
                && !part.starts_with(|c: char| c.is_ascii_digit())
                && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        let (schema, name) = match text.trim().split_once('.') {
            Some((schema, name)) => (Some(schema), name),
            None => (None, text.trim()),
        };
        if !plain(name) || !schema.is_none_or(plain) {
            return Err(format!(
                "--alembic-version-table {text:?}: expected [SCHEMA.]NAME, each a plain SQL \
                 identifier (letters, digits and _)"
            ));
        }
        Ok(VersionTable {
            schema: schema.map(str::to_string),
            name: name.to_string(),
        })
    }
}

impl Default for VersionTable {
    fn default() -> Self {
        VersionTable {
            schema: None,
            name: "alembic_version".into(),
        }
    }
}

impl fmt::Display for VersionTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

impl Connection {
    /// The revisions in alembic's version table; none when it does not exist yet.
    pub async fn alembic_revisions(
        &mut self,
        table: &VersionTable,
    ) -> Result<Vec<String>, sqlx::Error> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT version_num FROM {table}"));
        let rows: Result<Vec<String>, sqlx::Error> = on_each_driver!(self, c => {
            sqlx::raw_sql(sql)
                .fetch_all(c)
                .await
                .map(|rows| rows.iter().filter_map(|r| r.try_get(0).ok()).collect())
        });
        match rows {
            Err(e) if is_missing_table(&e) => Ok(Vec::new()),
            rows => rows,
        }
    }

    /// The versions and checksums of the successful migrations in `_sqlx_migrations`; none
    /// when it does not exist yet.
    pub async fn native_applied(&mut self) -> Result<Vec<(i64, Vec<u8>)>, sqlx::Error> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT version, checksum FROM {MIGRATIONS_TABLE} WHERE success ORDER BY version"
        ));
        let rows: Result<Vec<(i64, Vec<u8>)>, sqlx::Error> = on_each_driver!(self, c => {
            sqlx::raw_sql(sql).fetch_all(c).await.map(|rows| {
                rows.iter()
                    .filter_map(|r| Some((r.try_get(0).ok()?, r.try_get(1).ok()?)))
                    .collect()
            })
        });
        match rows {
            Err(e) if is_missing_table(&e) => Ok(Vec::new()),
            rows => rows,
        }
    }

    /// What sqlx's migrator reads before a run: the applied migrations. PostgreSQL: as one
    /// simple query, as it may go through a transaction pooler before roadie knows.
    // A Postgres-only build has one driver: its `if let` always matches.
    #[cfg_attr(
        not(any(feature = "mysql", feature = "sqlite")),
        allow(irrefutable_let_patterns)
    )]
    pub async fn applied_migrations(&mut self) -> Result<Vec<AppliedMigration>, sqlx::Error> {
        #[cfg(feature = "postgres")]
        if let Connection::Postgres(c) = self {
            return postgres::applied(c).await;
        }
        on_each_driver!(self, c => c.list_applied_migrations(MIGRATIONS_TABLE).await)
            .map_err(into_sqlx)
    }

    /// Creates `_sqlx_migrations` if it is not there.
    pub async fn ensure_migrations_table(&mut self) -> Result<(), sqlx::Error> {
        on_each_driver!(self, c => c.ensure_migrations_table(MIGRATIONS_TABLE).await)
            .map_err(into_sqlx)
    }

    /// Runs `migrator`'s pending migrations on this connection (roadie holds the lock).
    pub async fn run_migrator(&mut self, migrator: &Migrator) -> Result<(), SqlxMigrateError> {
        on_each_driver!(self, c => migrator.run_direct(None, c, false).await)
    }

    /// Every row of `_sqlx_migrations`, for `migrate status`.
    // A Postgres-only build has one driver: its `if let` always matches.
    #[cfg_attr(
        not(any(feature = "mysql", feature = "sqlite")),
        allow(irrefutable_let_patterns)
    )]
    pub async fn migration_history(&mut self) -> Result<Vec<Recorded>, sqlx::Error> {
        #[cfg(feature = "postgres")]
        if let Connection::Postgres(c) = self {
            return postgres::history(c).await;
        }
        // Each database spells "the timestamp as text" its own way.
        let installed_on = match self.driver() {
            Driver::MySql => "CAST(installed_on AS CHAR)",
            _ => "CAST(installed_on AS TEXT)",
        };
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT version, description, {installed_on}, success, checksum, execution_time \
             FROM {MIGRATIONS_TABLE} ORDER BY version"
        ));
        let rows = on_each_driver!(self, c => {
            sqlx::query(sql)
                .fetch_all(c)
                .await?
                .into_iter()
                .map(|r| Recorded {
                    version: r.get(0),
                    description: r.get(1),
                    installed_on: r.get(2),
                    success: r.get(3),
                    checksum: r.get(4),
                    execution_ns: r.get(5),
                })
                .collect()
        });
        Ok(rows)
    }
}

/// sqlx's migrate error that is a database error, as one.
fn into_sqlx(e: SqlxMigrateError) -> sqlx::Error {
    match e {
        SqlxMigrateError::Execute(e) | SqlxMigrateError::ExecuteMigration(e, _) => e,
        other => sqlx::Error::Protocol(other.to_string()),
    }
}

/// PostgreSQL's undefined_table, MySQL's 1146, SQLite's "no such table".
pub fn is_missing_table(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(d) = e else {
        return false;
    };
    matches!(d.code().as_deref(), Some("42P01") | Some("42S02"))
        || d.message().starts_with("no such table")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("alembic_version", "alembic_version")]
    #[case("tenant.alembic_version", "tenant.alembic_version")]
    #[case(" app_versions ", "app_versions")]
    fn reads_version_tables(#[case] text: &str, #[case] shown: &str) {
        assert_eq!(VersionTable::parse(text).unwrap().to_string(), shown);
    }

    #[rstest]
    #[case("")]
    #[case("a.b.c")]
    #[case("1table")]
    #[case("alembic_version; DROP TABLE users")]
    #[case("\"quoted\"")]
    #[case(".name")]
    fn refuses_what_is_not_a_plain_table_name(#[case] text: &str) {
        let err = VersionTable::parse(text).unwrap_err();
        assert!(err.starts_with("--alembic-version-table"), "{err}");
    }
}
