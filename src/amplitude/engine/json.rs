//! A small, careful JSON reader that keeps the raw text of number tokens.
//!
//! Why our own reader: the engine must classify numbers from their raw spelling (spec §3: `1e3` is an
//! Int, `13.0` a Double) and serde_json only exposes raw text with the global `arbitrary_precision`
//! feature, which breaks untagged deserialisation elsewhere in the crate. A ~200-line recursive reader
//! with a depth limit is simpler to audit than adding a streaming crate.
//!
//! Accepted syntax is strict RFC 8259 JSON, except that number tokens are read as any run of
//! `[0-9+\-.eE]` and then validated by the engine's classification (kotlinx lenient mode accepts more
//! spellings such as `01` or `1.`). Unquoted words other than `true`/`false`/`null` are rejected.

use std::borrow::Cow;
use std::cell::Cell;

use super::value::{classify_number, map_with_capacity, Map, Value};

/// Maximum nesting of arrays/objects; deeper input is rejected so hostile input cannot overflow the stack.
pub const MAX_DEPTH: usize = 128;

/// A parse failure with the byte offset where it was detected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON at byte {offset}: {message}")]
pub struct JsonError {
    /// Byte offset in the input.
    pub offset: usize,
    /// What went wrong.
    pub message: &'static str,
}

/// A borrowed JSON tree whose numbers keep their raw text.
#[derive(Debug, Clone, PartialEq)]
pub enum Node<'a> {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// A number token, raw text.
    Number(&'a str),
    /// A string (borrowed when it has no escapes).
    Str(Cow<'a, str>),
    /// An array.
    Array(Vec<Node<'a>>),
    /// An object, in document order (duplicates kept; consumers apply last-wins).
    Object(Vec<(Cow<'a, str>, Node<'a>)>),
}

impl<'a> Node<'a> {
    /// Looks up the last occurrence of `key` in an object node.
    pub fn get(&self, key: &str) -> Option<&Node<'a>> {
        match self {
            Node::Object(entries) => entries.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Parses one complete JSON document (surrounding whitespace allowed).
pub fn parse(bytes: &[u8]) -> Result<Node<'_>, JsonError> {
    parse_with(bytes, false)
}

/// Parses with kotlinx's lenient extras used by `coerceStringList` (spec §4.2): unquoted tokens
/// (values and object keys) are accepted and returned as [`Node::Number`] with their raw text, to be
/// classified by the caller (booleans ignoring case, `null`, numbers, anything else null).
pub fn parse_lenient(bytes: &[u8]) -> Result<Node<'_>, JsonError> {
    parse_with(bytes, true)
}

/// Parses one complete JSON document straight into a [`Value`] (strict syntax, numbers
/// classified from their raw text as spec §3 says); same acceptance and depth limit as [`parse`].
///
/// Why a second entry point: building a [`Node`] tree and converting it afterwards allocated
/// every container and string twice, and request contexts are parsed on every request. Object
/// entries are gathered on one scratch stack shared by all levels, so each map is allocated
/// once, at its final size.
pub fn parse_value(bytes: &[u8]) -> Result<Value, JsonError> {
    let mut r = Reader::new(bytes, false)?;
    // `try_with`: no panic if called while the thread's locals are being torn down.
    let mut scratch = SCRATCH.try_with(Cell::take).unwrap_or_default();
    r.ws();
    let value = r.value_direct(0, &mut scratch);
    // Entries of objects left open by an error are dropped here.
    scratch.clear();
    if scratch.capacity() <= SCRATCH_KEEP {
        let _ = SCRATCH.try_with(|cell| cell.set(scratch));
    }
    let value = value?;
    r.ws();
    if r.i != r.b.len() {
        return Err(r.err("trailing characters"));
    }
    Ok(value)
}

thread_local! {
    /// [`parse_value`]'s entry stack, kept per thread between calls: growing a new one for
    /// every request context cost four allocations and copies (~2k instructions).
    static SCRATCH: Cell<Scratch> = const { Cell::new(Vec::new()) };
}

/// Largest scratch capacity (entries) kept between calls; a bigger one (a huge document) is
/// freed rather than held by the thread.
const SCRATCH_KEEP: usize = 256;

fn parse_with(bytes: &[u8], lenient: bool) -> Result<Node<'_>, JsonError> {
    let mut r = Reader::new(bytes, lenient)?;
    r.ws();
    let node = r.value(0)?;
    r.ws();
    if r.i != r.b.len() {
        return Err(r.err("trailing characters"));
    }
    Ok(node)
}

struct Reader<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    lenient: bool,
}

/// Object entries waiting for their map, innermost object on top.
type Scratch = Vec<(String, Value)>;

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], lenient: bool) -> Result<Reader<'a>, JsonError> {
        let text = std::str::from_utf8(bytes).map_err(|e| JsonError {
            offset: e.valid_up_to(),
            message: "input is not UTF-8",
        })?;
        Ok(Reader {
            s: text,
            b: bytes,
            i: 0,
            lenient,
        })
    }

    fn err(&self, message: &'static str) -> JsonError {
        JsonError {
            offset: self.i,
            message,
        }
    }

    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<Node<'a>, JsonError> {
        match self.b.get(self.i) {
            None => Err(self.err("unexpected end of input")),
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => Ok(Node::Str(self.string()?)),
            Some(_) if self.lenient => self.unquoted().map(Node::Number),
            Some(b't') => self.word("true", Node::Bool(true)),
            Some(b'f') => self.word("false", Node::Bool(false)),
            Some(b'n') => self.word("null", Node::Null),
            Some(c) if c.is_ascii_digit() || *c == b'-' => Ok(Node::Number(self.number())),
            Some(_) => Err(self.err("unexpected character")),
        }
    }

    /// [`Reader::value`] for [`parse_value`]: strict syntax, building the value directly.
    fn value_direct(&mut self, depth: usize, scratch: &mut Scratch) -> Result<Value, JsonError> {
        match self.b.get(self.i) {
            None => Err(self.err("unexpected end of input")),
            Some(b'{') => self.object_direct(depth + 1, scratch),
            Some(b'[') => self.array_direct(depth + 1, scratch),
            Some(b'"') => Ok(Value::String(self.string()?.into_owned())),
            Some(b't') => self.word("true", Value::Bool(true)),
            Some(b'f') => self.word("false", Value::Bool(false)),
            Some(b'n') => self.word("null", Value::Null),
            Some(c) if c.is_ascii_digit() || *c == b'-' => {
                let start = self.i;
                let text = self.number();
                classify_number(text).ok_or(JsonError {
                    offset: start,
                    message: "invalid number",
                })
            }
            Some(_) => Err(self.err("unexpected character")),
        }
    }

    fn array_direct(&mut self, depth: usize, scratch: &mut Scratch) -> Result<Value, JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        self.i += 1;
        let mut items = Vec::new();
        self.ws();
        if self.b.get(self.i) == Some(&b']') {
            self.i += 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.ws();
            items.push(self.value_direct(depth, scratch)?);
            self.ws();
            match self.b.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.err("expected ',' or ']'")),
            }
        }
    }

    /// Entries go on `scratch` above `base` and become one exactly-sized map at `}`. Duplicate
    /// keys: `Map::insert` keeps the first position and the last value, as [`Value`] says.
    fn object_direct(&mut self, depth: usize, scratch: &mut Scratch) -> Result<Value, JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        self.i += 1;
        let base = scratch.len();
        self.ws();
        if self.b.get(self.i) == Some(&b'}') {
            self.i += 1;
            return Ok(Value::Object(Map::default()));
        }
        loop {
            self.ws();
            if self.b.get(self.i) != Some(&b'"') {
                return Err(self.err("expected object key"));
            }
            let key = self.string()?.into_owned();
            self.ws();
            if self.b.get(self.i) != Some(&b':') {
                return Err(self.err("expected ':'"));
            }
            self.i += 1;
            self.ws();
            let value = self.value_direct(depth, scratch)?;
            scratch.push((key, value));
            self.ws();
            match self.b.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    let mut map = map_with_capacity(scratch.len() - base);
                    map.extend(scratch.drain(base..));
                    return Ok(Value::Object(map));
                }
                _ => return Err(self.err("expected ',' or '}'")),
            }
        }
    }

    fn word<T>(&mut self, w: &str, node: T) -> Result<T, JsonError> {
        if self.b[self.i..].starts_with(w.as_bytes()) {
            self.i += w.len();
            Ok(node)
        } else {
            Err(self.err("invalid literal"))
        }
    }

    /// A lenient unquoted token: everything up to whitespace or a structural character.
    fn unquoted(&mut self) -> Result<&'a str, JsonError> {
        let start = self.i;
        while self.i < self.b.len()
            && !matches!(
                self.b[self.i],
                b' ' | b'\t' | b'\n' | b'\r' | b',' | b':' | b'{' | b'}' | b'[' | b']' | b'"'
            )
        {
            self.i += 1;
        }
        if self.i == start {
            return Err(self.err("unexpected character"));
        }
        Ok(&self.s[start..self.i])
    }

    /// A number token's raw text (classified by the caller).
    fn number(&mut self) -> &'a str {
        let start = self.i;
        while self.i < self.b.len()
            && matches!(
                self.b[self.i],
                b'0'..=b'9' | b'+' | b'-' | b'.' | b'e' | b'E'
            )
        {
            self.i += 1;
        }
        &self.s[start..self.i]
    }

    fn array(&mut self, depth: usize) -> Result<Node<'a>, JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        self.i += 1;
        let mut items = Vec::new();
        self.ws();
        if self.b.get(self.i) == Some(&b']') {
            self.i += 1;
            return Ok(Node::Array(items));
        }
        loop {
            self.ws();
            items.push(self.value(depth)?);
            self.ws();
            match self.b.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(Node::Array(items));
                }
                _ => return Err(self.err("expected ',' or ']'")),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Node<'a>, JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        self.i += 1;
        let mut entries = Vec::new();
        self.ws();
        if self.b.get(self.i) == Some(&b'}') {
            self.i += 1;
            return Ok(Node::Object(entries));
        }
        loop {
            self.ws();
            let key = match self.b.get(self.i) {
                Some(b'"') => self.string()?,
                Some(_) if self.lenient => Cow::Borrowed(self.unquoted()?),
                _ => return Err(self.err("expected object key")),
            };
            self.ws();
            if self.b.get(self.i) != Some(&b':') {
                return Err(self.err("expected ':'"));
            }
            self.i += 1;
            self.ws();
            let v = self.value(depth)?;
            entries.push((key, v));
            self.ws();
            match self.b.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(Node::Object(entries));
                }
                _ => return Err(self.err("expected ',' or '}'")),
            }
        }
    }

    fn string(&mut self) -> Result<Cow<'a, str>, JsonError> {
        self.i += 1;
        let start = self.i;
        // Fast path: no escapes. One tight scan to the first byte that needs a decision.
        let run = self.b[start..]
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20);
        self.i = run.map_or(self.b.len(), |n| start + n);
        match self.b.get(self.i) {
            Some(b'"') => {
                let s = &self.s[start..self.i];
                self.i += 1;
                return Ok(Cow::Borrowed(s));
            }
            Some(&c) if c < 0x20 => return Err(self.err("control character in string")),
            _ => {}
        }
        let mut out = String::from(&self.s[start..self.i]);
        loop {
            let Some(&c) = self.b.get(self.i) else {
                return Err(self.err("unterminated string"));
            };
            match c {
                b'"' => {
                    self.i += 1;
                    return Ok(Cow::Owned(out));
                }
                b'\\' => {
                    self.i += 1;
                    self.escape(&mut out)?;
                }
                c if c < 0x20 => return Err(self.err("control character in string")),
                _ => {
                    let run_start = self.i;
                    while self.i < self.b.len()
                        && !matches!(self.b[self.i], b'"' | b'\\' | 0..=0x1f)
                    {
                        self.i += 1;
                    }
                    out.push_str(&self.s[run_start..self.i]);
                }
            }
        }
    }

    fn escape(&mut self, out: &mut String) -> Result<(), JsonError> {
        let Some(&c) = self.b.get(self.i) else {
            return Err(self.err("unterminated escape"));
        };
        self.i += 1;
        match c {
            b'"' => out.push('"'),
            b'\\' => out.push('\\'),
            b'/' => out.push('/'),
            b'b' => out.push('\u{8}'),
            b'f' => out.push('\u{c}'),
            b'n' => out.push('\n'),
            b'r' => out.push('\r'),
            b't' => out.push('\t'),
            b'u' => {
                let hi = self.hex4()?;
                if (0xD800..0xDC00).contains(&hi) && self.b[self.i..].starts_with(b"\\u") {
                    let save = self.i;
                    self.i += 2;
                    let lo = self.hex4()?;
                    if (0xDC00..0xE000).contains(&lo) {
                        let cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                        out.push(char::from_u32(cp).unwrap_or('\u{FFFD}'));
                        return Ok(());
                    }
                    self.i = save;
                }
                // Lone surrogates cannot be represented in Rust strings; use U+FFFD.
                out.push(char::from_u32(hi).unwrap_or('\u{FFFD}'));
            }
            _ => return Err(self.err("invalid escape")),
        }
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let Some(h) = self.s.get(self.i..self.i + 4) else {
            return Err(self.err("short \\u escape"));
        };
        let v = u32::from_str_radix(h, 16).map_err(|_| self.err("invalid \\u escape"))?;
        if !h.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(self.err("invalid \\u escape"));
        }
        self.i += 4;
        Ok(v)
    }
}
