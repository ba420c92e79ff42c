//! Reads one alembic revision file without running it: the literal top-level assignments of
//! `revision`, `down_revision`, `branch_labels` and `depends_on` (annotated or not). Only the
//! statements that run when alembic imports the file decide: the body of a function (e.g.
//! `upgrade()`) runs later, so what it does with strings, locals or `setattr` never declines a
//! file, unless module-level code calls that function or it declares a target `global`.
//! Anything that could make Python see other values at import (a computed value, a second
//! binding form, an indented assignment, a star import, `globals()`) is a reason to fall back,
//! never a guess. A computed `branch_labels` alone is read as unknown labels (they do not
//! change which revisions are heads).

use super::python::{self, LogicalLine, Tok, Token};

/// What one revision file declares, as alembic's `Script` would hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionScript {
    pub revision: String,
    /// Empty for a base; several for a merge.
    pub down_revisions: Vec<String>,
    pub branch_labels: Vec<String>,
    /// Revision ids or branch labels, as written.
    pub depends_on: Vec<String>,
    /// The line of a `branch_labels` that is not a literal: its labels are unknown.
    pub computed_labels: Option<usize>,
}

const TARGETS: [&str; 4] = ["revision", "down_revision", "branch_labels", "depends_on"];

/// Names that can bind module globals behind the reader's back (or supply missing ones).
const DYNAMIC: &[&str] = &[
    "globals",
    "vars",
    "locals",
    "exec",
    "eval",
    "setattr",
    "__getattr__",
    "__dict__",
    "__builtins__",
    "builtins",
    "modules",
    "importlib",
];

/// A literal value as Python would build it.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    /// A `branch_labels` roadie cannot evaluate, assigned on this line.
    Computed(usize),
    None,
    Str(String),
    Seq(Vec<Value>),
}

/// Reads `source` (the text of `file_name`); `Err` is the reason to fall back to alembic.
pub fn read(source: &str, file_name: &str) -> Result<RevisionScript, String> {
    let lines = python::logical_lines(source)
        .map_err(|e| format!("line {}: cannot be read as Python ({})", e.line, e.why))?;
    let in_function = function_bodies(&lines);
    check_functions_stay_inside(&lines, &in_function)?;
    let mut values: [Option<Value>; 4] = Default::default();
    for (line, _) in lines.iter().zip(&in_function).filter(|(_, f)| !**f) {
        check_no_dynamic_binding(line)?;
        for statement in line.tokens.split(|t| t.depth == 0 && t.tok == Tok::Op(";")) {
            if let Some((target, Some(value))) = assignment(line.indent, statement)? {
                values[target] = Some(value);
            }
        }
    }
    let [revision, down, labels, depends] = values;
    let revision = match revision {
        Some(Value::Str(id)) if !id.is_empty() => id,
        None => legacy_revision(file_name).ok_or("no `revision = \"...\"` assignment")?,
        Some(_) => return Err("`revision` is not a non-empty string".into()),
    };
    // alembic's `Revision.verify_rev_id`.
    if let Some(c) = revision.chars().find(|c| "@-+:".contains(*c)) {
        return Err(format!(
            "alembic refuses {c:?} in the revision id {revision:?}"
        ));
    }
    let down = down.ok_or("no `down_revision` assignment")?;
    let (branch_labels, computed_labels) = match labels {
        Some(Value::Computed(line)) => (Vec::new(), Some(line)),
        labels => (ids(labels.unwrap_or(Value::None), "branch_labels")?, None),
    };
    Ok(RevisionScript {
        revision,
        down_revisions: ids(down, "down_revision")?,
        branch_labels,
        depends_on: ids(depends.unwrap_or(Value::None), "depends_on")?,
        computed_labels,
    })
}

/// alembic's `_legacy_rev`: a file without `revision` named `<hex>.py` takes its id from the name.
fn legacy_revision(file_name: &str) -> Option<String> {
    let stem = file_name.strip_suffix(".py")?;
    (!stem.is_empty()
        && stem
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then(|| stem.to_string())
}

/// alembic's `util.to_tuple`, then checks alembic would make (or that would make it crash).
fn ids(value: Value, name: &str) -> Result<Vec<String>, String> {
    let items = match value {
        Value::Computed(_) => return Err(format!("`{name}` is not a literal")),
        Value::None => return Ok(Vec::new()),
        Value::Str(s) => vec![Value::Str(s)],
        Value::Seq(items) => items,
    };
    let mut out: Vec<String> = Vec::new();
    for item in items {
        match item {
            Value::Str(s) if !s.is_empty() => {
                if out.contains(&s) {
                    return Err(format!("`{name}` lists {s:?} twice"));
                }
                out.push(s)
            }
            _ => {
                return Err(format!(
                    "`{name}` holds something other than non-empty strings"
                ));
            }
        }
    }
    Ok(out)
}

/// For each logical line, whether it is inside a `def` (it runs only when called).
fn function_bodies(lines: &[LogicalLine]) -> Vec<bool> {
    let parents = python::block_parents(lines);
    (0..lines.len())
        .map(|i| {
            std::iter::successors(parents[i], |&h| parents[h])
                .any(|h| lines[h].first_word() == Some("def"))
        })
        .collect()
}

/// Function bodies may do anything with their own names; they decline the file only when they
/// can reach the module's: `global`/`nonlocal` naming a target, or a dynamic-binding name
/// (`setattr`, `globals`, `exec`, ...) in a function that import-time code can run: one it
/// refers to, one a decorator gets, or one such a function refers to.
fn check_functions_stay_inside(lines: &[LogicalLine], in_function: &[bool]) -> Result<(), String> {
    let parents = python::block_parents(lines);
    // The outermost function each line is in (its header line).
    let owner: Vec<Option<usize>> = (0..lines.len())
        .map(|i| {
            std::iter::successors(parents[i], |&h| parents[h])
                .filter(|&h| lines[h].first_word() == Some("def"))
                .last()
        })
        .collect();
    let outermost: Vec<(usize, &str)> = (0..lines.len())
        .filter(|&h| owner[h].is_none())
        .filter_map(|h| lines[h].def_name().map(|n| (h, n)))
        .collect();
    let runs = run_at_import(lines, in_function, &owner, &outermost);
    for (i, line) in lines.iter().enumerate().filter(|(i, _)| in_function[*i]) {
        let names = || {
            line.tokens.iter().filter_map(|t| match &t.tok {
                Tok::Name(n) => Some((n.as_str(), t.line)),
                _ => None,
            })
        };
        if matches!(line.first_word(), Some("global" | "nonlocal"))
            && let Some((name, at)) = names().find(|(n, _)| TARGETS.contains(n))
        {
            return Err(format!(
                "line {at}: a function declares `{name}` global, which can rebind it"
            ));
        }
        let import = matches!(line.first_word(), Some("import" | "from"));
        let Some((dynamic, at)) = names().find(|(n, _)| DYNAMIC.contains(n) && !import) else {
            continue;
        };
        let Some(f) = outermost.iter().position(|&(h, _)| Some(h) == owner[i]) else {
            continue;
        };
        if let Some(why) = runs[f] {
            return Err(format!(
                "line {at}: uses `{dynamic}`, which can set module names, in {}(), which {why} \
                 when alembic imports the file",
                outermost[f].1
            ));
        }
    }
    Ok(())
}

/// Whether line `i` names `function` (other than as the header of the outermost `def` of it).
fn refers_to(lines: &[LogicalLine], owner: &[Option<usize>], i: usize, function: &str) -> bool {
    let own_header = lines[i].def_name() == Some(function) && owner[i].is_none();
    !own_header
        && lines[i]
            .tokens
            .iter()
            .any(|t| matches!(&t.tok, Tok::Name(n) if n == function))
}

/// Of the outermost functions, those import-time code can run, and why (for the line that
/// declines the file): decorated, referred to by module-level code, or by a function that is.
fn run_at_import(
    lines: &[LogicalLine],
    in_function: &[bool],
    owner: &[Option<usize>],
    outermost: &[(usize, &str)],
) -> Vec<Option<&'static str>> {
    let decorated = |h: usize| {
        h > 0
            && lines[h - 1].indent == lines[h].indent
            && lines[h - 1]
                .tokens
                .first()
                .is_some_and(|t| t.tok == Tok::Op("@"))
    };
    let mut runs: Vec<Option<&str>> = outermost
        .iter()
        .map(|&(h, name)| {
            if decorated(h) {
                Some("a decorator gets")
            } else if (0..lines.len()).any(|i| !in_function[i] && refers_to(lines, owner, i, name))
            {
                Some("module-level code refers to")
            } else {
                None
            }
        })
        .collect();
    loop {
        let mut changed = false;
        for f in 0..outermost.len() {
            if runs[f].is_some() {
                continue;
            }
            let reached = (0..outermost.len()).any(|g| {
                runs[g].is_some()
                    && (0..lines.len()).any(|i| {
                        owner[i] == Some(outermost[g].0)
                            && refers_to(lines, owner, i, outermost[f].1)
                    })
            });
            if reached {
                runs[f] = Some("a function module-level code runs refers to");
                changed = true;
            }
        }
        if !changed {
            return runs;
        }
    }
}

/// Fails when a target name appears anywhere but as the target of a plain top-level assignment,
/// an attribute (`x.revision`) or a keyword argument (`f(revision=...)`); or when a star import
/// or a dynamic-binding name appears.
fn check_no_dynamic_binding(line: &LogicalLine) -> Result<(), String> {
    let tokens = &line.tokens;
    for (i, token) in tokens.iter().enumerate() {
        let Tok::Name(name) = &token.tok else {
            continue;
        };
        // In `from app.modules.x import y`, names are a module path; what an import binds is
        // checked below like any other binding.
        let import = matches!(line.first_word(), Some("import" | "from"));
        if DYNAMIC.contains(&name.as_str()) && !import {
            return Err(format!(
                "line {}: uses `{name}`, which can set module names",
                token.line
            ));
        }
        if name == "import" && tokens.get(i + 1).is_some_and(|t| t.tok == Tok::Op("*")) {
            return Err(format!(
                "line {}: a star import can bind `revision`",
                token.line
            ));
        }
        if !TARGETS.contains(&name.as_str()) {
            continue;
        }
        let attribute = i > 0 && tokens[i - 1].tok == Tok::Op(".");
        let keyword = token.depth > 0 && tokens.get(i + 1).is_some_and(|t| t.tok == Tok::Op("="));
        let statement_start =
            line.indent == 0 && token.depth == 0 && (i == 0 || tokens[i - 1].tok == Tok::Op(";"));
        // `def f(revision, x: str = ...)`: a parameter binds a local of the function.
        let parameter = line.first_word() == Some("def")
            && token.depth > 0
            && tokens
                .get(i + 1)
                .is_some_and(|t| matches!(t.tok, Tok::Op("," | ")" | ":" | "=")));
        if !(attribute || keyword || statement_start || parameter) {
            return Err(format!(
                "line {}: `{name}` is used other than in a plain top-level assignment",
                token.line
            ));
        }
    }
    Ok(())
}

/// A statement `TARGET = literal` or `TARGET: annotation [= literal]` at the top level:
/// `Some((target index, value))`, the value `None` for a bare annotation (which binds nothing).
fn assignment(
    indent: usize,
    statement: &[Token],
) -> Result<Option<(usize, Option<Value>)>, String> {
    let Some(Token {
        tok: Tok::Name(name),
        line,
        ..
    }) = statement.first()
    else {
        return Ok(None);
    };
    let Some(target) = TARGETS.iter().position(|t| t == name) else {
        return Ok(None);
    };
    let refuse = |why: &str| Err(format!("line {line}: `{name}` {why}"));
    if indent != 0 {
        return refuse("is assigned inside a block");
    }
    let mut rest = &statement[1..];
    match rest.first().map(|t| &t.tok) {
        Some(Tok::Op("=")) => rest = &rest[1..],
        Some(Tok::Op(":")) => {
            // The annotation runs to the first `=` outside its brackets.
            match rest
                .iter()
                .position(|t| t.depth == 0 && t.tok == Tok::Op("="))
            {
                Some(eq) => rest = &rest[eq + 1..],
                None => return Ok(Some((target, None))),
            }
        }
        _ => return refuse("is not assigned with a plain `=`"),
    }
    let mut parser = Literal {
        tokens: rest,
        pos: 0,
    };
    match parser.expression() {
        Some(value) if parser.pos == rest.len() => Ok(Some((target, Some(value)))),
        _ if *name == "branch_labels" => Ok(Some((target, Some(Value::Computed(*line))))),
        _ => refuse("is not a literal string, None, tuple or list of strings"),
    }
}

/// A recursive-descent reader of the literals alembic files use: strings (implicitly
/// concatenated), `None`, tuples and lists of those. `None` for anything else.
struct Literal<'a> {
    tokens: &'a [Token],
    pos: usize,
}

impl Literal<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos).map(|t| &t.tok)
    }

    /// `atom (',' atom)* [',']`: a bare tuple when there is a comma.
    fn expression(&mut self) -> Option<Value> {
        let (items, comma) = self.items(None)?;
        if comma {
            Some(Value::Seq(items))
        } else {
            items.into_iter().next()
        }
    }

    /// Items up to `close` (or the end); whether a comma was seen.
    fn items(&mut self, close: Option<&'static str>) -> Option<(Vec<Value>, bool)> {
        let mut items = Vec::new();
        let mut comma = false;
        loop {
            match self.peek() {
                None if close.is_none() => return Some((items, comma)),
                Some(Tok::Op(op)) if Some(*op) == close => {
                    self.pos += 1;
                    return Some((items, comma));
                }
                _ => {}
            }
            items.push(self.atom()?);
            match self.peek() {
                Some(Tok::Op(",")) => {
                    self.pos += 1;
                    comma = true;
                }
                None if close.is_none() => return Some((items, comma)),
                Some(Tok::Op(op)) if Some(*op) == close => {
                    self.pos += 1;
                    return Some((items, comma));
                }
                _ => return None,
            }
        }
    }

    fn atom(&mut self) -> Option<Value> {
        match self.peek()? {
            Tok::Name(n) if n == "None" => {
                self.pos += 1;
                Some(Value::None)
            }
            Tok::Str { .. } => {
                let mut text = String::new();
                while let Some(Tok::Str { prefix, body }) = self.peek() {
                    text.push_str(&plain_string(prefix, body)?);
                    self.pos += 1;
                }
                Some(Value::Str(text))
            }
            Tok::Op("(") => {
                self.pos += 1;
                let (items, comma) = self.items(Some(")"))?;
                match (items.len(), comma) {
                    (1, false) => items.into_iter().next(),
                    _ => Some(Value::Seq(items)),
                }
            }
            Tok::Op("[") => {
                self.pos += 1;
                let (items, _) = self.items(Some("]"))?;
                Some(Value::Seq(items))
            }
            _ => None,
        }
    }
}

/// The value of a `str` literal with no escapes to decode (raw strings are verbatim); `None` for
/// bytes, f-/t-strings and escapes, which are not worth guessing at in a revision id.
fn plain_string(prefix: &str, body: &str) -> Option<String> {
    let prefix = prefix.to_lowercase();
    let raw = match prefix.as_str() {
        "" | "u" => false,
        "r" => true,
        _ => return None,
    };
    (raw || !body.contains('\\')).then(|| body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn script(revision: &str, down: &[&str], labels: &[&str], depends: &[&str]) -> RevisionScript {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        RevisionScript {
            revision: revision.into(),
            down_revisions: own(down),
            branch_labels: own(labels),
            depends_on: own(depends),
            computed_labels: None,
        }
    }

    /// What `alembic revision -m "create account table"` writes with alembic 1.20's generic
    /// template (script.py.mako).
    const GENERATED: &str = r#""""create account table

Revision ID: 1975ea83b712
Revises: 
Create Date: 2026-12-05 13:00:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '1975ea83b712'
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    pass


def downgrade() -> None:
    """Downgrade schema."""
    pass
"#;

    #[test]
    fn reads_the_file_alembic_generates() {
        assert_eq!(
            read(GENERATED, "1975ea83b712_create.py"),
            Ok(script("1975ea83b712", &[], &[], &[]))
        );
    }

    #[rstest]
    #[case::hex12("revision = 'ae1027a6acf'\ndown_revision = None\n", script("ae1027a6acf", &[], &[], &[]))]
    #[case::custom_rev_id("revision = \"0001_initial\"\ndown_revision = None\n", script("0001_initial", &[], &[], &[]))]
    #[case::date_rev_id("revision = '20261205_1300'\ndown_revision = '20261204_0900'\n", script("20261205_1300", &["20261204_0900"], &[], &[]))]
    #[case::unicode_rev_id("revision = 'révision'\ndown_revision = None\n", script("révision", &[], &[], &[]))]
    #[case::annotated_pep604("revision: str = 'b'\ndown_revision: str | Sequence[str] | None = 'a'\n", script("b", &["a"], &[], &[]))]
    #[case::annotated_union("revision: str = 'b'\ndown_revision: Union[str, None] = \"a\"\n", script("b", &["a"], &[], &[]))]
    #[case::merge_tuple("revision = 'm'\ndown_revision = ('a', 'b')\n", script("m", &["a", "b"], &[], &[]))]
    #[case::merge_list("revision = 'm'\ndown_revision = ['a', 'b',]\n", script("m", &["a", "b"], &[], &[]))]
    #[case::merge_bare_tuple("revision = 'm'\ndown_revision = 'a', 'b'\n", script("m", &["a", "b"], &[], &[]))]
    #[case::merge_multiline("revision = 'm'\ndown_revision = (\n    'a',  # first\n    'b',\n)\n", script("m", &["a", "b"], &[], &[]))]
    #[case::empty_tuple_is_base("revision = 'a'\ndown_revision = ()\n", script("a", &[], &[], &[]))]
    #[case::parenthesised_string("revision = ('a')\ndown_revision = None\n", script("a", &[], &[], &[]))]
    #[case::one_tuple("revision = 'b'\ndown_revision = ('a',)\n", script("b", &["a"], &[], &[]))]
    #[case::branch_label_string("revision = 'a'\ndown_revision = None\nbranch_labels = 'shop'\n", script("a", &[], &["shop"], &[]))]
    #[case::branch_labels_tuple("revision = 'a'\ndown_revision = None\nbranch_labels = ('shop', 'x')\n", script("a", &[], &["shop", "x"], &[]))]
    #[case::depends_on("revision = 'c'\ndown_revision = None\ndepends_on = 'b'\n", script("c", &[], &[], &["b"]))]
    #[case::depends_on_list("revision = 'c'\ndown_revision = None\ndepends_on = ['a', 'shop']\n", script("c", &[], &[], &["a", "shop"]))]
    #[case::double_quotes("revision = \"a\"\ndown_revision = None\n", script("a", &[], &[], &[]))]
    #[case::triple_quotes("revision = '''a'''\ndown_revision = \"\"\"b\"\"\"\n", script("a", &["b"], &[], &[]))]
    #[case::raw_and_unicode_prefixes("revision = r'a'\ndown_revision = u'b'\n", script("a", &["b"], &[], &[]))]
    #[case::implicit_concatenation("revision = 'ab' \"cd\"\ndown_revision = None\n", script("abcd", &[], &[], &[]))]
    #[case::backslash_continuation("revision = \\\n    'a'\ndown_revision = None\n", script("a", &[], &[], &[]))]
    #[case::semicolons("revision = 'a'; down_revision = None\n", script("a", &[], &[], &[]))]
    #[case::last_assignment_wins("revision = 'a'\nrevision = 'b'\ndown_revision = None\n", script("b", &[], &[], &[]))]
    #[case::trailing_comment("revision = 'a'  # the id\ndown_revision = None  # base\n", script("a", &[], &[], &[]))]
    #[case::ids_in_strings_elsewhere("revision = 'a'\ndown_revision = None\nx = \"revision = 'z'\"\n", script("a", &[], &[], &[]))]
    #[case::attribute_and_keyword("revision = 'a'\ndown_revision = None\ndef upgrade():\n    ctx.revision\n    f(revision=1)\n", script("a", &[], &[], &[]))]
    #[case::bare_annotation_binds_nothing("revision: str\nrevision = 'a'\ndown_revision = None\n", script("a", &[], &[], &[]))]
    #[case::crlf("revision = 'a'\r\ndown_revision = None\r\n", script("a", &[], &[], &[]))]
    #[case::fstrings_elsewhere("revision = 'a'\ndown_revision = None\ndef upgrade():\n    op.execute(f\"UPDATE {t} SET x = '{v!r}'\")\n", script("a", &[], &[], &[]))]
    #[case::locals_named_revision_in_functions("revision = 'a'\ndown_revision = None\ndef upgrade():\n    for revision in rows():\n        op.execute('UPDATE t SET r = {}'.format(revision))\n        revision = revision + '!'\n", script("a", &[], &[], &[]))]
    #[case::format_and_concatenation_in_functions("revision = 'a'\ndown_revision = None\ndef upgrade():\n    sql = 'UPDATE ' + TABLE + ' SET v = %s' % down_revision\n    op.execute(f'{sql} -- {revision!r:>{w}}')\n", script("a", &[], &[], &[]))]
    #[case::setattr_and_exec_in_upgrade("revision = 'a'\ndown_revision = None\ndef upgrade():\n    setattr(model, 'x', 1)\n    exec(code)\n    globals()\n", script("a", &[], &[], &[]))]
    #[case::modules_in_an_import_path("from app.modules.billing import models\nimport app.modules.users as users\nrevision = 'a'\ndown_revision = None\n", script("a", &[], &[], &[]))]
    #[case::nested_functions_and_methods("revision = 'a'\ndown_revision = None\nclass Helper:\n    def run(self):\n        def inner():\n            revision = 'z'\n        setattr(self, 'revision', 1)\n", script("a", &[], &[], &[]))]
    fn reads_literal_assignments(#[case] source: &str, #[case] expected: RevisionScript) {
        assert_eq!(read(source, "x.py"), Ok(expected));
    }

    /// A data migration as big projects write them: every kind of string and statement in its
    /// functions, module-level helpers and imports from `app.modules`.
    const DATA_MIGRATION: &str = r#""""backfill invoices

Revision ID: 7f3c2a9b1d04
Revises: 5e1d0c8a7b32, 6a9b8c7d6e54
"""
from datetime import datetime
import re

from alembic import op
import sqlalchemy as sa
from sqlalchemy.sql import table, column
from app.modules.billing.models import Invoice  # noqa
from app.modules import users as user_module

revision = "7f3c2a9b1d04"
down_revision = ("5e1d0c8a7b32", "6a9b8c7d6e54")
branch_labels = None
depends_on = None

TABLE = "invoices"
PATTERN = re.compile(r"\d{2}-\d{4}")
invoices = table(TABLE, column("id", sa.Integer), column("number", sa.String))


def _rename(revision, *, prefix="INV"):
    return f"{prefix}-{revision:0>6}" + "-" + "{}".format(revision)


@sa.event.listens_for(sa.Table, "column_reflect")
def _listener(inspector, table, column_info):
    column_info["key"] = column_info["name"]


def upgrade() -> None:
    bind = op.get_bind()
    for revision, number in bind.execute(sa.text(f"SELECT id, number FROM {TABLE}")):
        if (match := PATTERN.search(number)) is not None:
            op.execute(
                f"""UPDATE {TABLE}
                    SET number = '{_rename(revision)!s}', updated = '{datetime.now():%Y-%m-%d %H:%M}'
                    WHERE id = {revision} -- {{literal braces}} {match["group"] if False else ""}"""
            )
    setattr(Invoice, "migrated", True)
    exec("x = 1", {})
    match bind.dialect.name:
        case "postgresql":
            op.execute("SET LOCAL lock_timeout = '5s'")
        case _:
            pass
    down_revision = "local, not the module's"
    globals_seen = len(globals())


def downgrade() -> None:
    op.execute("UPDATE %s SET number = %s" % (TABLE, "number"))
"#;

    #[test]
    fn a_data_migration_full_of_python_is_read() {
        assert_eq!(
            read(DATA_MIGRATION, "7f3c2a9b1d04_backfill.py"),
            Ok(script(
                "7f3c2a9b1d04",
                &["5e1d0c8a7b32", "6a9b8c7d6e54"],
                &[],
                &[]
            ))
        );
    }

    #[test]
    fn a_computed_branch_labels_is_read_as_unknown_labels() {
        let read = read(
            "revision = 'a'\ndown_revision = None\nbranch_labels = (BRANCH,)\n",
            "x.py",
        );
        assert_eq!(
            read,
            Ok(RevisionScript {
                computed_labels: Some(3),
                ..script("a", &[], &[], &[])
            })
        );
    }

    #[test]
    fn a_file_without_revision_takes_a_hex_name_as_alembic_0_1_did() {
        assert_eq!(
            read("down_revision = None\n", "ab12.py"),
            Ok(script("ab12", &[], &[], &[]))
        );
        assert!(read("down_revision = None\n", "ab12_x.py").is_err());
    }

    #[rstest]
    #[case::computed("revision = 'a' + 'b'\ndown_revision = None\n")]
    #[case::a_name("revision = REV\ndown_revision = None\n")]
    #[case::a_call("revision = str(1)\ndown_revision = None\n")]
    #[case::fstring("revision = f'a'\ndown_revision = None\n")]
    #[case::bytes("revision = b'a'\ndown_revision = None\n")]
    #[case::escape("revision = 'a\\x41'\ndown_revision = None\n")]
    #[case::number("revision = 1\ndown_revision = None\n")]
    #[case::none_revision("revision = None\ndown_revision = None\n")]
    #[case::empty_revision("revision = ''\ndown_revision = None\n")]
    #[case::no_down_revision("revision = 'a'\n")]
    #[case::chained("revision = down_revision = 'a'\n")]
    #[case::unpacking("revision, down_revision = 'a', None\n")]
    #[case::augmented("revision = 'a'\nrevision += 'b'\ndown_revision = None\n")]
    #[case::conditional("revision = 'a'\nif X:\n    revision = 'b'\ndown_revision = None\n")]
    #[case::one_line_if("revision = 'a'\nif X: revision = 'b'\ndown_revision = None\n")]
    #[case::imported("from x import revision\ndown_revision = None\n")]
    #[case::star_import("from x import *\nrevision = 'a'\ndown_revision = None\n")]
    #[case::globals("revision = 'a'\ndown_revision = None\nglobals()['revision'] = 'b'\n")]
    #[case::walrus("revision = 'a'\ndown_revision = None\n(revision := 'b')\n")]
    #[case::global_in_function(
        "revision = 'a'\ndown_revision = None\ndef f():\n    global revision\n"
    )]
    #[case::deleted("revision = 'a'\ndown_revision = None\ndel revision\n")]
    #[case::set_literal("revision = 'b'\ndown_revision = {'a'}\n")]
    #[case::nested_tuple("revision = 'b'\ndown_revision = (('a',),)\n")]
    #[case::none_in_tuple("revision = 'b'\ndown_revision = ('a', None)\n")]
    #[case::duplicate_in_tuple("revision = 'b'\ndown_revision = ('a', 'a')\n")]
    #[case::unterminated("revision = 'a\ndown_revision = None\n")]
    #[case::unbalanced("revision = 'a'\ndown_revision = ('a'\n")]
    #[case::fstring_field_binds(
        "revision = 'a'\ndown_revision = None\nx = f\"{(revision := 'b')}\"\n"
    )]
    #[case::conditional_expression("revision = 'a' if X else 'b'\ndown_revision = None\n")]
    #[case::dynamic_function_called_at_import(
        "revision = 'a'\ndown_revision = None\ndef fix():\n    globals()['revision'] = 'b'\nfix()\n"
    )]
    #[case::dynamic_function_passed_at_import(
        "revision = 'a'\ndown_revision = None\ndef fix():\n    setattr(sys.modules[__name__], 'revision', 'b')\nHOOKS = [fix]\n"
    )]
    #[case::dynamic_function_decorated(
        "revision = 'a'\ndown_revision = None\n@run_now\ndef fix():\n    exec('revision = 1')\n"
    )]
    #[case::dynamic_function_reached_through_another(
        "revision = 'a'\ndown_revision = None\ndef fix():\n    globals()['revision'] = 'b'\ndef setup():\n    fix()\nsetup()\n"
    )]
    #[case::walrus_in_a_default(
        "revision = 'a'\ndown_revision = None\ndef f(x=(revision := 'b')):\n    pass\n"
    )]
    #[case::nonlocal_target(
        "revision = 'a'\ndown_revision = None\ndef f():\n    nonlocal revision\n"
    )]
    #[case::sys_modules_at_import(
        "import sys\nrevision = 'a'\ndown_revision = None\nsys.modules[__name__].revision = 'b'\n"
    )]
    #[case::computed_down_revision("revision = 'b'\ndown_revision = PARENT\n")]
    #[case::computed_depends_on("revision = 'b'\ndown_revision = None\ndepends_on = deps()\n")]
    fn falls_back_rather_than_guess(#[case] source: &str) {
        let result = read(source, "x.py");
        assert!(result.is_err(), "{result:?}");
    }

    mod never_panics {
        use super::super::read;
        use proptest::prelude::*;

        /// Fragments of revision files, so that random sources hit the interesting paths.
        fn fragment() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("revision".to_string()),
                Just("down_revision".to_string()),
                Just(" = ".to_string()),
                Just(": str".to_string()),
                Just("'a'".to_string()),
                Just("\"\"\"".to_string()),
                Just("f'{".to_string()),
                Just("}".to_string()),
                Just("(".to_string()),
                Just(")".to_string()),
                Just(",".to_string()),
                Just("\n".to_string()),
                Just("\\".to_string()),
                Just("#".to_string()),
                Just("None".to_string()),
                Just("    ".to_string()),
                Just(";".to_string()),
                any::<String>(),
            ]
        }

        proptest! {
            #[test]
            fn on_arbitrary_text(source in any::<String>()) {
                let _ = read(&source, "x.py");
            }

            #[test]
            fn on_mixtures_of_revision_file_fragments(parts in proptest::collection::vec(fragment(), 0..40)) {
                let _ = read(&parts.concat(), "x.py");
            }

            /// A successful read names only ids written in the source (give or take the quotes and
            /// spaces of an implicit concatenation): nothing invented.
            #[test]
            fn reads_only_what_is_written(parts in proptest::collection::vec(fragment(), 0..40)) {
                let source = parts.concat();
                let squeeze = |s: &str| s.chars().filter(|c| !c.is_whitespace() && !"'\"\\".contains(*c)).collect::<String>();
                if let Ok(script) = read(&source, "x.py") {
                    prop_assert!(squeeze(&source).contains(&squeeze(&script.revision)));
                    for id in script.down_revisions.iter().chain(&script.depends_on).chain(&script.branch_labels) {
                        prop_assert!(squeeze(&source).contains(&squeeze(id)));
                    }
                }
            }
        }
    }
}
