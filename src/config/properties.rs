//! Property tests of the durations and exit codes users type (see `test_text.rs`).

use std::time::Duration;

use clap::Parser as _;
use proptest::prelude::*;

use crate::test_text::*;

use crate::cli::Args;
use crate::config::{self, ConfigError};

/// A unit humantime reads and what one of it is, in seconds.
fn unit() -> impl Strategy<Value = (&'static str, u64)> {
    prop::sample::select(vec![
        ("s", 1),
        ("sec", 1),
        ("m", 60),
        ("min", 60),
        ("h", 3600),
        ("hours", 3600),
        ("d", 86400),
    ])
}

proptest! {
    #![proptest_config(cases())]
    #[test]
    fn a_duration_never_panics(
        text in anything("([0-9]{1,25} ?(ns|us|ms|s|m|h|d|w|M|y|months|years|) ?){1,4}"),
    ) {
        if let Err(ConfigError::Invalid(message)) = config::duration("--stop-grace", &text) {
            prop_assert!(message.starts_with("--stop-grace"), "{}", message);
        }
    }

    #[test]
    fn a_duration_reads_back_what_was_written(
        terms in prop::collection::vec((0..100_000u64, unit()), 1..4),
        millis in prop::option::of(0..1000u64),
        (before, after) in (padding(), padding()),
    ) {
        let mut written: Vec<String> =
            terms.iter().map(|(n, (unit, _))| format!("{n}{unit}")).collect();
        let mut expected: Duration = terms.iter().map(|(n, (_, secs))| Duration::from_secs(n * secs)).sum();
        if let Some(ms) = millis {
            written.push(format!("{ms}ms"));
            expected += Duration::from_millis(ms);
        }
        let text = format!("{before}{}{after}", written.join(" "));
        prop_assert_eq!(config::duration("--wait-timeout", &text), Ok(expected));
    }

    #[test]
    fn a_duration_reads_back_as_humantime_writes_it(
        secs in 0..10_000_000_000u64,
        nanos in 0..1_000_000_000u32,
    ) {
        let duration = Duration::new(secs, nanos);
        let text = humantime::format_duration(duration).to_string();
        prop_assert_eq!(config::duration("--lock-timeout", &text), Ok(duration));
    }

    #[test]
    fn an_exit_code_never_panics(text in anything("[+-]?[0-9]{1,25}")) {
        if let Err(e) = config::success_code(&text) {
            let ConfigError::Invalid(message) = e else { panic!("{e:?}") };
            prop_assert!(message.starts_with("--success-exit-code"), "{}", message);
        }
    }

    #[test]
    fn every_exit_code_reads_back(
        code in any::<u8>(),
        zeros in "0{0,3}",
        plus in prop::sample::select(vec!["", "+"]),
        (before, after) in (padding(), padding()),
    ) {
        let text = format!("{before}{plus}{zeros}{code}{after}");
        prop_assert_eq!(config::success_code(&text), Ok(code));
    }

    #[test]
    fn an_exit_code_beyond_255_is_refused(code in 256..=u64::MAX) {
        prop_assert!(config::success_code(&code.to_string()).is_err());
        let negative = format!("-{}", code - 255);
        prop_assert!(config::success_code(&negative).is_err());
    }

    #[test]
    fn a_list_of_exit_codes_reads_back(
        codes in prop::collection::vec(any::<u8>(), 1..6),
        separator in prop::sample::select(vec![",", ", "]),
    ) {
        let list = codes.iter().map(u8::to_string).collect::<Vec<_>>().join(separator);
        let args = Args::try_parse_from(["roadie", "--success-exit-code", &list, "true"])
            .unwrap_or_else(|e| panic!("{list}: {e}"));
        let read: Vec<u8> = args
            .options
            .supervise
            .success_exit_code
            .iter()
            .map(|c| config::success_code(c).unwrap())
            .collect();
        prop_assert_eq!(read, codes);
    }
}
