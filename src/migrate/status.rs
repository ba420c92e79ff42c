//! `roadie migrate status`: each migration of the folder and of the history table, or each
//! alembic revision against the version table (no Python started), as a table on stdout or,
//! with `--json`, one JSON array for scripts.

use std::io::Write as _;
use std::path::Path;

use tokio::runtime::Runtime;

use super::at_head::Scripts;
use super::native::Folder;
use super::{MigrateError, Plan, bounded, schema_wait};
use crate::alembic::{RevisionStatus, State};
use crate::database::DatabaseUrl;

/// Prints the status of `plan`'s migrations; `scripts`: the alembic project of its command.
pub fn show(
    runtime: &Runtime,
    url: &DatabaseUrl,
    plan: &Plan,
    scripts: Option<&Scripts>,
    json: bool,
) -> Result<(), MigrateError> {
    let text = match (plan, scripts) {
        (Plan::Native(dir), _) => {
            let folder = Folder::read(dir, url.driver())?;
            let rows = runtime.block_on(status(&folder, url))?;
            if json {
                as_json(&rows).to_string() + "\n"
            } else {
                reading(url, "_sqlx_migrations") + &as_table(&rows)
            }
        }
        (Plan::Command(_), Some(scripts)) => {
            let rows = runtime.block_on(async {
                let mut conn = schema_wait::session(url, None).await?;
                let rows = conn.alembic_revisions(scripts.table()).await.map_err(|e| {
                    MigrateError::unavailable(format!("reading {}", scripts.table()), e)
                });
                conn.close().await;
                rows
            })?;
            let revisions = scripts.status(&rows);
            if json {
                serde_json::to_string(&revisions).expect("UNWRAP: plain data serialises") + "\n"
            } else {
                let cwd = std::env::current_dir().unwrap_or_default();
                reading(url, &scripts.table().to_string()) + &alembic_table(&revisions, &cwd)
            }
        }
        (Plan::Command(program), None) if json => {
            return Err(MigrateError::Misconfigured(format!(
                "migrate status --json: roadie cannot read what {:?} applies; ask that tool \
                 (e.g. `alembic current`)",
                program.command_line()
            )));
        }
        (Plan::Command(program), None) => format!(
            "migrations run by {:?}: their status belongs to that tool (e.g. `alembic current`)\n",
            program.display_name()
        ),
        (Plan::Skip(_), _) if json => "[]\n".into(),
        (Plan::Skip(why), _) => format!(
            "no migrations to show: {}\n",
            why.as_deref().unwrap_or("none configured")
        ),
    };
    // stdout closed early (`| head`) is the reader's choice, not an error of roadie's.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    Ok(())
}

/// The line above a table: which database and table it was read from (URL masked).
fn reading(url: &DatabaseUrl, table: &str) -> String {
    format!("{table} in {url} (from {})\n", url.source)
}

/// `file` as the text status shows it: relative to the working directory when inside it.
fn shown(file: &Path, cwd: &Path) -> String {
    file.strip_prefix(cwd).unwrap_or(file).display().to_string()
}

/// One line a revision, base first: its state, what it is in the graph, its file (relative
/// to `cwd` when inside it).
fn alembic_table(revisions: &[RevisionStatus], cwd: &Path) -> String {
    let mut text = format!("{:<16} {:<20} {:<28} file\n", "revision", "status", "graph");
    for r in revisions {
        let mut marks = Vec::new();
        if r.base {
            marks.push("base".to_string());
        }
        if r.head {
            marks.push("head".to_string());
        }
        if r.branch_point {
            marks.push("branch point".to_string());
        }
        if r.merge_point {
            marks.push(format!("merges {}", r.down_revisions.join("+")));
        }
        let state = match r.state {
            State::Applied => "applied",
            State::Pending => "pending",
            State::UnknownInDatabase => "unknown to the image",
        };
        text.push_str(&format!(
            "{:<16} {:<20} {:<28} {}\n",
            r.revision,
            state,
            marks.join(", "),
            r.file.as_ref().map_or("-".into(), |f| shown(f, cwd))
        ));
    }
    text
}

fn as_json(rows: &[Status]) -> serde_json::Value {
    rows.iter()
        .map(|r| {
            serde_json::json!({
                "version": r.version,
                "description": r.description,
                "state": r.state,
                // 0.1 said `status` here (alembic's rows say `state`): kept for one release.
                "status": r.state,
                "installed_on": r.installed_on,
                "execution_ms": r.execution_ms,
                "file": r.file,
            })
        })
        .collect()
}

fn as_table(rows: &[Status]) -> String {
    let mut text = format!(
        "{:<16} {:<18} {:<30} {:>12}  description\n",
        "version", "status", "installed on", "took"
    );
    for r in rows {
        text.push_str(&format!(
            "{:<16} {:<18} {:<30} {:>12}  {}\n",
            r.version,
            r.state,
            r.installed_on.as_deref().unwrap_or("-"),
            r.execution_ms
                .map_or("-".into(), |ms| format!("{ms:.1} ms")),
            r.description
        ));
    }
    text
}

/// What `roadie migrate status` shows for one migration.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub version: i64,
    pub description: String,
    /// applied, pending, checksum mismatch, missing (applied, file gone), partially applied
    pub state: &'static str,
    pub installed_on: Option<String>,
    pub execution_ms: Option<f64>,
    pub file: Option<String>,
}

/// Every migration of the folder and of the history table, merged.
async fn status(folder: &Folder, url: &DatabaseUrl) -> Result<Vec<Status>, MigrateError> {
    // A plain session: nothing set on it that a pooler's server connection would keep.
    let mut conn = url
        .connect()
        .await
        .map_err(|e| MigrateError::unavailable("connecting", e))?;
    // No table yet: everything is pending.
    let recorded = bounded("reading _sqlx_migrations", conn.migration_history())
        .await?
        .unwrap_or_default();
    let _ = bounded("closing the session", conn.close()).await;
    let mut rows: Vec<Status> = folder
        .ups()
        .map(|m| {
            let r = recorded.iter().find(|r| r.version == m.version);
            Status {
                version: m.version,
                description: m.description.to_string(),
                state: match r {
                    None => "pending",
                    Some(r) if !r.success => "partially applied",
                    Some(r) if r.checksum != *m.checksum => "checksum mismatch",
                    Some(_) => "applied",
                },
                installed_on: r.map(|r| r.installed_on.clone()),
                execution_ms: r
                    .filter(|r| r.execution_ns >= 0)
                    .map(|r| r.execution_ns as f64 / 1e6),
                file: Some(folder.file_of(m.version)),
            }
        })
        .collect();
    for r in recorded
        .iter()
        .filter(|r| !folder.ups().any(|m| m.version == r.version))
    {
        rows.push(Status {
            version: r.version,
            description: r.description.clone(),
            state: "missing",
            installed_on: Some(r.installed_on.clone()),
            execution_ms: (r.execution_ns >= 0).then(|| r.execution_ns as f64 / 1e6),
            file: None,
        });
    }
    rows.sort_by_key(|s| s.version);
    Ok(rows)
}
