//! A Python tokenizer just deep enough to find a module's top-level statements: strings of every
//! prefix and quoting (f-string replacement fields included, PEP 701), comments, brackets, line
//! continuations and indentation. It never evaluates anything and never panics; what it cannot
//! tokenize is an error naming the line, which the revision reader turns into a fallback.

/// One token; numbers and other literals the reader never needs are `Other`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    Name(String),
    /// A string literal: its prefix as written (`r`, `f`, `Rb`, ...) and its source text between
    /// the quotes, escapes undecoded.
    Str {
        prefix: String,
        body: String,
    },
    Op(&'static str),
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub tok: Tok,
    /// 1-based source line where the token starts.
    pub line: usize,
    /// How many brackets are open before this token (within its logical line).
    pub depth: usize,
}

/// A logical line: its indentation (in characters) and its tokens.
#[derive(Debug)]
pub struct LogicalLine {
    pub indent: usize,
    pub tokens: Vec<Token>,
}

/// For each logical line, the line that opens the block it is in (a header ending with `:`),
/// found by indentation; `None` at module level.
pub fn block_parents(lines: &[LogicalLine]) -> Vec<Option<usize>> {
    let mut parent = Vec::with_capacity(lines.len());
    let mut open: Vec<usize> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        while open.last().is_some_and(|&h| lines[h].indent >= line.indent) {
            open.pop();
        }
        parent.push(open.last().copied());
        if line.opens_block() {
            open.push(i);
        }
    }
    parent
}

impl LogicalLine {
    /// Ends with `:` outside brackets: the header of a block.
    pub fn opens_block(&self) -> bool {
        self.tokens
            .last()
            .is_some_and(|t| t.depth == 0 && t.tok == Tok::Op(":"))
    }

    /// The statement's keyword or first name (`async` skipped).
    pub fn first_word(&self) -> Option<&str> {
        let mut words = self.tokens.iter().map(|t| match &t.tok {
            Tok::Name(n) => Some(n.as_str()),
            _ => None,
        });
        match words.next()? {
            Some("async") => words.next()?,
            word => word,
        }
    }

    /// `def NAME(...)` / `async def NAME(...)`: NAME.
    pub fn def_name(&self) -> Option<&str> {
        if self.first_word() != Some("def") {
            return None;
        }
        let at = self
            .tokens
            .iter()
            .position(|t| matches!(&t.tok, Tok::Name(n) if n == "def"))?;
        match &self.tokens.get(at + 1)?.tok {
            Tok::Name(n) => Some(n),
            _ => None,
        }
    }
}

/// Longest first, so that maximal munch picks `**=` before `**` before `*`.
const OPERATORS: &[&str] = &[
    "**=", "//=", ">>=", "<<=", "...", "->", ":=", "==", "!=", "<=", ">=", "+=", "-=", "*=", "/=",
    "%=", "&=", "|=", "^=", "@=", "**", "//", "<<", ">>", "+", "-", "*", "/", "%", "@", "&", "|",
    "^", "~", "<", ">", "(", ")", "[", "]", "{", "}", ",", ":", ".", ";", "=", "!",
];

const STRING_PREFIXES: &[&str] = &[
    "", "r", "u", "b", "br", "rb", "f", "fr", "rf", "t", "tr", "rt",
];

/// Why the source could not be tokenized, with the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexError {
    pub line: usize,
    pub why: &'static str,
}

pub fn logical_lines(src: &str) -> Result<Vec<LogicalLine>, LexError> {
    let mut lexer = Lexer {
        chars: src.chars().collect(),
        pos: 0,
        line: 1,
    };
    lexer.run()
}

struct Lexer {
    chars: Vec<char>,
    pos: usize,
    line: usize,
}

impl Lexer {
    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.pos + ahead).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek(0)?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn error(&self, why: &'static str) -> LexError {
        LexError {
            line: self.line,
            why,
        }
    }

    fn run(&mut self) -> Result<Vec<LogicalLine>, LexError> {
        let mut lines = Vec::new();
        let mut current: Option<LogicalLine> = None;
        let mut depth = 0usize;
        let mut at_line_start = true;
        loop {
            if at_line_start && depth == 0 && current.is_none() {
                let mut indent = 0;
                while matches!(self.peek(0), Some(' ' | '\t' | '\x0c')) {
                    self.bump();
                    indent += 1;
                }
                match self.peek(0) {
                    None => break,
                    Some('\n') | Some('\r') => {
                        self.bump();
                        continue;
                    }
                    Some('#') => {
                        self.skip_comment();
                        continue;
                    }
                    Some('\\') => {
                        return Err(self.error("line continuation at the start of a line"));
                    }
                    Some(_) => {
                        current = Some(LogicalLine {
                            indent,
                            tokens: Vec::new(),
                        })
                    }
                }
            }
            at_line_start = false;
            let Some(c) = self.peek(0) else { break };
            match c {
                ' ' | '\t' | '\x0c' | '\r' => {
                    self.bump();
                }
                '#' => self.skip_comment(),
                '\\' => {
                    self.bump();
                    if self.peek(0) == Some('\r') {
                        self.bump();
                    }
                    if self.bump() != Some('\n') {
                        return Err(
                            self.error("backslash outside a string not at the end of a line")
                        );
                    }
                }
                '\n' => {
                    self.bump();
                    if depth == 0 {
                        lines.extend(current.take());
                        at_line_start = true;
                    }
                }
                _ => {
                    let line = self.line;
                    let tok = self.token(&mut depth)?;
                    let tokens = &mut current.as_mut().expect("UNWRAP: a line is open").tokens;
                    Self::push(tokens, tok, line, depth);
                }
            }
        }
        if depth > 0 {
            return Err(self.error("a bracket is never closed"));
        }
        lines.extend(current);
        Ok(lines)
    }

    /// Appends `tok` and, for an f-string, the tokens of its replacement fields.
    fn push(tokens: &mut Vec<Token>, tok: Lexed, line: usize, depth: usize) {
        match tok {
            Lexed::One(tok, before) => tokens.push(Token {
                tok,
                line,
                depth: before.unwrap_or(depth),
            }),
            Lexed::FString(tok, inner) => {
                tokens.push(Token { tok, line, depth });
                tokens.extend(inner);
            }
        }
    }

    fn skip_comment(&mut self) {
        while let Some(c) = self.peek(0) {
            if c == '\n' {
                break;
            }
            self.bump();
        }
    }

    /// One token at the current position (not whitespace, comment or newline). `depth` is the
    /// bracket depth, updated for brackets.
    fn token(&mut self, depth: &mut usize) -> Result<Lexed, LexError> {
        let c = self
            .peek(0)
            .ok_or_else(|| self.error("unexpected end of file"))?;
        if c == '"' || c == '\'' {
            return self.string(String::new(), *depth);
        }
        if c.is_alphabetic() || c == '_' {
            let mut name = String::new();
            while let Some(c) = self.peek(0) {
                if c.is_alphanumeric() || c == '_' {
                    name.push(c);
                    self.bump();
                } else {
                    break;
                }
            }
            if matches!(self.peek(0), Some('"' | '\'')) {
                if STRING_PREFIXES.contains(&name.to_lowercase().as_str()) {
                    return self.string(name, *depth);
                }
                return Err(self.error("a name directly followed by a quote"));
            }
            return Ok(Lexed::One(Tok::Name(name), None));
        }
        if c.is_ascii_digit() || (c == '.' && self.peek(1).is_some_and(|d| d.is_ascii_digit())) {
            while let Some(c) = self.peek(0) {
                if c.is_alphanumeric() || c == '_' || c == '.' {
                    self.bump();
                } else {
                    break;
                }
            }
            return Ok(Lexed::One(Tok::Other, None));
        }
        for op in OPERATORS {
            if op
                .chars()
                .enumerate()
                .all(|(i, oc)| self.peek(i) == Some(oc))
            {
                for _ in 0..op.chars().count() {
                    self.bump();
                }
                let before = *depth;
                match *op {
                    "(" | "[" | "{" => *depth += 1,
                    ")" | "]" | "}" => {
                        *depth = depth
                            .checked_sub(1)
                            .ok_or_else(|| self.error("a closing bracket with no opening one"))?;
                        return Ok(Lexed::One(Tok::Op(op), Some(*depth)));
                    }
                    _ => {}
                }
                return Ok(Lexed::One(Tok::Op(op), Some(before)));
            }
        }
        Err(self.error("a character Python does not accept here"))
    }

    /// A string literal starting at the opening quote, `prefix` already consumed.
    fn string(&mut self, prefix: String, depth: usize) -> Result<Lexed, LexError> {
        let lower = prefix.to_lowercase();
        let formatted = lower.contains('f') || lower.contains('t');
        let quote = self.bump().expect("UNWRAP: called at a quote");
        let triple = self.peek(0) == Some(quote) && self.peek(1) == Some(quote);
        if triple {
            self.bump();
            self.bump();
        }
        let mut body = String::new();
        let mut inner = Vec::new();
        loop {
            let Some(c) = self.bump() else {
                return Err(self.error("a string is never closed"));
            };
            if c == quote {
                if !triple {
                    break;
                }
                if self.peek(0) == Some(quote) && self.peek(1) == Some(quote) {
                    self.bump();
                    self.bump();
                    break;
                }
                body.push(c);
                continue;
            }
            match c {
                '\n' if !triple => return Err(self.error("a string is never closed")),
                '\\' => {
                    body.push(c);
                    // Escaped (in raw strings: shielded) next character, newline included; in an
                    // f-string a `{` after a backslash still opens a field, and `\N{NAME}` is
                    // one escape.
                    match self.peek(0) {
                        Some('{' | '}') if formatted => {}
                        Some('N')
                            if formatted && !lower.contains('r') && self.peek(1) == Some('{') =>
                        {
                            while let Some(next) = self.bump() {
                                body.push(next);
                                if next == '}' || next == '\n' {
                                    break;
                                }
                            }
                        }
                        Some(_) => body.extend(self.bump()),
                        None => {}
                    }
                }
                '{' if formatted => {
                    if self.peek(0) == Some('{') {
                        self.bump();
                        body.push_str("{{");
                    } else {
                        body.push('{');
                        self.replacement_field(&mut inner, depth)?;
                    }
                }
                _ => body.push(c),
            }
        }
        let tok = Tok::Str { prefix, body };
        if formatted {
            Ok(Lexed::FString(tok, inner))
        } else {
            Ok(Lexed::One(tok, None))
        }
    }

    /// An f-string `{...}` field after its `{`: an expression, then `!conv`, then `:spec` (which
    /// may hold nested fields), up to the matching `}`.
    fn replacement_field(&mut self, out: &mut Vec<Token>, outer: usize) -> Result<(), LexError> {
        let mut depth = 0usize;
        loop {
            let c = self
                .peek(0)
                .ok_or_else(|| self.error("an f-string field is never closed"))?;
            match c {
                ' ' | '\t' | '\x0c' | '\r' | '\n' => {
                    self.bump();
                }
                '#' => self.skip_comment(),
                '}' if depth == 0 => {
                    self.bump();
                    return Ok(());
                }
                ':' if depth == 0 && self.peek(1) != Some('=') => {
                    self.bump();
                    return self.format_spec(out, outer);
                }
                '!' if depth == 0 && self.peek(1) != Some('=') => {
                    // A conversion (`!r`): its letter is not a name.
                    self.bump();
                    while self.peek(0).is_some_and(|c| c.is_alphanumeric()) {
                        self.bump();
                    }
                }
                _ => {
                    let line = self.line;
                    let tok = self.token(&mut depth)?;
                    Self::push(out, tok, line, outer + 1 + depth);
                }
            }
        }
    }

    fn format_spec(&mut self, out: &mut Vec<Token>, outer: usize) -> Result<(), LexError> {
        loop {
            match self.bump() {
                None => return Err(self.error("an f-string format spec is never closed")),
                Some('}') => return Ok(()),
                Some('{') => self.replacement_field(out, outer)?,
                Some(_) => {}
            }
        }
    }
}

enum Lexed {
    /// A token, with the depth to record when it differs from the depth after it (brackets).
    One(Tok, Option<usize>),
    /// An f-string and the tokens of its replacement fields.
    FString(Tok, Vec<Token>),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(src: &str) -> Vec<String> {
        logical_lines(src)
            .expect("lexes")
            .into_iter()
            .flat_map(|l| l.tokens)
            .filter_map(|t| match t.tok {
                Tok::Name(n) => Some(n),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn names_inside_strings_and_comments_are_not_names() {
        let src =
            "x = 'revision' # revision\ny = \"\"\"\nrevision = 1\n\"\"\"\nz = r'\\'revision'\n";
        assert_eq!(names(src), ["x", "y", "z"]);
    }

    #[test]
    fn names_inside_fstring_fields_are_names_including_pep701_nesting() {
        let src = "a = f\"{revision!r:>{width}} {{not}} {d[\"k\"]}\"\n";
        assert_eq!(names(src), ["a", "revision", "width", "d"]);
    }

    #[test]
    fn brackets_and_backslashes_join_lines_and_indentation_is_kept() {
        let lines =
            logical_lines("a = (1,\n  2)\nb = 1 + \\\n  2\ndef f():\n    c = 3\n").expect("lexes");
        let shape: Vec<(usize, usize)> = lines.iter().map(|l| (l.indent, l.tokens.len())).collect();
        assert_eq!(shape, [(0, 7), (0, 5), (0, 5), (4, 3)]);
    }

    #[test]
    fn unterminated_strings_and_brackets_are_errors() {
        assert!(logical_lines("a = 'x\n").is_err());
        assert!(logical_lines("a = (1,\n").is_err());
        assert!(logical_lines("a = \"\"\"x\n").is_err());
        assert!(logical_lines("a = )\n").is_err());
        assert!(logical_lines("a = x'y'\n").is_err());
    }
}
