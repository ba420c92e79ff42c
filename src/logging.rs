//! roadie's own log lines, on stderr: `[roadie] LEVEL message` for people, or one JSON object a
//! line with the event's fields (attempts, elapsed, ...) for log pipelines. Messages carry
//! everything a person needs; fields are for machines. The app's output never passes here.
//!
//! A small `tracing::Subscriber` rather than tracing-subscriber's: roadie records events, never
//! spans, and tracing-subscriber's span registry allocates a 4096-slot shard table up front,
//! which was a third of the supervisor's resident heap.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub format: Format,
    /// The most verbose level written.
    pub level: Level,
}

impl Settings {
    pub fn parse(format: &str, level: &str) -> Result<Self, String> {
        let format = match format {
            "text" => Format::Text,
            "json" => Format::Json,
            other => return Err(format!("--log-format {other:?}: expected text or json")),
        };
        let level = match level.to_ascii_lowercase().as_str() {
            "error" => Level::ERROR,
            "warn" => Level::WARN,
            "info" => Level::INFO,
            "debug" => Level::DEBUG,
            "trace" => Level::TRACE,
            _ => {
                return Err(format!(
                    "--log-level {level:?}: expected error, warn, info, debug or trace"
                ));
            }
        };
        Ok(Settings { format, level })
    }
}

/// The boot phase roadie is in, for the `phase` field of JSON lines.
static PHASE: AtomicU8 = AtomicU8::new(0);
const PHASES: [&str; 5] = ["config", "wait", "migrate", "hooks", "run"];

#[derive(Debug, Clone, Copy)]
pub enum Phase {
    Config = 0,
    Wait = 1,
    Migrate = 2,
    Hooks = 3,
    Run = 4,
}

/// Marks the phase later log lines belong to.
pub fn enter(phase: Phase) {
    PHASE.store(phase as u8, Ordering::Relaxed);
}

fn phase() -> &'static str {
    PHASES[usize::from(PHASE.load(Ordering::Relaxed)).min(PHASES.len() - 1)]
}

/// What roadie is doing on behalf of something else (`migration 3 (migrations/3_seed.sql)`):
/// other crates' lines (a PostgreSQL notice relayed by sqlx) are prefixed with it, so they say
/// where they came from.
static ON_BEHALF_OF: Mutex<Option<String>> = Mutex::new(None);

/// Sets (or clears) what other crates' lines are about.
pub fn on_behalf_of(what: Option<String>) {
    if let Ok(mut current) = ON_BEHALF_OF.lock() {
        *current = what;
    }
}

fn behalf() -> Option<String> {
    ON_BEHALF_OF.lock().ok().and_then(|c| c.clone())
}

/// The settings in force, for a supervisor handed over to a fresh image (handoff.rs).
static SETTINGS: OnceLock<Settings> = OnceLock::new();

pub fn settings() -> Option<Settings> {
    SETTINGS.get().copied()
}

impl Settings {
    /// The `--log-format` and `--log-level` values that give these settings back.
    pub fn as_args(&self) -> (&'static str, String) {
        let format = match self.format {
            Format::Text => "text",
            Format::Json => "json",
        };
        (format, self.level.as_str().to_ascii_lowercase())
    }
}

pub fn init(settings: Settings) {
    let _ = SETTINGS.set(settings);
    tracing::subscriber::set_global_default(Stderr(settings))
        .expect("UNWRAP: logging is set up once, in main");
}

struct Stderr(Settings);

impl Subscriber for Stderr {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        // Other crates (sqlx) speak only when something is wrong.
        let ceiling = if is_ours(metadata) {
            self.0.level
        } else {
            Level::WARN.min(self.0.level)
        };
        *metadata.level() <= ceiling
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(self.0.level.into())
    }

    fn event(&self, event: &Event<'_>) {
        let level = *event.metadata().level();
        let line = match self.0.format {
            Format::Text => {
                let ours = is_ours(event.metadata());
                let mut line = format!("[roadie] {level:<5} ");
                if let Some(what) = behalf().filter(|_| !ours) {
                    let _ = write!(line, "{what}: ");
                }
                let mut text = TextLine {
                    line,
                    fields: !ours,
                };
                event.record(&mut text);
                text.line
            }
            Format::Json => {
                let mut json = JsonLine(serde_json::Map::new());
                json.0.insert(
                    "timestamp".into(),
                    humantime::format_rfc3339_millis(SystemTime::now())
                        .to_string()
                        .into(),
                );
                json.0.insert("level".into(), level.as_str().into());
                json.0.insert("phase".into(), phase().into());
                if let Some(what) = behalf().filter(|_| !is_ours(event.metadata())) {
                    json.0.insert("on_behalf_of".into(), what.into());
                }
                event.record(&mut json);
                serde_json::Value::Object(json.0).to_string()
            }
        };
        let explained = explanation(&line)
            .filter(|_| !is_ours(event.metadata()) && Level::INFO <= self.0.level)
            .filter(|_| !EXPLAINED.swap(true, Ordering::Relaxed))
            .map(|why| match self.0.format {
                Format::Text => format!("[roadie] {:<5} {why}\n", Level::INFO),
                Format::Json => {
                    let json = serde_json::json!({
                        "timestamp": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
                        "level": Level::INFO.as_str(),
                        "phase": phase(),
                        "message": why,
                    });
                    format!("{json}\n")
                }
            })
            .unwrap_or_default();
        // One write per line, so lines from roadie and the app never interleave mid-line.
        let _ = std::io::stderr()
            .lock()
            .write_all(format!("{line}\n{explained}").as_bytes());
    }

    // roadie records no spans: these keep the trait's contract and nothing else.
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// Server notices whose words do not say what they mean for a migration: each explained once
/// a run, after the first of them (a cold boot of a migration with its own `BEGIN`/`COMMIT`
/// prints two).
const EXPLANATIONS: &[(&str, &str)] = &[
    (
        "there is already a transaction in progress",
        NESTED_TRANSACTION,
    ),
    ("there is no transaction in progress", NESTED_TRANSACTION),
];

const NESTED_TRANSACTION: &str = "about the WARN line(s) above: the migration has its own \
    BEGIN/COMMIT, but each migration already runs in a transaction, so PostgreSQL warns of the \
    nested BEGIN and of the extra COMMIT. The migration is applied and recorded; but its own \
    COMMIT ends that transaction early, so the migration and its row in _sqlx_migrations are no \
    longer one atomic step. Remove its BEGIN and COMMIT lines, or start the file with \
    `-- no-transaction` when it must manage its transactions itself";

/// Whether one of them has been explained already.
static EXPLAINED: AtomicBool = AtomicBool::new(false);

/// The explanation `line` calls for, if any.
fn explanation(line: &str) -> Option<&'static str> {
    EXPLANATIONS
        .iter()
        .find(|(words, _)| line.contains(words))
        .map(|(_, why)| *why)
}

fn is_ours(metadata: &Metadata<'_>) -> bool {
    metadata.target().starts_with("roadie")
}

/// The message alone for roadie's own events (it says everything); other crates' events
/// (sqlx's warnings) keep their `key=value` fields.
struct TextLine {
    line: String,
    fields: bool,
}

impl Visit for TextLine {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.line, "{value:?}");
        } else if self.fields {
            let _ = write!(self.line, " {}={value:?}", field.name());
        }
    }
}

/// `{"message": ..., "key": value}`, numbers and booleans kept as JSON numbers and booleans.
struct JsonLine(serde_json::Map<String, serde_json::Value>);

impl Visit for JsonLine {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
}

/// The error and its causes on one line: `internal error while reading signals: Bad file
/// descriptor (os error 9)`. A cause whose text the line already holds is not said again:
/// sqlx's errors, like many, repeat their source in their own message.
pub fn one_line(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let said = c.to_string();
        if !line.contains(&said) {
            line.push_str(": ");
            line.push_str(&said);
        }
        cause = c.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("text", "info", true)]
    #[case("json", "DEBUG", true)]
    #[case("xml", "info", false)]
    #[case("text", "loud", false)]
    fn reads_log_settings(#[case] format: &str, #[case] level: &str, #[case] ok: bool) {
        assert_eq!(Settings::parse(format, level).is_ok(), ok);
    }
}
