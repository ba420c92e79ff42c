//! What roadie shares with sqlx, so that an app running `sqlx::migrate!()` and roadie agree in
//! both directions: the history table's name and rows, and the migration lock's key. A leaf:
//! every driver file may use it.

/// sqlx's history table, shared with apps that run `sqlx::migrate!()`.
pub const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// One row of `_sqlx_migrations`, for `migrate status`.
pub struct Recorded {
    pub version: i64,
    pub description: String,
    pub installed_on: String,
    pub success: bool,
    pub checksum: Vec<u8>,
    pub execution_ns: i64,
}

/// sqlx's advisory-lock key: `0x3d32ad9e * crc32(current_database())`.
pub fn sqlx_key(database: &str) -> i64 {
    const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    0x3d32ad9e * i64::from(CRC.checksum(database.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("postgres", 368907709894077238)]
    #[case("app", 3469795979745788610)]
    fn the_key_is_sqlxs(#[case] database: &str, #[case] key: i64) {
        assert_eq!(sqlx_key(database), key);
    }
}
