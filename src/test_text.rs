//! Text as users paste it, for the property tests that sit beside every parser of outside
//! input: each takes any text without panicking, never repeats a password, and reads back what
//! was written. The seed is fixed, so a run is reproducible and CI cannot fail by chance;
//! explore other inputs with `PROPTEST_RNG_SEED=<n>` (and more of them with
//! `PROPTEST_CASES=<n>`). Inputs these tests found stay beside them as example cases.

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

/// In every generated password. A leak of the password, or of the part of it that holds the
/// marker, shows it in any encoding (it is alphanumeric); other generated text never holds it.
pub(crate) const MARK: &str = "SeCrEt";

/// 256 cases, no regression files (found inputs go in the tables below), a fixed seed unless
/// `PROPTEST_RNG_SEED` says otherwise.
pub(crate) fn cases() -> Config {
    let mut config = Config {
        failure_persistence: None,
        ..Config::default()
    };
    if config.rng_seed == RngSeed::Random {
        config.rng_seed = RngSeed::Fixed(0x726f_6164_6965);
    }
    config
}

/// Any printable text, with the characters URLs and parsers care about often.
pub(crate) fn tricky(max: usize) -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => "[ -~]",
        1 => "\\PC",
        2 => prop::sample::select(vec![
            "%", "%41", "%2F", "%zz", "@", ":", "/", "?", "#", "&", "=", "+", " ", "[", "]",
            "\\", ".", "..", ",", "é", "😀",
        ])
        .prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..max).prop_map(|pieces| pieces.concat())
}

/// `tricky` text that holds no marker, so a marker found in output came from a password.
pub(crate) fn unmarked(min: usize, max: usize) -> impl Strategy<Value = String> {
    tricky(max).prop_filter("marker-free and long enough", move |t| {
        !t.contains(MARK) && t.chars().count() >= min
    })
}

/// A password: arbitrary printable characters around the marker.
pub(crate) fn password() -> impl Strategy<Value = String> {
    (tricky(8), tricky(8)).prop_map(|(a, b)| format!("{a}{MARK}{b}"))
}

/// Any text at all, control characters included, or text shaped like what `shaped` parses.
pub(crate) fn anything(shaped: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), tricky(24), shaped]
}

/// Percent-encodes all but the unreserved characters, as a careful user writes a URL.
pub(crate) fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Undoes `%XX`; anything else stays as it is.
pub(crate) fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn assert_unmarked(what: &str, shown: &str) -> Result<(), TestCaseError> {
    prop_assert!(!shown.contains(MARK), "{what} shows the password: {shown}");
    Ok(())
}

/// Whitespace as it surrounds a value in a compose file.
pub(crate) fn padding() -> impl Strategy<Value = String> {
    "[ \t]{0,2}"
}

pub(crate) fn host_name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,10}(\\.[a-z][a-z0-9-]{0,8}){0,2}"
}
