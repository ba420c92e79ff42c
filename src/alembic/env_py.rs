//! `env.py` read without running it, for what decides "at head": which version table the one
//! online `context.configure(...)` names (`version_table`, `version_table_schema` as literals),
//! and whether the file migrates exactly once, in one place. Anything roadie cannot be sure of
//! is an `Err` naming the line and why, and alembic runs to decide: never a guess.
//!
//! The online path is every statement except the branch of `if context.is_offline_mode():`
//! that runs offline, and the functions only that branch calls (roadie never runs `--sql`).

use super::python::{self, LogicalLine, Tok, Token};

/// What `env.py` says about the version table (`None`: alembic's default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvSettings {
    /// `version_table="..."`, with its line.
    pub version_table: Option<(String, usize)>,
    /// `version_table_schema="..."`, with its line.
    pub version_table_schema: Option<(String, usize)>,
    /// Why the table cannot be known statically (a computed value, `**kwargs`), with its line:
    /// alembic must run to decide, unless `--alembic-version-table` says where it is.
    pub table_unknown: Option<String>,
    /// The line of `context.configure(..., **conf_args)` where `conf_args` is Flask-Migrate's
    /// `current_app.extensions['migrate'].configure_args`: the keywords of `Migrate(...)` in
    /// the app, which `flask::check_app_sources` looks at.
    pub flask_configure_args: Option<usize>,
}

/// Names whose presence on the online path means the revisions or the table are decided at
/// run time, with the reason shown in the fallback line.
const RUN_TIME: &[(&str, &str)] = &[
    (
        "get_x_argument",
        "reads alembic's -x arguments (get_x_argument), which decide at run time",
    ),
    (
        "script_location",
        "names script_location: env.py may move the revisions at run time",
    ),
    (
        "version_locations",
        "names version_locations: env.py may move the revisions at run time",
    ),
    ("exec", "runs code roadie cannot read (exec)"),
    ("eval", "runs code roadie cannot read (eval)"),
];

/// The two calls that migrate: each must happen exactly once on the online path.
const CALLS: [&str; 2] = ["configure", "run_migrations"];

/// Reads `source`, the text of `env.py`; `Err` is the reason (with its line) to run alembic.
pub fn read(source: &str) -> Result<EnvSettings, String> {
    let lines = python::logical_lines(source)
        .map_err(|e| format!("line {}: cannot be read as Python ({})", e.line, e.why))?;
    let outline = Outline::new(&lines);
    let counted = outline.online();
    let mut sites: [Vec<(usize, usize)>; 2] = Default::default();
    for (i, line) in lines.iter().enumerate().filter(|(i, _)| counted[*i]) {
        for (t, token) in line.tokens.iter().enumerate() {
            let (text, is_name) = match &token.tok {
                Tok::Name(n) => (n.as_str(), true),
                Tok::Str { body, .. } => (body.as_str(), false),
                _ => continue,
            };
            if let Some((_, why)) = RUN_TIME.iter().find(|(n, _)| *n == text) {
                return Err(format!("line {}: {why}", token.line));
            }
            let Some(kind) = CALLS.iter().position(|c| *c == text) else {
                continue;
            };
            let called = line
                .tokens
                .get(t + 1)
                .is_some_and(|n| n.tok == Tok::Op("("));
            if !is_name || !called {
                return Err(format!(
                    "line {}: context.{text} is used other than by calling it",
                    token.line
                ));
            }
            if let Some(why) = outline.repeated(i, t) {
                return Err(format!(
                    "line {}: context.{text}(...) {why}: one version table says nothing of the \
                     others",
                    token.line
                ));
            }
            sites[kind].push((i, t));
        }
    }
    for (kind, found) in sites.iter().enumerate() {
        let name = CALLS[kind];
        if found.is_empty() {
            return Err(format!(
                "no context.{name}(...) call roadie can see on the online path"
            ));
        }
        // Several calls are one run only when each is in its own branch of one `if`.
        if let Some((a, b)) = outline.not_exclusive(found, &counted) {
            return Err(format!(
                "lines {} and {}: more than one context.{name}(...) call on the online \
                 path: one version table says nothing of the others",
                lines[a.0].tokens[a.1].line, lines[b.0].tokens[b.1].line
            ));
        }
    }
    outline.check_migrating_functions_run_once(&sites, &counted)?;
    let flask = configure_args_names(&lines);
    let mut settings = sites[0]
        .iter()
        .map(|&(line, at)| (line, keyword_arguments(&lines[line].tokens, at, &flask)));
    let (first_line, first) = settings.next().expect("UNWRAP: one site at least");
    if let Some((other, _)) = settings.find(|(_, s)| *s != first) {
        return Err(format!(
            "lines {} and {}: the context.configure(...) calls of two branches name different \
             version tables",
            lines[first_line].tokens[0].line, lines[other].tokens[0].line
        ));
    }
    Ok(first)
}

/// The block structure of a file: for each logical line, the header of the block it is in.
struct Outline<'a> {
    lines: &'a [LogicalLine],
    parent: Vec<Option<usize>>,
    /// For each line: in code that runs only offline (`if context.is_offline_mode():`).
    offline: Vec<bool>,
}

impl<'a> Outline<'a> {
    fn new(lines: &'a [LogicalLine]) -> Self {
        let parent = python::block_parents(lines);
        let mut outline = Outline {
            lines,
            parent,
            offline: vec![false; lines.len()],
        };
        outline.mark_offline();
        outline
    }

    /// The headers of the blocks line `i` is in, innermost first.
    fn ancestors(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        std::iter::successors(self.parent[i], |&h| self.parent[h])
    }

    /// The lines of the block that header `h` opens.
    fn body(&self, h: usize) -> impl Iterator<Item = usize> + '_ {
        (h + 1..self.lines.len()).take_while(move |&j| self.ancestors(j).any(|a| a == h))
    }

    /// `if [not] context.is_offline_mode():` and its `else:` directly after: the offline one
    /// of the two bodies is marked. Any other use of `is_offline_mode` marks nothing (both
    /// sides then count, which can only make roadie fall back).
    fn mark_offline(&mut self) {
        for h in 0..self.lines.len() {
            let Some(negated) = offline_test(&self.lines[h]) else {
                continue;
            };
            let body: Vec<usize> = self.body(h).collect();
            let after = body.last().map_or(h + 1, |&b| b + 1);
            let is_else = self.lines.get(after).is_some_and(|l| {
                l.indent == self.lines[h].indent
                    && self.parent[after] == self.parent[h]
                    && l.first_word() == Some("else")
            });
            let offline: Vec<usize> = if !negated {
                body
            } else if is_else {
                self.body(after).collect()
            } else {
                Vec::new()
            };
            for j in offline {
                self.offline[j] = true;
            }
        }
    }

    /// The functions defined in the file: (name, header line).
    fn functions(&self) -> Vec<(&'a str, usize)> {
        self.lines
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.def_name().map(|n| (n, i)))
            .collect()
    }

    /// Where `name` is referenced, other than in its own `def` headers: (line, token).
    fn references(&self, name: &str) -> Vec<(usize, usize)> {
        let mut refs = Vec::new();
        for (i, line) in self.lines.iter().enumerate() {
            let own_def = line.def_name() == Some(name);
            for (t, token) in line.tokens.iter().enumerate() {
                if matches!(&token.tok, Tok::Name(n) if n == name)
                    && !(own_def && t > 0 && line.tokens[t - 1].tok == Tok::Name("def".into()))
                {
                    refs.push((i, t));
                }
            }
        }
        refs
    }

    /// For each line, whether it runs online: not offline, and not inside a function that only
    /// offline code refers to (a function nothing refers to still counts: it may be called in
    /// ways roadie does not see).
    fn online(&self) -> Vec<bool> {
        let functions = self.functions();
        let refs: Vec<Vec<(usize, usize)>> = functions
            .iter()
            .map(|(name, _)| self.references(name))
            .collect();
        let mut excluded = vec![false; functions.len()];
        let skipped = |excluded: &[bool], i: usize| {
            self.offline[i]
                || self.ancestors(i).any(|h| {
                    functions
                        .iter()
                        .zip(excluded)
                        .any(|((_, d), x)| *x && *d == h)
                })
        };
        loop {
            let mut changed = false;
            for f in 0..functions.len() {
                if !excluded[f]
                    && !refs[f].is_empty()
                    && refs[f].iter().all(|&(i, _)| skipped(&excluded, i))
                {
                    excluded[f] = true;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        (0..self.lines.len())
            .map(|i| !skipped(&excluded, i))
            .collect()
    }

    /// Why the code at (line `i`, token `t`) may run more than once: inside a loop or a
    /// comprehension, or passed to `map`.
    fn repeated(&self, i: usize, t: usize) -> Option<String> {
        if let Some(h) = self
            .ancestors(i)
            .find(|&h| matches!(self.lines[h].first_word(), Some("for" | "while")))
        {
            return Some(format!(
                "runs inside the loop of line {}",
                self.lines[h].tokens[0].line
            ));
        }
        let tokens = &self.lines[i].tokens;
        let depth = tokens[t].depth;
        let in_comprehension = tokens
            .iter()
            .any(|x| x.depth > 0 && x.depth <= depth && x.tok == Tok::Name("for".into()));
        let mapped = tokens.iter().any(|x| x.tok == Tok::Name("map".into()));
        (in_comprehension || mapped).then(|| "runs once per item of a comprehension or map".into())
    }

    /// A function that (directly or through others) calls `configure` or `run_migrations`
    /// must be referred to once on the online path, outside any loop.
    fn check_migrating_functions_run_once(
        &self,
        sites: &[Vec<(usize, usize)>; 2],
        online: &[bool],
    ) -> Result<(), String> {
        let functions = self.functions();
        let contains = |f: usize, i: usize| self.ancestors(i).any(|h| h == functions[f].1);
        let mut migrating: Vec<bool> = functions
            .iter()
            .enumerate()
            .map(|(f, _)| sites.iter().flatten().any(|&(i, _)| contains(f, i)))
            .collect();
        loop {
            let mut changed = false;
            for f in 0..functions.len() {
                if migrating[f] {
                    continue;
                }
                let calls_one = (0..functions.len()).any(|g| {
                    migrating[g]
                        && self
                            .references(functions[g].0)
                            .iter()
                            .any(|&(i, _)| contains(f, i))
                });
                if calls_one {
                    migrating[f] = true;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        for (f, (name, _)) in functions.iter().enumerate() {
            if !migrating[f] {
                continue;
            }
            let refs: Vec<(usize, usize)> = self
                .references(name)
                .into_iter()
                .filter(|&(i, _)| online[i])
                .collect();
            if let Some((first, second)) = self.not_exclusive(&refs, online) {
                return Err(format!(
                    "lines {} and {} both run {name}(), which migrates: more than one migration \
                     run on the online path",
                    self.lines[first.0].tokens[first.1].line,
                    self.lines[second.0].tokens[second.1].line
                ));
            }
            for &(i, t) in &refs {
                if let Some(why) = self.repeated(i, t) {
                    return Err(format!(
                        "line {}: {name}(), which migrates, {why}: one version table says \
                         nothing of the others",
                        self.lines[i].tokens[t].line
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Outline<'_> {
    /// The `if` whose chain (`if`, `elif`s, `else`) header `h` opens a branch of.
    fn chain_of(&self, h: usize) -> Option<usize> {
        match self.lines[h].first_word()? {
            "if" => Some(h),
            "elif" | "else" => {
                let previous = (0..h).rev().find(|&j| {
                    self.parent[j] == self.parent[h] && self.lines[j].indent == self.lines[h].indent
                })?;
                self.chain_of(previous)
            }
            _ => None,
        }
    }

    /// The branches (`(chain, header)`) line `i` runs under: its own enclosing ones, and those
    /// of the one online place that calls the function it is in (and so on up).
    fn branches(&self, i: usize, online: &[bool], depth: usize) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for h in self.ancestors(i) {
            if let Some(chain) = self.chain_of(h) {
                out.push((chain, h));
            }
            let Some(name) = self.lines[h].def_name() else {
                continue;
            };
            let callers: Vec<(usize, usize)> = self
                .references(name)
                .into_iter()
                .filter(|&(r, _)| online[r])
                .collect();
            if let ([(caller, _)], true) = (callers.as_slice(), depth < 8) {
                out.extend(self.branches(*caller, online, depth + 1));
            }
        }
        out
    }

    /// Two of `places` that can both run in one pass (not in different branches of one `if`).
    fn not_exclusive(
        &self,
        places: &[(usize, usize)],
        online: &[bool],
    ) -> Option<((usize, usize), (usize, usize))> {
        let branches: Vec<Vec<(usize, usize)>> = places
            .iter()
            .map(|&(i, _)| self.branches(i, online, 0))
            .collect();
        for a in 0..places.len() {
            for b in a + 1..places.len() {
                let exclusive = branches[a]
                    .iter()
                    .any(|(ca, ha)| branches[b].iter().any(|(cb, hb)| ca == cb && ha != hb));
                if !exclusive {
                    return Some((places[a], places[b]));
                }
            }
        }
        None
    }
}

/// `if [not] context.is_offline_mode():` → `Some(negated)`.
fn offline_test(line: &LogicalLine) -> Option<bool> {
    let toks: Vec<&Tok> = line.tokens.iter().map(|t| &t.tok).collect();
    if toks.first() != Some(&&Tok::Name("if".into())) || !line.opens_block() {
        return None;
    }
    let negated = toks.get(1) == Some(&&Tok::Name("not".into()));
    let start = if negated { 2 } else { 1 };
    let n = toks.len();
    let tail_ok = n >= start + 4
        && *toks[n - 4] == Tok::Name("is_offline_mode".into())
        && *toks[n - 3] == Tok::Op("(")
        && *toks[n - 2] == Tok::Op(")");
    let receiver_ok = tail_ok
        && toks[start..n - 4]
            .iter()
            .all(|t| matches!(t, Tok::Name(_) | Tok::Op(".")));
    (tail_ok && receiver_ok).then_some(negated)
}

/// The `version_table` and `version_table_schema` keywords of the call whose name is token
/// `at` of `tokens`; what they cannot be read as is `table_unknown`.
fn keyword_arguments(tokens: &[Token], at: usize, flask_names: &[&str]) -> EnvSettings {
    let open = &tokens[at + 1];
    let inner = open.depth + 1;
    let end = tokens[at + 2..]
        .iter()
        .position(|t| t.depth == open.depth && t.tok == Tok::Op(")"))
        .map_or(tokens.len(), |p| at + 2 + p);
    let mut settings = EnvSettings::default();
    for arg in tokens[at + 2..end].split(|t| t.depth == inner && t.tok == Tok::Op(",")) {
        let Some(first) = arg.first() else { continue };
        let unknown = |why: String| Some(format!("line {}: {why}", first.line));
        let flask = arg.len() == 2
            && first.tok == Tok::Op("**")
            && matches!(&arg[1].tok, Tok::Name(n) if flask_names.contains(&n.as_str()));
        if flask {
            settings.flask_configure_args = Some(first.line);
            continue;
        }
        if let Tok::Op(star @ ("**" | "*")) = first.tok {
            settings.table_unknown = unknown(format!(
                "context.configure(...) takes arguments roadie cannot see ({star}...), which \
                 may name the version table"
            ));
            continue;
        }
        let (Tok::Name(name), Some(eq)) = (&first.tok, arg.get(1)) else {
            continue;
        };
        let slot = match name.as_str() {
            "version_table" => &mut settings.version_table,
            "version_table_schema" => &mut settings.version_table_schema,
            _ => continue,
        };
        if eq.tok != Tok::Op("=") {
            continue;
        }
        let value = &arg[2..];
        let schema_none = name == "version_table_schema"
            && value.len() == 1
            && value[0].tok == Tok::Name("None".into());
        match literal(value) {
            _ if schema_none => {}
            Some(text) if plain_identifier(&text) => *slot = Some((text, first.line)),
            Some(text) => {
                settings.table_unknown = unknown(format!(
                    "{name}={text:?} is not a plain SQL identifier roadie can query"
                ))
            }
            None => {
                settings.table_unknown = unknown(format!(
                    "{name} is not a literal string, so only Python knows the table"
                ))
            }
        }
    }
    if settings.table_unknown.is_some() {
        settings.version_table = None;
        settings.version_table_schema = None;
    }
    settings
}

/// Names bound once, by a plain `NAME = ....configure_args` (Flask-Migrate's env.py), and never
/// otherwise assigned.
fn configure_args_names(lines: &[LogicalLine]) -> Vec<&str> {
    let mut names = Vec::new();
    for line in lines {
        let t = &line.tokens;
        let binds = t.len() > 3
            && t[1].tok == Tok::Op("=")
            && t.last()
                .is_some_and(|x| x.tok == Tok::Name("configure_args".into()))
            && t[t.len() - 2].tok == Tok::Op(".");
        if let (true, Tok::Name(name)) = (binds, &t[0].tok) {
            names.push(name.as_str());
        }
    }
    names.retain(|name| {
        let bindings = lines
            .iter()
            .filter(|l| {
                matches!(&l.tokens.first().map(|t| &t.tok), Some(Tok::Name(n)) if n == name)
                    && l.tokens.get(1).is_some_and(
                        |t| matches!(t.tok, Tok::Op(op) if op.ends_with('=') && op != "=="),
                    )
            })
            .count();
        bindings == 1
    });
    names
}

/// A string literal (implicitly concatenated, no escapes, no f-string) as Python reads it.
fn literal(tokens: &[Token]) -> Option<String> {
    let mut text = String::new();
    for token in tokens {
        let Tok::Str { prefix, body } = &token.tok else {
            return None;
        };
        let raw = match prefix.to_lowercase().as_str() {
            "" | "u" => false,
            "r" => true,
            _ => return None,
        };
        if !raw && body.contains('\\') {
            return None;
        }
        text.push_str(body);
    }
    (!tokens.is_empty()).then_some(text)
}

/// Letters, digits and `_`, not starting with a digit (what `--alembic-version-table` takes).
fn plain_identifier(text: &str) -> bool {
    !text.is_empty()
        && !text.starts_with(|c: char| c.is_ascii_digit())
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests;
