//! A native migrations folder as sqlx reads it, and sqlx's errors explained: the file, the
//! line, what was committed and what to do.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sqlx::migrate::{AppliedMigration, MigrateError as SqlxMigrateError, Migration, Migrator};

use crate::database::history::MIGRATIONS_TABLE as TABLE;
use crate::database::{Driver, pooler, sqlstate};
use crate::migrate::MigrateError;

/// The folder's migrations, with the file each came from.
pub struct Folder {
    pub dir: PathBuf,
    /// The database they go to: how a failure ends depends on it.
    driver: Driver,
    migrations: Vec<(Migration, PathBuf)>,
}

impl Folder {
    /// Reads the folder as sqlx does (silently ignoring what is not a migration).
    pub fn read(dir: &Path, driver: Driver) -> Result<Self, MigrateError> {
        let mut migrations =
            sqlx::migrate::resolve_blocking(dir).map_err(|e| MigrateError::Failed {
                what: format!("reading {}", dir.display()),
                message: e.to_string(),
            })?;
        migrations.sort_by_key(|(m, _)| m.version);
        Ok(Folder {
            dir: dir.to_path_buf(),
            driver,
            migrations,
        })
    }

    /// sqlx's migrator over the folder's migrations up to `version`: it applies what of them
    /// is pending, after the same checks a whole-folder run makes.
    pub fn migrator_through(&self, version: i64) -> Migrator {
        let mut migrator = Migrator::with_migrations(
            self.migrations
                .iter()
                .map(|(m, _)| m.clone())
                .filter(|m| m.version <= version)
                .collect(),
        );
        // roadie's own lock is held around the run (see lock.rs).
        migrator.set_locking(false);
        // Applied migrations newer than `version` are in the folder: `pending` checked every
        // applied one against the whole folder before the run.
        migrator.set_ignore_missing(true);
        migrator
    }

    pub fn file_of(&self, version: i64) -> String {
        self.migrations
            .iter()
            .find(|(m, _)| m.version == version && !m.migration_type.is_down_migration())
            .map_or_else(
                || format!("version {version}"),
                |(_, p)| p.display().to_string(),
            )
    }

    pub fn is_no_tx(&self, version: i64) -> bool {
        self.migrations
            .iter()
            .any(|(m, _)| m.version == version && m.no_tx)
    }

    pub fn ups(&self) -> impl Iterator<Item = &Migration> {
        self.migrations
            .iter()
            .map(|(m, _)| m)
            .filter(|m| !m.migration_type.is_down_migration())
    }

    /// Up migrations not yet applied, or the first inconsistency sqlx would refuse.
    pub fn pending(&self, applied: &[AppliedMigration]) -> Result<Vec<i64>, MigrateError> {
        let applied: HashMap<i64, &AppliedMigration> =
            applied.iter().map(|a| (a.version, a)).collect();
        for version in applied.keys() {
            if !self.ups().any(|m| m.version == *version) {
                return Err(self.explain(SqlxMigrateError::VersionMissing(*version)));
            }
        }
        let mut pending = Vec::new();
        for m in self.ups() {
            match applied.get(&m.version) {
                Some(a) if a.checksum != m.checksum => {
                    return Err(self.explain(SqlxMigrateError::VersionMismatch(m.version)));
                }
                Some(_) => {}
                None => pending.push(m.version),
            }
        }
        Ok(pending)
    }

    /// A failed run, explained, with what it committed before the failing migration.
    pub fn explain_run(&self, error: SqlxMigrateError, pending: &[i64]) -> MigrateError {
        let failed = match &error {
            SqlxMigrateError::ExecuteMigration(_, version) => Some(*version),
            _ => None,
        };
        let mut error = self.explain(error);
        if let (Some(failed), MigrateError::Failed { message, .. }) = (failed, &mut error) {
            message.push_str(&committed_before(pending, failed));
        }
        error
    }

    /// What of the folder the database lacks, from its history (version, checksum): each
    /// pending migration with its file. A changed file or an applied migration missing from
    /// the folder is an error: waiting cannot fix it.
    pub fn missing(&self, applied: &[(i64, Vec<u8>)]) -> Result<Vec<String>, MigrateError> {
        for (version, checksum) in applied {
            match self.ups().find(|m| m.version == *version) {
                None => return Err(self.explain(SqlxMigrateError::VersionMissing(*version))),
                Some(m) if *m.checksum != checksum[..] => {
                    return Err(self.explain(SqlxMigrateError::VersionMismatch(*version)));
                }
                Some(_) => {}
            }
        }
        Ok(self
            .ups()
            .filter(|m| !applied.iter().any(|(v, _)| *v == m.version))
            .map(|m| format!("migration {} ({})", m.version, self.file_of(m.version)))
            .collect())
    }

    /// Turns sqlx's error into one that names the file, the line and what to do.
    fn explain(&self, error: SqlxMigrateError) -> MigrateError {
        if let SqlxMigrateError::ExecuteMigration(e, _) | SqlxMigrateError::Execute(e) = &error
            && pooler::lost_prepared_statement(e)
        {
            return MigrateError::Misconfigured(format!(
                "{e}: a transaction pooler in front of the database lost a prepared statement \
                 of the migration; give the direct URL with --migrate-database-url \
                 (ROADIE_MIGRATE_DATABASE_URL), or use session pooling"
            ));
        }
        match error {
            SqlxMigrateError::ExecuteMigration(e, version) => {
                let file = self.file_of(version);
                let line = line_of(&e, &file).map(|l| format!(", line {l}")).unwrap_or_default();
                if sqlstate::is_connection_loss(&e) {
                    return MigrateError::unavailable(
                        format!("the connection was lost while running migration {version} ({file})"),
                        e,
                    );
                }
                let no_tx = self
                    .migrations
                    .iter()
                    .any(|(m, _)| m.version == version && m.no_tx);
                let outcome = if no_tx {
                    "it is a -- no-transaction migration: what ran before the error stays, and nothing was recorded"
                } else if self.driver.commits_ddl_as_it_goes() {
                    "MySQL and MariaDB commit DDL as they go: what ran before the error may stay, \
                     and a migration with DDL is recorded as partially applied; check the schema"
                } else {
                    "rolled back, nothing recorded"
                };
                MigrateError::Failed {
                    what: format!("migration {version} ({file}{line})"),
                    message: format!("{}; {outcome}", sqlstate::server_message(&e)),
                }
            }
            SqlxMigrateError::VersionMismatch(version) => MigrateError::Failed {
                what: format!("migration {version} ({})", self.file_of(version)),
                message: "the file changed after it was applied (checksum mismatch); restore it, or add a new migration".into(),
            },
            SqlxMigrateError::VersionMissing(version) => MigrateError::Failed {
                what: format!("migration {version}"),
                message: format!(
                    "it was applied to the database but is missing from {}; restore the file",
                    self.dir.display()
                ),
            },
            SqlxMigrateError::Dirty(version) => MigrateError::Failed {
                what: format!("migration {version} ({})", self.file_of(version)),
                message: format!("it is recorded as partially applied (success = false in {TABLE}); repair the schema by hand and delete that row"),
            },
            SqlxMigrateError::Execute(e) if sqlstate::is_connection_loss(&e) => {
                MigrateError::unavailable("the connection was lost while migrating", e)
            }
            other => MigrateError::Failed {
                what: format!("migrating with {}", self.dir.display()),
                message: other.to_string(),
            },
        }
    }
}

/// What a failed run leaves behind: each migration commits on its own, so the ones before the
/// failing one stay applied; "rolled back" alone would read as the whole run.
pub fn committed_before(pending: &[i64], failed: i64) -> String {
    let earlier: Vec<i64> = pending.iter().copied().filter(|v| *v < failed).collect();
    match earlier.as_slice() {
        [] => String::new(),
        [one] => format!("; migration {one}, applied earlier in this run, stays applied"),
        [first, .., last] => format!(
            "; the {} migrations applied earlier in this run ({first} to {last}) stay applied",
            earlier.len()
        ),
    }
}

/// The line of `file` where the server says the error is (PostgreSQL reports a character
/// offset into the statement, which is the whole file: sqlx sends it as one).
fn line_of(e: &sqlx::Error, file: &str) -> Option<usize> {
    let position = sqlstate::error_position(e)?;
    let text = std::fs::read_to_string(file).ok()?;
    let before: String = text.chars().take(position.saturating_sub(1)).collect();
    Some(before.matches('\n').count() + 1)
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::committed_before;

    #[rstest]
    #[case(&[5], 5, "")]
    #[case(&[4, 5], 5, "; migration 4, applied earlier in this run, stays applied")]
    #[case(
        &[1, 2, 3, 4, 5],
        5,
        "; the 4 migrations applied earlier in this run (1 to 4) stay applied"
    )]
    #[case(&[1, 2, 3], 2, "; migration 1, applied earlier in this run, stays applied")]
    fn a_failed_run_names_what_it_committed_before(
        #[case] pending: &[i64],
        #[case] failed: i64,
        #[case] said: &str,
    ) {
        assert_eq!(committed_before(pending, failed), said);
    }
}
