//! The history tables: what the database has of the migrations this image knows, read without
//! a session state (one simple query each, so it works through a transaction pooler): the
//! native folder's `_sqlx_migrations` and alembic's version table.

use std::fmt;

use sqlx::Row;

use super::MigrateError;
use crate::database::{Connection, on_each_driver};

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

/// The revisions in alembic's version table; none when it does not exist yet.
pub async fn alembic_revisions(
    conn: &mut Connection,
    table: &VersionTable,
) -> Result<Vec<String>, MigrateError> {
    let sql = sqlx::AssertSqlSafe(format!("SELECT version_num FROM {table}"));
    let rows: Result<Vec<String>, sqlx::Error> = on_each_driver!(conn, c => {
        sqlx::raw_sql(sql)
            .fetch_all(c)
            .await
            .map(|rows| rows.iter().filter_map(|r| r.try_get(0).ok()).collect())
    });
    match rows {
        Ok(rows) => Ok(rows),
        Err(e) if is_missing_table(&e) => Ok(Vec::new()),
        Err(e) => Err(MigrateError::Unavailable(format!("reading {table}: {e}"))),
    }
}

/// The versions and checksums in sqlx's history table, successful ones only; none when it
/// does not exist yet.
pub async fn native_applied(conn: &mut Connection) -> Result<Vec<(i64, Vec<u8>)>, MigrateError> {
    let sql = "SELECT version, checksum FROM _sqlx_migrations WHERE success ORDER BY version";
    let rows: Result<Vec<(i64, Vec<u8>)>, sqlx::Error> = on_each_driver!(conn, c => {
        sqlx::raw_sql(sql).fetch_all(c).await.map(|rows| {
            rows.iter()
                .filter_map(|r| Some((r.try_get(0).ok()?, r.try_get(1).ok()?)))
                .collect()
        })
    });
    match rows {
        Ok(rows) => Ok(rows),
        Err(e) if is_missing_table(&e) => Ok(Vec::new()),
        Err(e) => Err(MigrateError::Unavailable(format!(
            "reading _sqlx_migrations: {e}"
        ))),
    }
}

/// PostgreSQL's undefined_table, MySQL's 1146, SQLite's "no such table".
fn is_missing_table(e: &sqlx::Error) -> bool {
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
