//! roadie's own log lines, on stderr: `[roadie] LEVEL message key=value` or one JSON object a
//! line. The app's stdout and stderr never pass through here.

use std::fmt;

use tracing::{Event, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub format: Format,
    pub level: LevelFilter,
}

impl Settings {
    pub fn parse(format: &str, level: &str) -> Result<Self, String> {
        let format = match format {
            "text" => Format::Text,
            "json" => Format::Json,
            other => return Err(format!("--log-format {other:?}: expected text or json")),
        };
        let level = match level.to_ascii_lowercase().as_str() {
            "error" => LevelFilter::ERROR,
            "warn" => LevelFilter::WARN,
            "info" => LevelFilter::INFO,
            "debug" => LevelFilter::DEBUG,
            "trace" => LevelFilter::TRACE,
            _ => {
                return Err(format!(
                    "--log-level {level:?}: expected error, warn, info, debug or trace"
                ));
            }
        };
        Ok(Settings { format, level })
    }
}

pub fn init(settings: Settings) {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(settings.level);
    match settings.format {
        Format::Text => builder.event_format(Text).init(),
        Format::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
    }
}

/// `[roadie] INFO  starting uvicorn (pid 12)`: the prefix tells roadie's lines from the app's.
struct Text;

impl<S, N> FormatEvent<S, N> for Text
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "[roadie] {:<5} ", event.metadata().level())?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
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
