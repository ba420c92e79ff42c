//! How long each phase of the boot took, and the line that starts the app with them (text,
//! and fields for JSON logs).

use std::time::{Duration, Instant};

use tracing::info;

use crate::migrate::Summary;
use crate::migrate::stage::Migrated;
use crate::wait::Waited;

/// How long each phase took, for the line that starts the app.
#[derive(Debug, Default)]
pub struct Timings {
    pub waited: Option<Waited>,
    pub migrated: Option<Migrated>,
    pub hooks: Option<(usize, Duration)>,
}

impl Timings {
    /// The line that starts the app: `ready in 1.73s (database 1.40s, 2 migrations 0.31s,
    /// hooks 0.02s); starting uvicorn (pid 7)`, each phase also a field for JSON logs.
    pub fn log_start(&self, started: Instant, name: &str, pid: libc::pid_t) {
        let total = started.elapsed();
        let secs = |d: Duration| d.as_secs_f64();
        let applied = self
            .migrated
            .as_ref()
            .and_then(|(summary, _)| match summary {
                Summary::Applied { count, .. } => Some(*count as u64),
                Summary::UpToDate { .. }
                | Summary::Awaited { .. }
                | Summary::AlembicAtHead { .. } => Some(0),
                Summary::Command { .. } => None,
            });
        let ready = self.ready_line(total);
        info!(
            wait_s = self.waited.as_ref().map(|w| secs(w.took)),
            waited_for = self.waited.as_ref().map(|w| w.last.as_str()),
            migrate_s = self.migrated.as_ref().map(|(_, took)| secs(*took)),
            applied,
            hooks_s = self.hooks.map(|(_, took)| secs(took)),
            total_s = (!ready.is_empty()).then(|| secs(total)),
            "{ready}starting {name} (pid {pid})"
        );
    }

    /// `ready in 1.73s (database 1.40s, 2 migrations 0.31s, hooks 0.02s); `, or nothing when
    /// no phase ran.
    fn ready_line(&self, total: Duration) -> String {
        let mut parts = Vec::new();
        if let Some(waited) = &self.waited {
            parts.push(format!("{} {:.2}s", waited.last, waited.took.as_secs_f64()));
        }
        if let Some((summary, took)) = &self.migrated {
            let what = match summary {
                Summary::Applied { count: 1, .. } => "1 migration".to_string(),
                Summary::Applied { count, .. } => format!("{count} migrations"),
                Summary::UpToDate { .. } | Summary::AlembicAtHead { .. } => {
                    "schema up to date".into()
                }
                Summary::Awaited { .. } => "schema awaited".into(),
                Summary::Command { .. } => "migration command".into(),
            };
            let lock = summary
                .lock_waited()
                .filter(|w| *w >= Duration::from_millis(10))
                .map(|w| format!(" incl. {:.2}s waiting for the lock", w.as_secs_f64()))
                .unwrap_or_default();
            parts.push(format!("{what} {:.2}s{lock}", took.as_secs_f64()));
        }
        if let Some((count, took)) = self.hooks {
            let what = if count == 1 { "1 hook" } else { "hooks" };
            parts.push(format!("{what} {:.2}s", took.as_secs_f64()));
        }
        if parts.is_empty() {
            return String::new();
        }
        format!(
            "ready in {:.2}s ({}); ",
            total.as_secs_f64(),
            parts.join(", ")
        )
    }
}
