//! Compiled conditions and operator semantics (spec §6, §7). Everything that can be precomputed
//! from the filter values (parsed numbers, versions, regexes, lowercased strings) is done once.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::cmp::Ordering;
use std::collections::HashSet;

use super::java;
use super::model::Condition;
use super::regex_java::JavaRegex;
use super::semver::SemanticVersion;
use super::value::{coerce_string, coerced_strings, parse_string_list, Map, Value};

/// The 20 operators (spec §7) plus `Unknown`, which never matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `is`
    Is,
    /// `is not`
    IsNot,
    /// `contains`
    Contains,
    /// `does not contain`
    DoesNotContain,
    /// `less`
    Less,
    /// `less or equal`
    LessOrEqual,
    /// `greater`
    Greater,
    /// `greater or equal`
    GreaterOrEqual,
    /// `version less`
    VersionLess,
    /// `version less or equal`
    VersionLessOrEqual,
    /// `version greater`
    VersionGreater,
    /// `version greater or equal`
    VersionGreaterOrEqual,
    /// `set is`
    SetIs,
    /// `set is not`
    SetIsNot,
    /// `set contains`
    SetContains,
    /// `set does not contain`
    SetDoesNotContain,
    /// `set contains any`
    SetContainsAny,
    /// `set does not contain any`
    SetDoesNotContainAny,
    /// `regex match`
    RegexMatch,
    /// `regex does not match`
    RegexDoesNotMatch,
    /// Anything else (matching is exact and case-sensitive).
    Unknown,
}

impl Op {
    /// Parses an operator string exactly.
    pub fn parse(s: &str) -> Op {
        match s {
            "is" => Op::Is,
            "is not" => Op::IsNot,
            "contains" => Op::Contains,
            "does not contain" => Op::DoesNotContain,
            "less" => Op::Less,
            "less or equal" => Op::LessOrEqual,
            "greater" => Op::Greater,
            "greater or equal" => Op::GreaterOrEqual,
            "version less" => Op::VersionLess,
            "version less or equal" => Op::VersionLessOrEqual,
            "version greater" => Op::VersionGreater,
            "version greater or equal" => Op::VersionGreaterOrEqual,
            "set is" => Op::SetIs,
            "set is not" => Op::SetIsNot,
            "set contains" => Op::SetContains,
            "set does not contain" => Op::SetDoesNotContain,
            "set contains any" => Op::SetContainsAny,
            "set does not contain any" => Op::SetDoesNotContainAny,
            "regex match" => Op::RegexMatch,
            "regex does not match" => Op::RegexDoesNotMatch,
            _ => Op::Unknown,
        }
    }

    fn is_set(self) -> bool {
        matches!(
            self,
            Op::SetIs
                | Op::SetIsNot
                | Op::SetContains
                | Op::SetDoesNotContain
                | Op::SetContainsAny
                | Op::SetDoesNotContainAny
        )
    }

    fn accepts(self, ord: Ordering) -> bool {
        match self {
            Op::Less | Op::VersionLess => ord == Ordering::Less,
            Op::LessOrEqual | Op::VersionLessOrEqual => ord != Ordering::Greater,
            Op::Greater | Op::VersionGreater => ord == Ordering::Greater,
            Op::GreaterOrEqual | Op::VersionGreaterOrEqual => ord != Ordering::Less,
            _ => false,
        }
    }
}

/// A regex filter value that failed to compile is kept and raised only when reached.
#[derive(Debug, Clone)]
pub struct RegexError {
    /// The Java pattern.
    pub pattern: String,
    /// Compiler message.
    pub message: String,
}

/// A selected property: borrowed, never cloned.
#[derive(Debug, Clone, Copy)]
pub enum Selected<'a> {
    /// Missing or JSON null.
    Null,
    /// A value from the context or a result's value/metadata.
    Value(&'a Value),
    /// A result variant's key.
    Str(&'a str),
    /// A result variant's merged metadata.
    Map(&'a Map),
}

/// A condition with everything precomputed from its filter values.
#[derive(Debug, Clone)]
pub struct CompiledCondition {
    /// The operator.
    pub op: Op,
    /// Filter values (deduped, ordered).
    pub values: Vec<String>,
    has_none: bool,
    has_bool: bool,
    value_set: Option<HashSet<String>>,
    lower: Vec<String>,
    numbers: Vec<f64>,
    versions: Vec<SemanticVersion>,
    regexes: Vec<Result<JavaRegex, RegexError>>,
}

impl CompiledCondition {
    /// Precomputes what `op` needs from `values`.
    pub fn new(op: &str, values: &[String]) -> CompiledCondition {
        let op = Op::parse(op);
        let mut c = CompiledCondition {
            op,
            values: values.to_vec(),
            has_none: values.iter().any(|v| v == "(none)"),
            has_bool: values.iter().any(|v| java::is_boolean_like(v)),
            value_set: None,
            lower: Vec::new(),
            numbers: Vec::new(),
            versions: Vec::new(),
            regexes: Vec::new(),
        };
        match op {
            Op::Is | Op::IsNot | Op::SetIs | Op::SetIsNot if values.len() > 8 => {
                c.value_set = Some(values.iter().cloned().collect());
            }
            Op::Contains | Op::DoesNotContain => {
                c.lower = values.iter().map(|v| v.to_lowercase()).collect()
            }
            Op::Less | Op::LessOrEqual | Op::Greater | Op::GreaterOrEqual => {
                c.numbers = values
                    .iter()
                    .filter_map(|v| java::parse_double(v))
                    .collect();
            }
            Op::VersionLess
            | Op::VersionLessOrEqual
            | Op::VersionGreater
            | Op::VersionGreaterOrEqual => {
                c.versions = values
                    .iter()
                    .filter_map(|v| SemanticVersion::parse(v))
                    .collect();
            }
            Op::RegexMatch | Op::RegexDoesNotMatch => {
                c.regexes = values
                    .iter()
                    .map(|v| {
                        JavaRegex::new(v).map_err(|message| RegexError {
                            pattern: v.clone(),
                            message,
                        })
                    })
                    .collect();
            }
            _ => {}
        }
        c
    }

    /// From a parsed model condition (selector handled by the caller).
    pub fn from_model(c: &Condition) -> CompiledCondition {
        CompiledCondition::new(&c.op, &c.values)
    }

    /// Matches a selected property (spec §6). `Err` only for an invalid regex that was reached.
    pub fn matches(&self, prop: Selected<'_>) -> Result<bool, RegexError> {
        self.matches_ref(prop).map_err(RegexError::clone)
    }

    /// [`CompiledCondition::matches`] with the error borrowed (a small `Result` on the hot path).
    pub(crate) fn matches_ref(&self, prop: Selected<'_>) -> Result<bool, &RegexError> {
        if self.op == Op::Unknown {
            return Ok(false);
        }
        self.matches_view_ref(&PropView::of(prop))
    }

    /// Matches a property already coerced with [`PropView::of`] (lets callers reuse the coercion
    /// across conditions on the same selector).
    pub fn matches_view(&self, view: &PropView<'_>) -> Result<bool, RegexError> {
        self.matches_view_ref(view).map_err(RegexError::clone)
    }

    /// [`CompiledCondition::matches_view`] with the error borrowed.
    pub(crate) fn matches_view_ref(&self, view: &PropView<'_>) -> Result<bool, &RegexError> {
        match (view, self.op) {
            (_, Op::Unknown) => Ok(false),
            (PropView::Null, _) => Ok(self.match_null()),
            (PropView::List(p), op) if op.is_set() => Ok(self.match_set(p)),
            (PropView::Scalar(_), op) if op.is_set() => Ok(false),
            (PropView::List(list), _) => {
                for e in &list.items {
                    if self.match_string(e.as_ref())? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            (PropView::Scalar(sc), op) => match op {
                Op::Less | Op::LessOrEqual | Op::Greater | Op::GreaterOrEqual => {
                    match *sc.number.get_or_init(|| java::parse_double(sc.text())) {
                        Some(x) if !self.numbers.is_empty() => Ok(self.compare_numbers(x)),
                        _ => Ok(self.string_fallback(sc.text())),
                    }
                }
                Op::VersionLess
                | Op::VersionLessOrEqual
                | Op::VersionGreater
                | Op::VersionGreaterOrEqual => {
                    let v = sc.version.get_or_init(|| SemanticVersion::parse(sc.text()));
                    Ok(self.compare_version_parsed(sc.text(), v.as_ref()))
                }
                _ => self.match_string(sc.text()),
            },
        }
    }

    /// `matchNull` (spec §7.1).
    fn match_null(&self) -> bool {
        match self.op {
            Op::IsNot | Op::DoesNotContain | Op::SetDoesNotContain | Op::SetDoesNotContainAny => {
                !self.has_none
            }
            Op::RegexMatch | Op::Unknown => false,
            Op::RegexDoesNotMatch | Op::SetIsNot => true,
            _ => self.has_none,
        }
    }

    fn is_member(&self, s: &str) -> bool {
        match &self.value_set {
            Some(set) => set.contains(s),
            None => self.values.iter().any(|v| str_eq(v, s)),
        }
    }

    /// `matchesIs(s, values)` (spec §7.2).
    fn matches_is(&self, s: &str) -> bool {
        if self.has_bool && java::is_boolean_like(s) {
            return self.values.iter().any(|v| java::equals_ignore_case(v, s));
        }
        self.is_member(s)
    }

    fn match_string(&self, s: &str) -> Result<bool, &RegexError> {
        Ok(match self.op {
            Op::Is => self.matches_is(s),
            Op::IsNot => !self.matches_is(s),
            Op::Contains => self.contains(s),
            Op::DoesNotContain => !self.contains(s),
            Op::Less | Op::LessOrEqual | Op::Greater | Op::GreaterOrEqual => {
                self.compare_numeric(s)
            }
            Op::VersionLess
            | Op::VersionLessOrEqual
            | Op::VersionGreater
            | Op::VersionGreaterOrEqual => self.compare_version(s),
            Op::RegexMatch => self.regex(s)?,
            Op::RegexDoesNotMatch => !self.regex(s)?,
            _ => false,
        })
    }

    fn contains(&self, s: &str) -> bool {
        if self.lower.is_empty() {
            return false;
        }
        if s.is_ascii() && self.lower.iter().all(|v| v.is_ascii()) {
            return self
                .lower
                .iter()
                .any(|v| ascii_icontains(s.as_bytes(), v.as_bytes()));
        }
        let ls = s.to_lowercase();
        self.lower.iter().any(|v| ls.contains(v.as_str()))
    }

    fn string_fallback(&self, s: &str) -> bool {
        self.values
            .iter()
            .any(|v| self.op.accepts(java::compare_utf16(s, v)))
    }

    fn compare_numeric(&self, s: &str) -> bool {
        self.compare_numeric_parsed(s, java::parse_double(s))
    }

    fn compare_numeric_parsed(&self, s: &str, parsed: Option<f64>) -> bool {
        match parsed {
            Some(x) if !self.numbers.is_empty() => self.compare_numbers(x),
            _ => self.string_fallback(s),
        }
    }

    fn compare_numbers(&self, x: f64) -> bool {
        self.numbers
            .iter()
            .any(|d| self.op.accepts(java::compare_doubles(x, *d)))
    }

    fn compare_version(&self, s: &str) -> bool {
        self.compare_version_parsed(s, SemanticVersion::parse(s).as_ref())
    }

    fn compare_version_parsed(&self, s: &str, parsed: Option<&SemanticVersion>) -> bool {
        match parsed {
            Some(x) if !self.versions.is_empty() => {
                self.versions.iter().any(|d| self.op.accepts(x.cmp(d)))
            }
            _ => self.string_fallback(s),
        }
    }

    fn regex(&self, s: &str) -> Result<bool, &RegexError> {
        for r in &self.regexes {
            match r {
                Ok(re) if re.matches(s) => return Ok(true),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    /// Set operators (spec §7.5); `p` is deduped.
    fn match_set(&self, p: &PropList<'_>) -> bool {
        match self.op {
            Op::SetIs => self.set_equals(p),
            Op::SetIsNot => !self.set_equals(p),
            Op::SetContains => self.contains_all(p),
            Op::SetDoesNotContain => !self.contains_all(p),
            Op::SetContainsAny => self.contains_any(p),
            Op::SetDoesNotContainAny => !self.contains_any(p),
            _ => false,
        }
    }

    fn set_equals(&self, p: &PropList<'_>) -> bool {
        p.items.len() == self.values.len() && p.items.iter().all(|e| self.is_member(e))
    }

    fn contains_all(&self, p: &PropList<'_>) -> bool {
        if p.items.len() < self.values.len() {
            return false;
        }
        self.values.iter().all(|v| p.matches_is(v))
    }

    fn contains_any(&self, p: &PropList<'_>) -> bool {
        self.values.iter().any(|v| p.matches_is(v))
    }
}

/// A property coerced to a deduped string list, with `matchesIs(v, P)` support (hashed lazily
/// when large, so the index is built once per evaluation and shared by all conditions).
#[derive(Debug, Clone)]
pub struct PropList<'a> {
    /// Element strings (nulls dropped, deduped, first-seen order), borrowed from the context
    /// where they are strings there.
    pub items: Vec<Cow<'a, str>>,
    has_bool: bool,
    hashed: OnceCell<HashSet<Cow<'a, str>>>,
}

impl<'a> PropList<'a> {
    fn new(items: Vec<Cow<'a, str>>) -> PropList<'a> {
        let has_bool = items.iter().any(|e| java::is_boolean_like(e));
        PropList {
            items,
            has_bool,
            hashed: OnceCell::new(),
        }
    }

    fn matches_is(&self, v: &str) -> bool {
        if self.has_bool && java::is_boolean_like(v) {
            return self.items.iter().any(|e| java::equals_ignore_case(e, v));
        }
        if self.items.len() <= 16 {
            return self.items.iter().any(|e| str_eq(e, v));
        }
        self.hashed
            .get_or_init(|| self.items.iter().cloned().collect())
            .contains(v)
    }
}

/// A scalar property's coerced string, with its numeric and semver parses memoised.
///
/// For a JSON number the string form (Java `Double.toString` for doubles) is only built when a
/// string operator needs it: numeric operators use the number itself, which is what parsing its
/// string form gives back (`Long.toString` and `Double.toString` both round-trip).
#[derive(Debug, Clone)]
pub struct Scalar<'a> {
    /// The coerced string, once known.
    text: OnceCell<Cow<'a, str>>,
    /// The number the string form is built from, when built lazily.
    source: Option<&'a Value>,
    number: OnceCell<Option<f64>>,
    version: OnceCell<Option<SemanticVersion>>,
}

impl<'a> Scalar<'a> {
    fn new(text: Cow<'a, str>) -> Scalar<'a> {
        Scalar {
            text: OnceCell::from(text),
            source: None,
            number: OnceCell::new(),
            version: OnceCell::new(),
        }
    }

    /// A JSON number: its `parseDouble(coerceString(v))` is known without the string.
    fn number(v: &'a Value, x: f64) -> Scalar<'a> {
        Scalar {
            text: OnceCell::new(),
            source: Some(v),
            number: OnceCell::from(Some(x)),
            version: OnceCell::new(),
        }
    }

    /// The coerced string (`coerceString`).
    pub fn text(&self) -> &str {
        self.text
            .get_or_init(|| self.source.and_then(coerce_string).unwrap_or_default())
    }
}

/// A property after `coerceStringList`/`coerceString` (spec §6 steps 2–6).
#[derive(Debug, Clone)]
pub enum PropView<'a> {
    /// Null or missing: `matchNull` applies.
    Null,
    /// An array, or a string that is a `[`-prefixed JSON array: deduped element strings.
    List(PropList<'a>),
    /// Anything else, as its coerced string.
    Scalar(Scalar<'a>),
}

impl<'a> PropView<'a> {
    /// Coerces a selected property once.
    pub fn of(prop: Selected<'a>) -> PropView<'a> {
        match prop {
            Selected::Null | Selected::Value(Value::Null) => PropView::Null,
            Selected::Str(s) => PropView::of_str(s),
            Selected::Value(Value::String(s)) => PropView::of_str(s),
            Selected::Map(m) => {
                let mut out = Vec::new();
                super::value::write_json_object(m, &mut out);
                PropView::Scalar(Scalar::new(Cow::Owned(
                    String::from_utf8(out).unwrap_or_default(),
                )))
            }
            Selected::Value(Value::Array(items)) => {
                PropView::List(PropList::new(coerced_strings(items)))
            }
            // `i as f64` rounds to nearest like `parseDouble(Long.toString(i))`.
            Selected::Value(v @ Value::Int(i)) => PropView::Scalar(Scalar::number(v, *i as f64)),
            Selected::Value(v @ Value::Double(d)) => PropView::Scalar(Scalar::number(v, *d)),
            Selected::Value(v) => match coerce_string(v) {
                Some(s) => PropView::Scalar(Scalar::new(s)),
                None => PropView::Null,
            },
        }
    }

    fn of_str(s: &'a str) -> PropView<'a> {
        match parse_string_list(s) {
            Some(list) => PropView::List(PropList::new(list.into_iter().map(Cow::Owned).collect())),
            None => PropView::Scalar(Scalar::new(Cow::Borrowed(s))),
        }
    }
}

/// ASCII case-insensitive substring test (`needle` is already lowercase).
fn ascii_icontains(hay: &[u8], needle: &[u8]) -> bool {
    let Some(&first) = needle.first() else {
        return true;
    };
    hay.windows(needle.len())
        .any(|w| w[0].to_ascii_lowercase() == first && w.eq_ignore_ascii_case(needle))
}

/// String equality without a `memcmp` call for the short strings conditions compare (ids,
/// countries, plans): overlapping 8- or 4-byte loads.
#[inline]
pub(crate) fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let load8 = |s: &[u8], i: usize| s.get(i..i + 8).and_then(|w| <[u8; 8]>::try_from(w).ok());
    let load4 = |s: &[u8], i: usize| s.get(i..i + 4).and_then(|w| <[u8; 4]>::try_from(w).ok());
    match n {
        0 => true,
        1..=3 => a == b,
        4..=7 => load4(a, 0) == load4(b, 0) && load4(a, n - 4) == load4(b, n - 4),
        8..=16 => load8(a, 0) == load8(b, 0) && load8(a, n - 8) == load8(b, n - 8),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn str_eq_agrees_with_eq() {
        let words: Vec<String> = (0..40)
            .map(|n| "abcdefghijklmnopqrstuvwxyz0123456789ABCDEF"[..n].to_string())
            .collect();
        for a in &words {
            for b in &words {
                assert_eq!(str_eq(a, b), a == b, "{a:?} {b:?}");
                let mut c = b.clone().into_bytes();
                for i in 0..c.len() {
                    let orig = c[i];
                    c[i] = b'!';
                    let cs = std::str::from_utf8(&c).unwrap_or_default();
                    assert_eq!(str_eq(a, cs), a == cs, "{a:?} {cs:?}");
                    c[i] = orig;
                }
            }
        }
    }

    #[test]
    fn icontains() {
        assert!(ascii_icontains(b"Jane.Doe@GMAIL.com", b"gmail"));
        assert!(ascii_icontains(b"x", b""));
        assert!(!ascii_icontains(b"gmai", b"gmail"));
        assert!(ascii_icontains(b"ggmail", b"gmail"));
        assert!(!ascii_icontains(b"test", b"tesu"));
    }
}
