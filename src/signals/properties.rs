//! Property tests of signal names and `--rewrite-signal` (see `test_text.rs`).

use rstest::rstest;

use proptest::prelude::*;

use crate::test_text::*;

use crate::signals::{self, Role};

proptest! {
    #![proptest_config(cases())]
    #[test]
    fn a_signal_name_never_panics(
        text in anything(prop_oneof![
            "(SIG)?(RTMIN|RTMAX|TERM|[0-9]{0,3})([+-]{1,2}[0-9]{1,12})?",
            (
                prop::sample::select(vec!["RTMIN+", "RTMAX-", "SIGRTMIN+", "rtmax-"]),
                prop_oneof![any::<i32>(), i32::MAX - 99..=i32::MAX, i32::MIN..=i32::MIN + 99],
            )
                .prop_map(|(base, offset)| format!("{base}{offset}")),
        ]),
    ) {
        if let Ok(signal) = signals::parse(&text) {
            prop_assert!((1..=libc::SIGRTMAX()).contains(&signal), "{} -> {}", text, signal);
        }
    }

    #[test]
    fn every_signal_reads_back_from_its_name_however_it_is_cased(
        signal in 1..=libc::SIGRTMAX(),
        sig in prop::sample::select(vec!["", "SIG", "sig", "Sig"]),
        lower in prop::collection::vec(any::<bool>(), 16),
        by_number in any::<bool>(),
        (before, after) in (padding(), padding()),
    ) {
        let name: String = if by_number {
            signal.to_string()
        } else {
            signals::name(signal)
                .chars()
                .zip(lower.iter().cycle())
                .map(|(c, &lower)| if lower { c.to_ascii_lowercase() } else { c })
                .collect()
        };
        let text = format!("{before}{sig}{name}{after}");
        prop_assert_eq!(signals::parse(&text), Ok(signal), "{:?}", text);
    }

    #[test]
    fn a_rewrite_never_panics(
        text in anything(
            (signal_text(), prop::sample::select(vec![":", "::", ""]), signal_text())
                .prop_map(|(a, colon, b)| format!("{a}{colon}{b}")),
        ),
    ) {
        if let Err(message) = signals::parse_rewrite(&text) {
            prop_assert!(message.starts_with("--rewrite-signal"), "{}", message);
        }
    }

    #[test]
    fn every_forwarded_signal_can_be_rewritten_to_any_signal_or_dropped(
        from in 1..=libc::SIGRTMAX(),
        to in 0..=libc::SIGRTMAX(),
        by_number in any::<(bool, bool)>(),
    ) {
        let write = |signal: libc::c_int, by_number: bool| {
            if by_number || signal == 0 { signal.to_string() } else { signals::name(signal) }
        };
        let text = format!("{}:{}", write(from, by_number.0), write(to, by_number.1));
        let parsed = signals::parse_rewrite(&text);
        if signals::role(from) == Role::Forward {
            prop_assert_eq!(parsed, Ok((from, to)), "{}", text);
        } else {
            let message = parsed.unwrap_err();
            prop_assert!(message.contains("never forwarded"), "{}", message);
        }
    }

}

/// A signal as users might write it, right or wrong.
fn signal_text() -> impl Strategy<Value = String> {
    prop_oneof![
        (1..=libc::SIGRTMAX()).prop_map(signals::name),
        (-5..=100i32).prop_map(|n| n.to_string()),
        "(SIG)?(RTMIN|RTMAX)[+-]-?[0-9]{1,12}",
        tricky(6),
    ]
}

/// Found by `a_signal_name_never_panics`: the offset overflowed `c_int` (a panic in debug
/// builds, a wrapped number in release).
#[rstest]
#[case("RTMIN+2147483614")]
#[case("RTMIN+2147483647")]
#[case("RTMAX--2147483648")]
#[case("SIGRTMAX--2147483647")]
fn a_real_time_offset_past_the_integers_is_refused(#[case] text: &str) {
    assert!(signals::parse(text).is_err(), "{text} parsed");
    assert!(signals::parse_rewrite(&format!("{text}:TERM")).is_err());
}
