//! Property tests of migration file names: read as sqlx reads them (see `test_text.rs`).

use proptest::prelude::*;

use crate::test_text::*;

use crate::migrate;

/// A file name in or near sqlx's `<VERSION>_<DESCRIPTION>.sql` form.
fn migration_name() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            any::<i64>().prop_map(|v| v.to_string()),
            "[0-9]{1,25}",
            "[+-]?[0-9]{1,4}",
            tricky(4),
        ],
        prop::sample::select(vec!["_", "__", "", "-", " _"]),
        tricky(10),
        prop::sample::select(vec![
            ".sql",
            ".up.sql",
            ".down.sql",
            "",
            ".SQL",
            ".sql.bak",
            ".sql ",
            "_.sql",
        ]),
    )
        .prop_map(|(version, sep, description, suffix)| {
            format!("{version}{sep}{description}{suffix}").replace('/', "")
        })
        .prop_filter("a file name", |n| {
            !n.is_empty() && n != "." && n != ".." && n.len() <= 255
        })
}

proptest! {
    #![proptest_config(cases())]

    /// sqlx is the judge: a name roadie counts as a migration is one sqlx's own resolver reads
    /// as one, and a name roadie passes over, sqlx never runs.
    #[test]
    fn a_migration_file_name_is_read_as_sqlx_reads_it(name in migration_name()) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(&name), "SELECT 1;").expect("write");
        let ours = migrate::plan::is_sqlx_migration_name(&name);
        prop_assert_eq!(migrate::has_sqlx_migrations(dir.path()), ours);
        let sqlx = sqlx::migrate::resolve_blocking(dir.path());
        if ours {
            prop_assert_eq!(sqlx.map(|m| m.len()).map_err(|e| e.to_string()), Ok(1));
        } else {
            prop_assert_eq!(sqlx.map(|m| m.len()).unwrap_or(0), 0);
        }
    }

    #[test]
    fn every_versioned_sql_file_is_a_migration(
        version in any::<i64>(),
        description in tricky(12),
        suffix in prop::sample::select(vec![".sql", ".up.sql", ".down.sql"]),
    ) {
        let name = format!("{version}_{description}{suffix}");
        prop_assert!(migrate::plan::is_sqlx_migration_name(&name), "{}", name);
    }
}
