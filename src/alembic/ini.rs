//! The part of Python's `configparser.ConfigParser` that alembic relies on to read `alembic.ini`:
//! sections, `key = value` / `key: value`, indented continuation lines, full-line `#`/`;`
//! comments, `[DEFAULT]`, lower-cased keys, and `BasicInterpolation` (`%(name)s`, `%%`).
//! Written here because no INI crate interpolates `%(here)s`, and the common ones strip inline
//! comments, which configparser keeps as part of the value (CPython Lib/configparser.py `_read`).

use std::collections::HashMap;

/// configparser's `MAX_INTERPOLATION_DEPTH`.
const MAX_DEPTH: usize = 10;

/// A parsed file: raw (uninterpolated) values per section, plus the defaults.
#[derive(Debug, Default)]
pub struct Ini {
    defaults: HashMap<String, String>,
    sections: HashMap<String, HashMap<String, String>>,
}

impl Ini {
    /// Parses `text` as `ConfigParser(defaults).read()` would; an error is configparser's
    /// `ParsingError`/`Duplicate*Error`/`MissingSectionHeaderError`, as one line with its line number.
    pub fn parse(text: &str, defaults: &[(&str, &str)]) -> Result<Ini, String> {
        let mut ini = Ini {
            defaults: defaults
                .iter()
                .map(|(k, v)| (k.to_lowercase(), v.to_string()))
                .collect(),
            ..Ini::default()
        };
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let text = text.replace("\r\n", "\n").replace('\r', "\n");
        // The values being built, as lines; joined and right-stripped at the end.
        let mut built: Vec<(Option<String>, String, Vec<String>)> = Vec::new();
        let mut current: Option<Option<String>> = None; // Some(None) = DEFAULT
        let mut in_value = false;
        let mut indent_level = 0usize;
        let mut seen_sections: Vec<String> = Vec::new();
        for (index, line) in text.split('\n').enumerate() {
            let lineno = index + 1;
            let stripped = line.trim();
            let is_comment = stripped.starts_with('#') || stripped.starts_with(';');
            if stripped.is_empty() || is_comment {
                if !is_comment && in_value {
                    built
                        .last_mut()
                        .expect("UNWRAP: in_value")
                        .2
                        .push(String::new());
                }
                continue;
            }
            let indent = line.find(|c: char| !c.is_whitespace()).unwrap_or(0);
            if current.is_some() && in_value && indent > indent_level {
                built
                    .last_mut()
                    .expect("UNWRAP: in_value")
                    .2
                    .push(stripped.to_string());
                continue;
            }
            indent_level = indent;
            if let Some(header) = section_header(stripped) {
                if header == "DEFAULT" {
                    current = Some(None);
                } else {
                    if seen_sections.iter().any(|s| s == header) {
                        return Err(format!("line {lineno}: section [{header}] already exists"));
                    }
                    seen_sections.push(header.to_string());
                    ini.sections.entry(header.to_string()).or_default();
                    current = Some(Some(header.to_string()));
                }
                in_value = false;
                continue;
            }
            let Some(section) = current.clone() else {
                return Err(format!("line {lineno}: no [section] header before it"));
            };
            let Some((key, value)) = option_line(stripped) else {
                return Err(format!(
                    "line {lineno}: neither a section nor `key = value`"
                ));
            };
            if built.iter().any(|(s, k, _)| *s == section && *k == key) {
                return Err(format!(
                    "line {lineno}: option {key:?} already set in this section"
                ));
            }
            built.push((section, key, vec![value]));
            in_value = true;
        }
        for (section, key, lines) in built {
            let value = lines.join("\n").trim_end().to_string();
            match section {
                None => ini.defaults.insert(key, value),
                Some(name) => ini.sections.entry(name).or_default().insert(key, value),
            };
        }
        Ok(ini)
    }

    /// `ConfigParser.get(section, option)` with interpolation: `Ok(None)` when the section or
    /// option is absent; `Err` for configparser's interpolation errors.
    pub fn get(&self, section: &str, option: &str) -> Result<Option<String>, String> {
        let Some(values) = self.sections.get(section) else {
            return Ok(None);
        };
        let option = option.to_lowercase();
        let lookup = |key: &str| values.get(key).or_else(|| self.defaults.get(key));
        let Some(raw) = lookup(&option) else {
            return Ok(None);
        };
        let mut out = String::new();
        interpolate(raw, &lookup, 1, &mut out)?;
        Ok(Some(out))
    }
}

/// `SECTCRE = r"\[(?P<header>.+)\]"`, matched at the start: the header runs to the last `]`.
fn section_header(line: &str) -> Option<&str> {
    let rest = line.strip_prefix('[')?;
    let end = rest.rfind(']')?;
    (end > 0).then(|| &rest[..end])
}

/// `OPTCRE`: the key runs to the first `=` or `:`; both sides stripped; the key lower-cased.
fn option_line(line: &str) -> Option<(String, String)> {
    let at = line.find(['=', ':'])?;
    let key = line[..at].trim_end();
    if key.is_empty() {
        return None;
    }
    Some((key.to_lowercase(), line[at + 1..].trim().to_string()))
}

/// `BasicInterpolation._interpolate_some`.
fn interpolate<'a>(
    raw: &str,
    lookup: &impl Fn(&str) -> Option<&'a String>,
    depth: usize,
    out: &mut String,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "interpolation deeper than {MAX_DEPTH} levels in {raw:?}"
        ));
    }
    let mut rest = raw;
    while let Some(p) = rest.find('%') {
        out.push_str(&rest[..p]);
        rest = &rest[p..];
        if let Some(after) = rest.strip_prefix("%%") {
            out.push('%');
            rest = after;
        } else if let Some(after) = rest.strip_prefix("%(") {
            let close = after
                .find(')')
                .filter(|&c| c > 0 && after[c + 1..].starts_with('s'))
                .ok_or_else(|| format!("bad interpolation variable reference {rest:?}"))?;
            let name = after[..close].to_lowercase();
            rest = &after[close + 2..];
            let value =
                lookup(&name).ok_or_else(|| format!("no option {name:?} to interpolate"))?;
            if value.contains('%') {
                interpolate(value, lookup, depth + 1, out)?;
            } else {
                out.push_str(value);
            }
        } else {
            return Err(format!(
                "'%' must be followed by '%' or '(', found {rest:?}"
            ));
        }
    }
    out.push_str(rest);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const HERE: &[(&str, &str)] = &[("here", "/srv/app")];

    #[rstest]
    #[case::plain("[alembic]\nscript_location = alembic\n", Some("alembic"))]
    #[case::colon_delimiter("[alembic]\nscript_location: alembic\n", Some("alembic"))]
    #[case::here(
        "[alembic]\nscript_location = %(here)s/alembic\n",
        Some("/srv/app/alembic")
    )]
    #[case::percent_escape("[alembic]\nscript_location = a%%b\n", Some("a%b"))]
    #[case::key_is_case_insensitive("[alembic]\nScript_Location = x\n", Some("x"))]
    #[case::inline_hash_is_kept(
        "[alembic]\nscript_location = x # not a comment\n",
        Some("x # not a comment")
    )]
    #[case::continuation("[alembic]\nscript_location = a\n  b\n\n  c\n\n", Some("a\nb\n\nc"))]
    #[case::comment_in_continuation("[alembic]\nscript_location = a\n  # c\n  b\n", Some("a\nb"))]
    #[case::default_section(
        "[DEFAULT]\nroot = /r\n[alembic]\nscript_location = %(root)s/m\n",
        Some("/r/m")
    )]
    #[case::nested_interpolation(
        "[alembic]\na = %(here)s/x\nscript_location = %(a)s/y\n",
        Some("/srv/app/x/y")
    )]
    #[case::other_section("[other]\nscript_location = x\n", None)]
    #[case::crlf("[alembic]\r\nscript_location = x\r\n", Some("x"))]
    #[case::header_to_last_bracket("[alembic] ; note]\nscript_location = x\n", None)]
    #[case::empty_value("[alembic]\nscript_location =\n", Some(""))]
    fn reads_values_as_configparser_does(#[case] text: &str, #[case] expected: Option<&str>) {
        let ini = Ini::parse(text, HERE).expect("parses");
        assert_eq!(
            ini.get("alembic", "script_location")
                .expect("interpolates")
                .as_deref(),
            expected
        );
    }

    #[rstest]
    #[case::no_section("script_location = x\n")]
    #[case::duplicate_section("[a]\n[a]\n")]
    #[case::duplicate_option("[a]\nx = 1\nX = 2\n")]
    #[case::no_delimiter("[a]\njust words\n")]
    fn refuses_what_configparser_refuses(#[case] text: &str) {
        assert!(Ini::parse(text, HERE).is_err());
    }

    mod never_panics {
        use super::super::Ini;
        use proptest::prelude::*;

        fn fragment() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("[alembic]".to_string()),
                Just("[DEFAULT]".to_string()),
                Just("\n".to_string()),
                Just("  ".to_string()),
                Just("script_location".to_string()),
                Just(" = ".to_string()),
                Just(":".to_string()),
                Just("%(".to_string()),
                Just(")s".to_string()),
                Just("%%".to_string()),
                Just("%".to_string()),
                Just("here".to_string()),
                Just("#".to_string()),
                any::<String>(),
            ]
        }

        proptest! {
            #[test]
            fn on_mixtures_of_ini_fragments(parts in proptest::collection::vec(fragment(), 0..40)) {
                if let Ok(ini) = Ini::parse(&parts.concat(), &[("here", "/h")]) {
                    let _ = ini.get("alembic", "script_location");
                }
            }
        }
    }

    #[rstest]
    #[case::lone_percent("[a]\nx = 50%\n")]
    #[case::missing_name("[a]\nx = %(nope)s\n")]
    #[case::loop_("[a]\nx = %(y)s\ny = %(x)s\n")]
    #[case::no_s("[a]\nx = %(here)d\n")]
    fn interpolation_errors_are_errors(#[case] text: &str) {
        let ini = Ini::parse(text, HERE).expect("parses");
        assert!(ini.get("a", "x").is_err());
    }
}
