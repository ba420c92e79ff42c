//! The wait stage against a real PostgreSQL: ready means a login and `SELECT 1`; transient
//! failures are retried, permanent ones fail at once with 69; a stop signal ends the wait.

use std::time::Duration;

use crate::support::postgres::{Postgres, ROADIE_PASSWORD};
use crate::support::{Mode, roadie};

#[test]
fn smoke_waits_for_a_running_postgres() {
    let pg = Postgres::started();
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
    .run()
    .code(0)
    .stdout_has("app-started")
    .stderr_has("database ready in")
    .stderr_lacks(ROADIE_PASSWORD);
    let _ = Duration::ZERO;
}
