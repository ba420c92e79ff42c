//! `alembic upgrade head` without Python when there is nothing to upgrade: the revision graph
//! read from the scripts (`alembic.rs`) against the rows of the version table. At head, alembic
//! is not started; several heads, a revision no script knows, or a broken graph are said before
//! Python would have imported anything (65); what roadie cannot read exactly falls back to
//! running alembic, with one line saying why.

use std::path::Path;

use tracing::info;

use super::alembic::{self, ConfigFiles, Graph, LoadError, Verdict};
use super::{AlembicUpgradeHead, MigrateError};
use crate::children::Program;
use crate::database::Connection;
use crate::database::history::VersionTable;

/// The scripts of the alembic project an `alembic upgrade head` command works on.
pub struct Scripts {
    graph: Graph,
    table: VersionTable,
}

/// What the version table says against the scripts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading {
    /// At head: this head (or heads, joined).
    AtHead(String),
    /// Not at head: the revisions still to apply, base first.
    Pending(Vec<String>),
}

impl Scripts {
    /// The scripts `program` works on, when it is `alembic upgrade head` in one of its usual
    /// forms and roadie can read its project; `Ok(None)` runs it as any command.
    pub fn of_command(
        program: &Program,
        table: &VersionTable,
    ) -> Result<Option<Self>, MigrateError> {
        let Some(upgrade) = super::alembic_upgrade_head(&program.argv) else {
            return Ok(None);
        };
        let cwd = std::env::current_dir().map_err(|source| MigrateError::Internal {
            about: "reading the working directory",
            source,
        })?;
        Self::read(&upgrade, &cwd, table)
    }

    /// Reads the project the command names (its `-c`, `-n`, `ALEMBIC_CONFIG`) from `cwd`.
    /// `Ok(None)`: roadie cannot read it exactly (or `-x` options feed env.py), so alembic
    /// runs as before; the line saying why is logged here.
    pub fn read(
        upgrade: &AlembicUpgradeHead,
        cwd: &Path,
        table: &VersionTable,
    ) -> Result<Option<Self>, MigrateError> {
        if !upgrade.x.is_empty() {
            info!(
                "alembic -x {}: env.py reads it, roadie cannot, so alembic runs to decide",
                upgrade.x.join(" -x ")
            );
            return Ok(None);
        }
        let env_config = std::env::var_os("ALEMBIC_CONFIG").map(std::path::PathBuf::from);
        let files = ConfigFiles::from_options(
            &upgrade.configs,
            upgrade.name.as_deref(),
            env_config.as_deref(),
        )
        .map_err(|why| MigrateError::Misconfigured(format!("alembic: {why}")))?;
        let graph = match alembic::load(&files, cwd) {
            Ok(graph) => graph,
            Err(LoadError::Fallback(fallback)) => {
                info!(
                    "starting alembic: roadie cannot read {} without Python ({})",
                    fallback.file.display(),
                    fallback.why
                );
                return Ok(None);
            }
            Err(LoadError::Config(e)) => {
                return Err(MigrateError::Misconfigured(format!(
                    "alembic configuration {}: {}",
                    e.file.display(),
                    e.why
                )));
            }
            Err(LoadError::Graph(e)) => {
                return Err(MigrateError::Failed {
                    what: "reading alembic's revisions".into(),
                    message: format!("{e}; alembic was not started"),
                });
            }
        };
        let heads = graph.heads();
        if heads.len() > 1 {
            return Err(MigrateError::Failed {
                what: "alembic upgrade head".into(),
                message: format!(
                    "the scripts have several heads ({}); merge them with `alembic merge heads`, \
                     or upgrade to `heads`; alembic was not started",
                    heads.join(", ")
                ),
            });
        }
        Ok(Some(Scripts {
            graph,
            table: table.clone(),
        }))
    }

    /// Reads the version table (one simple query: fine through a transaction pooler) and
    /// judges it. A revision no script knows is 65: the image is older than the schema.
    pub async fn reading(&self, conn: &mut Connection) -> Result<Reading, MigrateError> {
        let rows = conn
            .alembic_revisions(&self.table)
            .await
            .map_err(|e| MigrateError::unavailable(format!("reading {}", self.table), e))?;
        match self.graph.verdict(&rows) {
            Verdict::AtHead => Ok(Reading::AtHead(self.graph.heads().join(", "))),
            Verdict::Pending { missing } => Ok(Reading::Pending(missing)),
            Verdict::UnknownRevision { unknown } => Err(MigrateError::Failed {
                what: format!("{} in the database", self.table),
                message: format!(
                    "revision {} is not in this image's scripts: the image is older than the \
                     schema (rolling an image back needs a schema it can work with); alembic \
                     was not started",
                    unknown.join(", ")
                ),
            }),
        }
    }

    /// `migrate status`: each revision with its state, base first.
    pub fn status(&self, rows: &[String]) -> Vec<alembic::RevisionStatus> {
        self.graph.status(rows)
    }

    pub fn table(&self) -> &VersionTable {
        &self.table
    }
}
