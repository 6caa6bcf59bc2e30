//! Segment conditions: operators compiled once (regexes, semvers, number casts, `IN`
//! sets), then matched against a context value with the reference's Python semantics.
//! Every malformed input (bad regex, zero divisor, unparsable operand) is a non-match.

use std::cmp::Ordering;
use std::collections::HashSet;

use serde_json::Value;

use super::accessor::{Accessor, Source};
use super::context::SegmentCondition;
use super::hashing::hashed_percentage;
use super::python::{self, PyInt};
use super::semver::Version;
use super::value::ContextValue;

/// A compiled condition.
#[derive(Debug, Clone)]
pub struct Condition {
    accessor: Accessor,
    op: Op,
}

#[derive(Debug, Clone)]
enum Op {
    IsSet,
    IsNotSet,
    In(Option<HashSet<String>>),
    PercentageSplit(Option<f64>),
    Modulo(Option<(f64, f64)>),
    Regex(Option<Box<fancy_regex::Regex>>),
    NotContains(String),
    Compare(CmpOp, Box<Operand>),
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Contains,
}

/// The condition value pre-cast to every type a context value may have.
#[derive(Debug, Clone)]
struct Operand {
    text: String,
    /// `Some` if the text ends in `:semver`: the text without the suffix, and its parse.
    semver: Option<(String, Option<Version>)>,
    int: Option<PyInt>,
    float: Option<f64>,
    bool: bool,
}

impl Operand {
    fn new(text: String) -> Self {
        let semver = text
            .strip_suffix(":semver")
            .map(|v| (v.to_owned(), Version::parse(v)));
        Operand {
            int: python::parse_int(&text),
            float: python::parse_float(&text),
            bool: text != "False" && text != "false",
            semver,
            text,
        }
    }
}

impl Condition {
    /// Compiles a condition from its context form.
    pub fn compile(c: &SegmentCondition) -> Condition {
        let is_split = c.operator == "PERCENTAGE_SPLIT";
        Condition {
            accessor: Accessor::compile(&c.property, is_split),
            op: compile_op(&c.operator, &c.value),
        }
    }

    /// True if matching may need the JSON view of the context.
    pub fn needs_json(&self) -> bool {
        self.accessor.needs_json()
    }

    /// Whether the context matches; `segment_key` feeds `PERCENTAGE_SPLIT` hashing.
    pub fn matches<S: Source>(&self, src: &S, segment_key: &str) -> bool {
        let ctx = self.accessor.resolve(src);
        match &self.op {
            Op::IsSet => !ctx.is_none(),
            Op::IsNotSet => ctx.is_none(),
            Op::In(set) => in_set(set.as_ref(), &ctx),
            Op::PercentageSplit(threshold) => match (threshold, &ctx) {
                (_, ContextValue::None) | (None, _) => false,
                (Some(t), ctx) => hashed_percentage(&[segment_key, &ctx.py_str()]) <= *t,
            },
            Op::Modulo(parts) => modulo(*parts, &ctx),
            Op::Regex(re) => match (re, &ctx) {
                (_, ContextValue::None) | (None, _) => false,
                (Some(re), ctx) => re.is_match(&ctx.py_str()).unwrap_or(false),
            },
            Op::NotContains(s) => matches!(&ctx, ContextValue::Str(c) if !c.contains(s.as_str())),
            Op::Compare(op, operand) => compare(*op, operand, &ctx),
            Op::Never => false,
        }
    }
}

fn compile_op(operator: &str, value: &Value) -> Op {
    match operator {
        "IS_SET" => return Op::IsSet,
        "IS_NOT_SET" => return Op::IsNotSet,
        "IN" => return Op::In(in_values(value)),
        _ => {}
    }
    // Python `str()` of the operand (`None` → "None"); arrays/objects never match.
    let Some(text) = python::scalar_str(value) else {
        return Op::Never;
    };
    let cmp = |op| Op::Compare(op, Box::new(Operand::new(text.clone())));
    match operator {
        "PERCENTAGE_SPLIT" => Op::PercentageSplit(if value.is_null() {
            None
        } else {
            python::parse_float(&text)
        }),
        "MODULO" => Op::Modulo(modulo_parts(value, &text)),
        "REGEX" => Op::Regex(compile_regex(&text).map(Box::new)),
        "NOT_CONTAINS" => Op::NotContains(text),
        "EQUAL" => cmp(CmpOp::Eq),
        "NOT_EQUAL" => cmp(CmpOp::Ne),
        "GREATER_THAN" => cmp(CmpOp::Gt),
        "GREATER_THAN_INCLUSIVE" => cmp(CmpOp::Ge),
        "LESS_THAN" => cmp(CmpOp::Lt),
        "LESS_THAN_INCLUSIVE" => cmp(CmpOp::Le),
        "CONTAINS" => cmp(CmpOp::Contains),
        _ => Op::Never,
    }
}

/// The `IN` operand as a set of strings: a JSON array, a string holding a JSON array
/// (when it starts with `[`), else a comma-separated list (no trimming).
fn in_values(value: &Value) -> Option<HashSet<String>> {
    let from_array = |items: &[Value]| items.iter().filter_map(python::scalar_str).collect();
    match value {
        Value::Array(items) => Some(from_array(items)),
        Value::String(s) => {
            if s.starts_with('[') {
                if let Ok(Value::Array(items)) = serde_json::from_str::<Value>(s) {
                    return Some(from_array(&items));
                }
            }
            Some(s.split(',').map(str::to_owned).collect())
        }
        _ => None,
    }
}

fn in_set(set: Option<&HashSet<String>>, ctx: &ContextValue<'_>) -> bool {
    let Some(set) = set else { return false };
    match ctx {
        ContextValue::Int(i) => set.contains(&i.to_string()),
        ContextValue::Str(s) => set.contains(s.as_ref()),
        _ => false,
    }
}

fn modulo_parts(value: &Value, text: &str) -> Option<(f64, f64)> {
    if !value.is_string() || text.is_empty() {
        return None;
    }
    let mut parts = text.split('|');
    let (divisor, remainder) = (parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    Some((
        python::parse_float(divisor)?,
        python::parse_float(remainder)?,
    ))
}

fn modulo(parts: Option<(f64, f64)>, ctx: &ContextValue<'_>) -> bool {
    let Some((divisor, remainder)) = parts else {
        return false;
    };
    let x = match ctx {
        ContextValue::Int(i) => match i.to_f64() {
            Some(f) => f,
            None => return false,
        },
        ContextValue::Float(f) => *f,
        ContextValue::Bool(b) => f64::from(u8::from(*b)),
        ContextValue::None | ContextValue::Str(_) => return false,
    };
    python::float_mod(x, divisor) == Some(remainder)
}

/// Compiles a Python `re` pattern for `re.match` (anchored at the start only).
fn compile_regex(pattern: &str) -> Option<fancy_regex::Regex> {
    let translated = translate_regex(pattern)?;
    // Validate the pattern on its own first: wrapping could hide unbalanced parentheses.
    fancy_regex::Regex::new(&translated).ok()?;
    fancy_regex::Regex::new(&format!("\\A(?:{translated})")).ok()
}

/// Rewrites the Python-only anchors outside character classes: `\Z` (end of text) and
/// `$` (end, or before a final newline).
fn translate_regex(pattern: &str) -> Option<String> {
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut chars = pattern.chars().peekable();
    let mut in_class = false;
    let mut class_start = false;
    while let Some(c) = chars.next() {
        let at_class_start = class_start;
        class_start = false;
        match c {
            '\\' => match chars.next() {
                Some('Z') if !in_class => out.push_str("\\z"),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            },
            '[' if !in_class => {
                in_class = true;
                class_start = true;
                out.push('[');
                if chars.peek() == Some(&'^') {
                    chars.next();
                    out.push('^');
                }
            }
            ']' if in_class && !at_class_start => {
                in_class = false;
                out.push(']');
            }
            // No lookahead, so patterns stay on the linear-time engine; only a `$` that is
            // followed by more pattern (e.g. `a$\n`) can behave differently.
            '$' if !in_class => {
                // Python cannot repeat an anchor ("nothing to repeat").
                let next = chars.peek().copied();
                let quantified = match next {
                    Some('*' | '+' | '?') => true,
                    Some('{') => {
                        let mut look = chars.clone();
                        look.next();
                        python_brace(&mut look).starts_with('{')
                    }
                    _ => false,
                };
                if quantified {
                    return None;
                }
                out.push_str("(?:$|\\n\\z)");
            }
            '{' if !in_class => out.push_str(&python_brace(&mut chars)),
            '}' if !in_class => out.push_str("\\}"),
            // Literal in Python classes, class syntax (nesting, set operations) in Rust.
            '[' | '&' | '~' if in_class => {
                out.push('\\');
                out.push(c);
            }
            other => out.push(other),
        }
    }
    Some(out)
}

/// Python's reading of `{` (after it was consumed): `{n}`, `{n,}`, `{,m}`, `{n,m}` and
/// `{,}` are quantifiers (made explicit for Rust), anything else is a literal brace.
fn python_brace(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> String {
    let rest: String = chars.clone().collect();
    let lo: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let after_lo = &rest[lo.len()..];
    let (hi, comma, after) = match after_lo.strip_prefix(',') {
        Some(r) => {
            let hi: String = r.chars().take_while(char::is_ascii_digit).collect();
            let after = &r[hi.len()..];
            (hi, true, after)
        }
        None => (lo.clone(), false, after_lo),
    };
    if !after.starts_with('}') || (lo.is_empty() && !comma) {
        return "\\{".to_owned();
    }
    let consumed = rest.len() - after.len() + 1;
    for _ in 0..rest[..consumed].chars().count() {
        chars.next();
    }
    let lo = if lo.is_empty() { "0".to_owned() } else { lo };
    match (comma, hi.is_empty()) {
        (false, _) => format!("{{{lo}}}"),
        (true, true) => format!("{{{lo},}}"),
        (true, false) => format!("{{{lo},{hi}}}"),
    }
}

fn compare(op: CmpOp, operand: &Operand, ctx: &ContextValue<'_>) -> bool {
    let ord = match ctx {
        ContextValue::None => return false,
        ContextValue::Str(s) => {
            if let Some((text, target)) = &operand.semver {
                let Some(version) = Version::parse(s) else {
                    return false;
                };
                if op == CmpOp::Contains {
                    return version.contains_str(text);
                }
                match target {
                    Some(t) => Some(version.precedence(t)),
                    None => return false,
                }
            } else {
                if op == CmpOp::Contains {
                    return s.contains(operand.text.as_str());
                }
                Some(s.as_ref().cmp(operand.text.as_str()))
            }
        }
        _ if op == CmpOp::Contains => return false,
        ContextValue::Bool(b) => Some(b.cmp(&operand.bool)),
        ContextValue::Int(i) => match &operand.int {
            None => return false,
            Some(v) => Some(i.compare(v)),
        },
        ContextValue::Float(f) => match operand.float {
            None => return false,
            Some(g) => f.partial_cmp(&g),
        },
    };
    match op {
        CmpOp::Eq => ord == Some(Ordering::Equal),
        CmpOp::Ne => ord != Some(Ordering::Equal),
        CmpOp::Gt => ord == Some(Ordering::Greater),
        CmpOp::Ge => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
        CmpOp::Lt => ord == Some(Ordering::Less),
        CmpOp::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
        CmpOp::Contains => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Traits(Value);

    impl Source for Traits {
        fn environment_key(&self) -> &str {
            "env"
        }
        fn environment_name(&self) -> &str {
            "Dev"
        }
        fn identity(&self) -> Option<(&str, &str)> {
            Some(("user", "env_user"))
        }
        fn trait_value(&self, key: &str) -> Option<&Value> {
            self.0.get(key)
        }
        fn json(&self) -> &Value {
            &self.0
        }
    }

    fn check(trait_value: Value, operator: &str, value: Value) -> bool {
        let cond = SegmentCondition {
            property: "t".to_owned(),
            operator: operator.to_owned(),
            value,
        };
        Condition::compile(&cond).matches(&Traits(json!({ "t": trait_value })), "seg")
    }

    #[test]
    fn typed_equality() {
        assert!(check(json!(true), "EQUAL", json!("1")));
        assert!(!check(json!(false), "EQUAL", json!("0")));
        assert!(check(json!(false), "EQUAL", json!("false")));
        assert!(check(json!(true), "EQUAL", json!("yes")));
        assert!(!check(json!(1), "EQUAL", json!("1.0")));
        assert!(check(json!(7), "EQUAL", json!(" 7 ")));
        assert!(check(json!(10), "EQUAL", json!("1_0")));
        assert!(check(json!("1.0"), "EQUAL", json!("1")));
        assert!(check(json!("007"), "EQUAL", json!("7")));
        assert!(!check(Value::Null, "NOT_EQUAL", json!("x")));
        assert!(check(json!("abc"), "NOT_EQUAL", json!("abd")));
        assert!(!check(json!(5), "EQUAL", json!("abc")));
        assert!(check(json!(1.5), "NOT_EQUAL", json!("nan")));
        assert!(!check(json!(1.5), "EQUAL", json!("nan")));
    }

    #[test]
    fn ordering_comparisons() {
        assert!(check(json!(5), "GREATER_THAN", json!("4")));
        assert!(check(json!(5), "GREATER_THAN_INCLUSIVE", json!("5")));
        assert!(!check(json!(5), "LESS_THAN", json!("1e999")));
        assert!(check(
            json!(5),
            "LESS_THAN",
            json!("100000000000000000000000000000000000000000")
        ));
        assert!(check(json!("b"), "GREATER_THAN", json!("a")));
        assert!(check(json!("B"), "LESS_THAN", json!("a")));
        assert!(check(json!(2.5), "LESS_THAN_INCLUSIVE", json!("2.5")));
        assert!(check(json!(true), "GREATER_THAN", json!("false")));
        assert!(check(json!("abc"), "GREATER_THAN", Value::Null));
        assert!(!check(json!("Abc"), "GREATER_THAN", Value::Null));
        assert!(check(json!("abc"), "NOT_EQUAL", Value::Null));
        assert!(check(json!("None"), "EQUAL", Value::Null));
    }

    #[test]
    fn contains_family() {
        assert!(check(json!("hello"), "CONTAINS", json!("ell")));
        assert!(check(json!("hello"), "CONTAINS", json!("")));
        assert!(!check(json!(123), "CONTAINS", json!("2")));
        assert!(check(json!("hello"), "NOT_CONTAINS", json!("xyz")));
        assert!(!check(json!("hello"), "NOT_CONTAINS", json!("ell")));
        assert!(!check(json!("123"), "NOT_CONTAINS", json!("9")));
        assert!(!check(Value::Null, "NOT_CONTAINS", json!("9")));
    }

    #[test]
    fn semver_comparisons() {
        assert!(check(json!("1.2.3"), "GREATER_THAN", json!("1.2.2:semver")));
        assert!(check(
            json!("1.2.3-beta"),
            "LESS_THAN",
            json!("1.2.3:semver")
        ));
        assert!(check(json!("1.2.3+b1"), "EQUAL", json!("1.2.3+b2:semver")));
        assert!(!check(json!("1.2"), "LESS_THAN", json!("1.2.3:semver")));
        assert!(!check(json!("v1.2.3"), "EQUAL", json!("1.2.3:semver")));
        assert!(!check(json!("1.2.3"), "NOT_EQUAL", json!("bad:semver")));
        assert!(!check(json!("1.2.3"), "CONTAINS", json!("1.2.3:semver")));
        assert!(check(json!("1.2.3-beta"), "CONTAINS", json!("beta:semver")));
    }

    #[test]
    fn in_operator() {
        assert!(check(json!("b"), "IN", json!("a,b")));
        assert!(!check(json!("b"), "IN", json!("a, b")));
        assert!(check(json!(" b"), "IN", json!("a, b")));
        assert!(check(json!("[foo"), "IN", json!("[foo,bar]")));
        assert!(check(json!("x"), "IN", json!("[\"x\",\"y\"]")));
        assert!(check(json!(1), "IN", json!("[1, 2]")));
        assert!(check(json!("True"), "IN", json!("[true]")));
        assert!(!check(json!("1.0"), "IN", json!("[1.0]")));
        assert!(check(json!("None"), "IN", json!("[null]")));
        assert!(check(json!(""), "IN", json!("")));
        assert!(check(json!(5), "IN", json!(["5", 6])));
        assert!(!check(json!(true), "IN", json!("True")));
        assert!(!check(json!(1.5), "IN", json!("1.5")));
        assert!(!check(json!("007"), "IN", json!("007")));
        assert!(!check(json!("a"), "IN", Value::Null));
        assert!(!check(json!("5"), "IN", json!(5)));
    }

    #[test]
    fn modulo_operator() {
        assert!(check(json!(4), "MODULO", json!("2|0")));
        assert!(check(json!(-3), "MODULO", json!("2|1")));
        assert!(check(json!(true), "MODULO", json!("2|1")));
        assert!(check(json!(5.5), "MODULO", json!("2|1.5")));
        assert!(!check(json!(4), "MODULO", json!("0|0")));
        assert!(!check(json!(4), "MODULO", json!("2|0|1")));
        assert!(!check(json!(4), "MODULO", json!("")));
        assert!(!check(json!(4), "MODULO", json!("a|0")));
        assert!(!check(json!("abc"), "MODULO", json!("2|0")));
    }

    #[test]
    fn regex_operator() {
        assert!(check(json!("abx"), "REGEX", json!("ab")));
        assert!(!check(json!("xab"), "REGEX", json!("ab")));
        assert!(check(json!(123), "REGEX", json!("\\d+")));
        assert!(check(json!(true), "REGEX", json!("Tr")));
        assert!(check(json!("1.5"), "REGEX", json!("1\\.5$")));
        assert!(check(json!("ab\n"), "REGEX", json!("ab$")));
        assert!(!check(json!("ab\n"), "REGEX", json!("ab\\Z")));
        assert!(!check(json!("abc"), "REGEX", json!("[")));
        assert!(!check(json!("abc"), "REGEX", json!("a)(b")));
        assert!(check(json!("a$"), "REGEX", json!("a[$]")));
        assert!(check(json!("foo"), "REGEX", json!("(?i)FOO")));
        assert!(check(json!("aa"), "REGEX", json!("(a)\\1")));
        assert!(check(json!("aa"), "REGEX", json!("(?P<x>a)(?P=x)")));
        assert!(check(json!("a{"), "REGEX", json!("a{")));
        assert!(check(json!("{}"), "REGEX", json!("{}")));
        assert!(check(json!("a{x}"), "REGEX", json!("a{x}")));
        assert!(check(json!("aaa"), "REGEX", json!("a{,2}a$")));
        assert!(check(json!("aaa"), "REGEX", json!("a{2,}$")));
        assert!(check(json!("aaa"), "REGEX", json!("a{,}$")));
        assert!(!check(json!("aaa"), "REGEX", json!("a{2}$")));
        assert!(check(json!("["), "REGEX", json!("[[]")));
        assert!(check(json!("&"), "REGEX", json!("[a&&b]")));
        assert!(!check(json!("a"), "REGEX", json!("a$*")));
        assert!(!check(json!("a"), "REGEX", json!("a${2}")));
        assert!(!check(json!("a{x}"), "REGEX", json!("a${x}")));
        assert!(!check(Value::Null, "REGEX", json!(".*")));
        assert!(check(json!("a\nb"), "REGEX", json!("(?m)a$")));
        let evil = format!("{}b", "a".repeat(40));
        let started = std::time::Instant::now();
        assert!(!check(json!(evil), "REGEX", json!("(a+)+$")));
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn set_and_split() {
        assert!(check(json!("x"), "IS_SET", Value::Null));
        assert!(check(Value::Null, "IS_NOT_SET", Value::Null));
        assert!(!check(Value::Null, "PERCENTAGE_SPLIT", json!("100")));
        assert!(check(json!("a"), "PERCENTAGE_SPLIT", json!("100")));
        assert!(!check(json!("a"), "PERCENTAGE_SPLIT", json!("abc")));
        assert!(!check(json!("a"), "PERCENTAGE_SPLIT", Value::Null));
        assert!(!check(json!("a"), "UNKNOWN_OP", json!("a")));
        assert!(!check(json!("a"), "EQUAL", json!(["a"])));
    }
}
