//! Property tests of `--wait-for` targets: never a panic, never a password shown (see
//! `test_text.rs`).

use rstest::rstest;

use proptest::prelude::*;

use crate::test_text::*;

use crate::wait::Target;

/// A `--wait-for` value of any kind, with a password, and with or without a slip.
fn wait_target() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["tcp", "http", "https", "TCP", "postgres", "mysql"]),
        unmarked(0, 8),
        password(),
        host_name(),
        prop::option::of(any::<u16>()),
        unmarked(0, 10),
        prop::sample::select(vec!["", "//", "no-port", "bad-port", "space", "query"]),
    )
        .prop_map(|(scheme, user, pw, host, port, path, slip)| {
            let port = match (slip, port) {
                ("no-port", _) | (_, None) => String::new(),
                ("bad-port", _) => ":notaport".into(),
                (_, Some(p)) => format!(":{p}"),
            };
            let host = if slip == "space" {
                format!("{host} x")
            } else {
                host
            };
            let slashes = if slip == "//" { "" } else { "//" };
            let query = if slip == "query" {
                format!("?password={}", encode(&pw))
            } else {
                String::new()
            };
            format!(
                "{scheme}:{slashes}{}:{}@{host}{port}/{}{query}",
                encode(&user),
                encode(&pw),
                encode(&path)
            )
        })
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn a_wait_target_never_panics(text in anything(wait_target())) {
        let _ = Target::parse(&text).map(|t| (t.name().to_string(), format!("{t:?}")));
    }

    #[test]
    fn a_wait_target_never_shows_its_password(text in wait_target()) {
        match Target::parse(&text) {
            Ok(target) => {
                assert_unmarked("its name", target.name())?;
                assert_unmarked("Debug", &format!("{target:?}"))?;
            }
            Err(e) => assert_unmarked("the error", &e)?,
        }
    }
}

/// Found by `a_wait_target_never_shows_its_password`: errors repeated the text, and Debug
/// showed an http URL whole.
#[rstest]
#[case(
    "tcp://:SeCrEt@a/",
    "--wait-for tcp://:***@a/: expected tcp://host:port"
)]
#[case("TCP::SeCrEt@a/", "--wait-for: expected tcp://host:port")]
#[case(
    "tcp://u:SeCrEt@a:x/",
    "--wait-for: malformed URL: invalid port number"
)]
#[case(
    "http://u:SeCrEt@a b/",
    "--wait-for: malformed URL: invalid international domain name"
)]
fn a_wait_target_refused_names_no_password(#[case] text: &str, #[case] error: &str) {
    assert_eq!(Target::parse(text).unwrap_err(), error);
}

#[test]
fn a_wait_target_shows_no_password_in_debug() {
    let target = Target::parse("http://:SeCrEt@a/").unwrap();
    assert_eq!(format!("{target:?}"), r#"Http { name: "http://:***@a/" }"#);
}
