//! `alembic upgrade head` without Python when there is nothing to upgrade: the revision graph
//! read from the scripts (`alembic.rs`) against the rows of the version table. At head, alembic
//! is not started; several heads, a revision no script knows, or a broken graph are said before
//! Python would have imported anything (65); what roadie cannot read exactly falls back to
//! running alembic, with one line saying why.

use std::path::Path;

use tracing::info;

use super::{AlembicUpgradeHead, MigrateError};
use crate::alembic::{self, ConfigFiles, Graph, LoadError, Verdict};
use crate::children::Program;
use crate::database::history::VersionTable;
use crate::database::{Connection, DatabaseUrl};

/// The scripts of the alembic project an `alembic upgrade head` (or `heads`) command works on.
pub struct Scripts {
    graph: Graph,
    table: VersionTable,
    /// `upgrade heads`: several heads are fine (each branch to its head).
    all_heads: bool,
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
    /// `table`: `--alembic-version-table` when given (it wins over `env.py`).
    pub fn of_command(
        program: &Program,
        table: Option<&VersionTable>,
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
    /// runs as before; the line saying why is logged here. The version table is `table` when
    /// given, else the one `env.py` names, else `alembic_version`.
    pub fn read(
        upgrade: &AlembicUpgradeHead,
        cwd: &Path,
        table: Option<&VersionTable>,
    ) -> Result<Option<Self>, MigrateError> {
        if !upgrade.x.is_empty() {
            info!(
                "-x {}: env.py reads it, roadie cannot, so alembic runs to decide",
                upgrade.x.join(" -x ")
            );
            return Ok(None);
        }
        if let Some(flask) = &upgrade.flask {
            let loaded = alembic::load_flask(flask.directory.as_deref(), cwd);
            return Self::judged(loaded, upgrade, table);
        }
        let env_config = std::env::var_os("ALEMBIC_CONFIG").map(std::path::PathBuf::from);
        let files = ConfigFiles::from_options(
            &upgrade.configs,
            upgrade.name.as_deref(),
            env_config.as_deref(),
        )
        .map_err(|why| MigrateError::Misconfigured(format!("alembic: {why}")))?;
        Self::judged(alembic::load(&files, cwd), upgrade, table)
    }

    /// The project as loaded, or the fallback line / the error for it.
    fn judged(
        loaded: Result<alembic::Project, LoadError>,
        upgrade: &AlembicUpgradeHead,
        table: Option<&VersionTable>,
    ) -> Result<Option<Self>, MigrateError> {
        let project = match loaded {
            Ok(project) => project,
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
        let table = match (table, env_table(&project.env)) {
            (Some(flag), _) => flag.clone(),
            (None, Some(Ok(named))) => named,
            (None, Some(Err(why))) => {
                info!("starting alembic: {}: {why}", project.env_py.display());
                return Ok(None);
            }
            (None, None) => VersionTable::default(),
        };
        Ok(Some(Scripts {
            graph: project.graph,
            table,
            all_heads: upgrade.heads,
        }))
    }

    /// `upgrade head` with several heads: said before Python starts (65). `upgrade heads`
    /// and `migrate status` take them as they are.
    fn refuse_several_heads(&self) -> Result<(), MigrateError> {
        let heads = self.graph.heads();
        if heads.len() > 1 && !self.all_heads {
            return Err(MigrateError::Failed {
                what: "alembic upgrade head".into(),
                message: format!(
                    "the scripts have several heads ({}); merge them with `alembic merge heads`, \
                     or upgrade to `heads`; alembic was not started",
                    heads.join(", ")
                ),
            });
        }
        Ok(())
    }

    /// Reads the version table (one simple query: fine through a transaction pooler) and
    /// judges it. A revision no script knows is 65: the image is older than the schema.
    pub async fn reading(&self, conn: &mut Connection) -> Result<Reading, MigrateError> {
        self.refuse_several_heads()?;
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

    /// After `command` exited 0: the version table, read again on `conn`, must be at head, or
    /// the migration did not land where roadie looks (65, naming the database read, what it
    /// holds, what the image expects, and why that usually happens). The head on success.
    pub async fn landed(
        &self,
        conn: &mut Connection,
        url: &DatabaseUrl,
        command: &str,
    ) -> Result<String, MigrateError> {
        let rows = conn
            .alembic_revisions(&self.table)
            .await
            .map_err(|e| MigrateError::unavailable(format!("reading {} back", self.table), e))?;
        let heads = self.graph.heads().join(", ");
        if self.graph.verdict(&rows) == Verdict::AtHead {
            return Ok(heads);
        }
        Err(MigrateError::Failed {
            what: format!("{command:?}"),
            message: not_landed(&self.table, url, &rows, &heads),
        })
    }

    /// `migrate status`: each revision with its state, base first.
    pub fn status(&self, rows: &[String]) -> Vec<alembic::RevisionStatus> {
        self.graph.status(rows)
    }

    pub fn table(&self) -> &VersionTable {
        &self.table
    }
}

/// Why a command that exited 0 left the version table behind, as the failure line says it.
fn not_landed(table: &VersionTable, url: &DatabaseUrl, rows: &[String], heads: &str) -> String {
    let holds = match rows {
        [] => "no revision (the table is missing or empty)".to_string(),
        rows => format!("revision {}", rows.join(", ")),
    };
    format!(
        "it exited 0, but {table} in {url} (from {}) holds {holds}, not this image's head \
         {heads}. Likely causes: env.py migrates another database or URL than this one (it \
         reads its own settings), or env.py does not commit (an async env.py that opens its \
         connection with `connect()` needs `await connection.commit()` after `run_sync`, or \
         `begin()` instead); the app is not started",
        url.source
    )
}

/// The table `env.py` names (`[schema.]name`), if it names one; `Err` when roadie cannot query
/// it as named (the line for running alembic instead).
fn env_table(env: &alembic::EnvSettings) -> Option<Result<VersionTable, String>> {
    if let Some(why) = &env.table_unknown {
        return Some(Err(format!(
            "roadie cannot tell which version table env.py uses ({why}); \
             --alembic-version-table would say"
        )));
    }
    let name = env
        .version_table
        .as_ref()
        .map_or("alembic_version", |(n, _)| n);
    let text = match &env.version_table_schema {
        Some((schema, _)) => format!("{schema}.{name}"),
        None if env.version_table.is_some() => name.to_string(),
        None => return None,
    };
    let line = env
        .version_table
        .as_ref()
        .or(env.version_table_schema.as_ref())
        .map_or(0, |(_, l)| *l);
    Some(VersionTable::parse(&text).map_err(|_| {
        format!("line {line} names the version table {text}, which roadie cannot query")
    }))
}
