//! Python built-in semantics that leak into Flagsmith evaluation.
//!
//! The reference engine is Python: `str()` of numbers, `int()` / `float()` parsing and
//! floored `%` all shape results (reason strings, hashing input, comparisons), so they are
//! reproduced here exactly rather than approximated with Rust's defaults.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

use serde_json::{Number, Value};

/// Python `repr(float)` / `str(float)`: shortest round-trip digits, `.0` for integral
/// values, exponent form below 1e-4 and from 1e16 (`1e-05`, `1e+16`).
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.to_owned();
    }
    let sci = shortest_scientific(f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let sign = if f < 0.0 { "-" } else { "" };
    if !(-5 < exp && exp < 16) {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{frac}e{esign}{:02}", exp.abs());
    }
    if exp >= 0 {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            let zeros = "0".repeat(int_len - digits.len());
            format!("{sign}{digits}{zeros}.0")
        } else {
            let (int_part, frac) = digits.split_at(int_len);
            format!("{sign}{int_part}.{frac}")
        }
    } else {
        let zeros = "0".repeat((-exp - 1) as usize);
        format!("{sign}0.{zeros}{digits}")
    }
}

/// Shortest round-trip digits as `d[.ddd]e<exp>`, ties between two equally short
/// candidates resolved to the closer one / half-to-even like Python's `repr` (Rust's
/// shortest mode may pick the other one).
fn shortest_scientific(a: f64) -> String {
    let shortest = format!("{a:e}");
    let digits = shortest
        .split('e')
        .next()
        .map_or(1, |m| m.bytes().filter(u8::is_ascii_digit).count());
    let exact = format!("{:.*e}", digits.saturating_sub(1), a);
    if exact.parse::<f64>() == Ok(a) {
        exact
    } else {
        shortest
    }
}

/// Python `str()` of a JSON number: integers as decimal digits, floats via [`float_repr`].
pub fn number_str(n: &Number) -> String {
    if let Some(i) = n.as_i64() {
        i.to_string()
    } else if let Some(u) = n.as_u64() {
        u.to_string()
    } else {
        float_repr(n.as_f64().unwrap_or(f64::NAN))
    }
}

/// Python `str()` of a scalar JSON value (`None`, `True`/`False`, numbers, strings).
/// Arrays and objects have no Python-compatible rendering here and give `None`.
pub fn scalar_str(v: &Value) -> Option<String> {
    match v {
        Value::Null => Some("None".to_owned()),
        Value::Bool(b) => Some(bool_str(*b).to_owned()),
        Value::Number(n) => Some(number_str(n)),
        Value::String(s) => Some(s.clone()),
        Value::Array(_) | Value::Object(_) => None,
    }
}

/// Python `str(bool)`.
pub fn bool_str(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

/// Python truthiness of a JSON value (`if metadata:`).
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// First code points of the Unicode decimal-digit runs (category Nd) outside ASCII;
/// each run holds the digits 0..=9. Python's `int()`/`float()` accept all of them.
const DECIMAL_ZEROS: &[u32] = &[
    0x660, 0x6f0, 0x7c0, 0x966, 0x9e6, 0xa66, 0xae6, 0xb66, 0xbe6, 0xc66, 0xce6, 0xd66, 0xde6,
    0xe50, 0xed0, 0xf20, 0x1040, 0x1090, 0x17e0, 0x1810, 0x1946, 0x19d0, 0x1a80, 0x1a90, 0x1b50,
    0x1bb0, 0x1c40, 0x1c50, 0xa620, 0xa8d0, 0xa900, 0xa9d0, 0xa9f0, 0xaa50, 0xabf0, 0xff10,
    0x104a0, 0x10d30, 0x11066, 0x110f0, 0x11136, 0x111d0, 0x112f0, 0x11450, 0x114d0, 0x11650,
    0x116c0, 0x11730, 0x118e0, 0x11950, 0x11c50, 0x11d50, 0x11da0, 0x11f50, 0x16a60, 0x16ac0,
    0x16b50, 0x1d7ce, 0x1d7d8, 0x1d7e2, 0x1d7ec, 0x1d7f6, 0x1e140, 0x1e2f0, 0x1e4f0, 0x1e950,
    0x1fbf0,
];

/// Python `str.isspace()` for one character.
fn is_py_space(c: char) -> bool {
    matches!(c, '\t'..='\r' | '\x1c'..='\x1f' | ' ' | '\u{85}' | '\u{a0}' | '\u{1680}')
        || matches!(
            c,
            '\u{2000}'..='\u{200a}' | '\u{2028}' | '\u{2029}' | '\u{202f}'
        )
        || matches!(c, '\u{205f}' | '\u{3000}')
}

fn decimal_value(c: char) -> Option<u32> {
    let cp = c as u32;
    DECIMAL_ZEROS
        .iter()
        .find(|z| (**z..**z + 10).contains(&cp))
        .map(|z| cp - z)
}

/// Mirrors CPython's `_PyUnicode_TransformDecimalAndSpaceToASCII` followed by stripping:
/// non-ASCII digits become ASCII digits, Unicode spaces are trimmed, any other non-ASCII
/// character makes the text unparsable (`None`).
fn to_ascii_number_text(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c);
        } else if is_py_space(c) {
            out.push(' ');
        } else {
            let d = decimal_value(c)?;
            out.push(char::from_digit(d, 10)?);
        }
    }
    // ASCII characters are kept as they are, and only ASCII whitespace is stripped
    // (`\x1c`..`\x1f` are spaces to `str.isspace()` but not to `int()`/`float()`).
    let trimmed = out.trim_matches(|c: char| matches!(c, ' ' | '\t'..='\r'));
    Some(trimmed.to_owned())
}

/// Removes `_` digit separators if each one sits between two ASCII digits (Python rule);
/// `None` if any underscore is misplaced.
fn strip_underscores(s: &str) -> Option<String> {
    if !s.contains('_') {
        return Some(s.to_owned());
    }
    let bytes = s.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'_' {
            let before = i.checked_sub(1).and_then(|j| bytes.get(j));
            let after = bytes.get(i + 1);
            if !before.is_some_and(u8::is_ascii_digit) || !after.is_some_and(u8::is_ascii_digit) {
                return None;
            }
        }
    }
    Some(s.replace('_', ""))
}

/// A Python `int`: values that fit an `i128` inline, larger ones as canonical decimal
/// digits (Python ints are unbounded; numeric-looking traits can be arbitrarily long).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PyInt {
    /// The exact value.
    Small(i128),
    /// A value outside `i128`: sign and digits without leading zeros.
    Big {
        /// True if negative.
        negative: bool,
        /// Decimal digits, no leading zeros.
        digits: String,
    },
}

impl PyInt {
    /// From a sign and ASCII decimal digits (leading zeros allowed).
    pub fn from_digits(negative: bool, digits: &str) -> PyInt {
        let trimmed = digits.trim_start_matches('0');
        let sign = if negative { "-" } else { "" };
        match format!("{sign}{trimmed}").parse::<i128>() {
            Ok(v) => PyInt::Small(v),
            Err(_) if trimmed.is_empty() => PyInt::Small(0),
            Err(_) => PyInt::Big {
                negative,
                digits: trimmed.to_owned(),
            },
        }
    }

    fn parts(&self) -> (bool, Cow<'_, str>) {
        match self {
            PyInt::Small(v) => (*v < 0, Cow::Owned(v.unsigned_abs().to_string())),
            PyInt::Big { negative, digits } => (*negative, Cow::Borrowed(digits.as_str())),
        }
    }

    /// Exact numeric ordering.
    pub fn compare(&self, other: &PyInt) -> Ordering {
        if let (PyInt::Small(a), PyInt::Small(b)) = (self, other) {
            return a.cmp(b);
        }
        let ((na, da), (nb, db)) = (self.parts(), other.parts());
        let magnitude = da.len().cmp(&db.len()).then_with(|| da.cmp(&db));
        match (na, nb) {
            (false, false) => magnitude,
            (true, true) => magnitude.reverse(),
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
        }
    }

    /// Python `float(int)`; `None` where Python raises `OverflowError`.
    pub fn to_f64(&self) -> Option<f64> {
        match self {
            PyInt::Small(v) => Some(*v as f64),
            PyInt::Big { .. } => self
                .to_string()
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite()),
        }
    }
}

impl fmt::Display for PyInt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PyInt::Small(v) => write!(f, "{v}"),
            PyInt::Big { negative, digits } => {
                write!(f, "{}{digits}", if *negative { "-" } else { "" })
            }
        }
    }
}

/// Python `int(s)` (base 10): whitespace, sign, `_` separators and Unicode digits allowed.
pub fn parse_int(s: &str) -> Option<PyInt> {
    let text = strip_underscores(&to_ascii_number_text(s)?)?;
    let (neg, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text.as_str()),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(PyInt::from_digits(neg, digits))
}

/// Python `float(s)`: whitespace, sign, `_` separators, exponents, `inf`/`nan`,
/// Unicode digits.
pub fn parse_float(s: &str) -> Option<f64> {
    let text = strip_underscores(&to_ascii_number_text(s)?)?;
    let body = text.strip_prefix(['+', '-']).unwrap_or(&text);
    let lower = body.to_ascii_lowercase();
    let special = matches!(lower.as_str(), "inf" | "infinity" | "nan");
    let numeric = !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    if !special && !numeric {
        return None;
    }
    text.parse::<f64>().ok()
}

/// Python float `%`: the result takes the sign of the divisor. `None` for a zero divisor
/// (Python raises `ZeroDivisionError`).
pub fn float_mod(x: f64, y: f64) -> Option<f64> {
    if y == 0.0 {
        return None;
    }
    let m = x % y;
    if m != 0.0 {
        if (y < 0.0) != (m < 0.0) {
            Some(m + y)
        } else {
            Some(m)
        }
    } else {
        Some(0.0f64.copysign(y))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_repr_matches_python() {
        let cases = [
            (30.0, "30.0"),
            (54.54, "54.54"),
            (100.0 / 3.0, "33.333333333333336"),
            (1e-5, "1e-05"),
            (1e-4, "0.0001"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (-0.0, "-0.0"),
            (0.1, "0.1"),
            (-2.5e-7, "-2.5e-07"),
            (1.5e300, "1.5e+300"),
            (f64::INFINITY, "inf"),
            (f64::NAN, "nan"),
            (51.990398079615915, "51.990398079615915"),
            (1720805954758130.0 + 0.25, "1720805954758130.2"),
            (1918233623838419.0 + 0.25, "1918233623838419.2"),
        ];
        for (f, want) in cases {
            assert_eq!(float_repr(f), want, "{f:e}");
        }
    }

    #[test]
    fn int_parsing_follows_python() {
        assert_eq!(parse_int(" 7 "), Some(PyInt::Small(7)));
        assert_eq!(parse_int("+7"), Some(PyInt::Small(7)));
        assert_eq!(parse_int("1_0"), Some(PyInt::Small(10)));
        assert_eq!(parse_int("007"), Some(PyInt::Small(7)));
        assert_eq!(parse_int("-0"), Some(PyInt::Small(0)));
        assert_eq!(parse_int("١٢"), Some(PyInt::Small(12)));
        assert_eq!(parse_int("\u{3000}12\u{2003}"), Some(PyInt::Small(12)));
        assert_eq!(parse_int(" 1\x0b"), Some(PyInt::Small(1)));
        assert_eq!(parse_int("1\u{85}"), Some(PyInt::Small(1)));
        assert_eq!(parse_int("1\x1c"), None);
        assert_eq!(parse_int("\x1f1"), None);
        assert_eq!(parse_int("1.0"), None);
        assert_eq!(parse_int("1__0"), None);
        assert_eq!(parse_int("_1"), None);
        assert_eq!(parse_int("1_"), None);
        assert_eq!(parse_int(""), None);
        assert_eq!(parse_int("-"), None);
        assert_eq!(parse_int("- 1"), None);
        assert_eq!(parse_int("0x10"), None);
        assert_eq!(
            parse_int("-1000000000000000000000000000000000000000000"),
            Some(PyInt::Big {
                negative: true,
                digits: format!("1{}", "0".repeat(42))
            })
        );
        assert_eq!(parse_int("-000"), Some(PyInt::Small(0)));
    }

    #[test]
    fn big_ints_compare_and_print() {
        let big = PyInt::from_digits(false, &format!("00{}", "9".repeat(50)));
        let neg_big = PyInt::from_digits(true, &"9".repeat(50));
        assert_eq!(big.to_string(), "9".repeat(50));
        assert_eq!(big.compare(&PyInt::Small(i128::MAX)), Ordering::Greater);
        assert_eq!(neg_big.compare(&PyInt::Small(i128::MIN)), Ordering::Less);
        assert_eq!(neg_big.compare(&big), Ordering::Less);
        assert_eq!(big.compare(&big.clone()), Ordering::Equal);
        assert_eq!(big.to_f64(), Some(1e50));
        assert_eq!(PyInt::from_digits(false, &"9".repeat(400)).to_f64(), None);
        assert_eq!(PyInt::from_digits(true, "0"), PyInt::Small(0));
    }

    #[test]
    fn float_parsing_follows_python() {
        assert_eq!(parse_float("1"), Some(1.0));
        assert_eq!(parse_float(" 1.5 "), Some(1.5));
        assert_eq!(parse_float("1e5"), Some(1e5));
        assert_eq!(parse_float("1_000.5"), Some(1000.5));
        assert_eq!(parse_float(".5"), Some(0.5));
        assert_eq!(parse_float("5."), Some(5.0));
        assert_eq!(parse_float("-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_float("Infinity"), Some(f64::INFINITY));
        assert!(parse_float("nan").is_some_and(f64::is_nan));
        assert_eq!(parse_float("１２"), Some(12.0));
        assert_eq!(parse_float(""), None);
        assert_eq!(parse_float("abc"), None);
        assert_eq!(parse_float("1_.5"), None);
        assert_eq!(parse_float("1e"), None);
        assert_eq!(parse_float("0x10"), None);
        assert_eq!(parse_float("in f"), None);
        assert_eq!(parse_float("1\x1c"), None);
        assert_eq!(parse_float("\u{3000}1.5\u{85}"), Some(1.5));
    }

    #[test]
    fn modulo_is_floored() {
        assert_eq!(float_mod(-3.0, 2.0), Some(1.0));
        assert_eq!(float_mod(3.0, -2.0), Some(-1.0));
        assert_eq!(float_mod(4.0, 2.0), Some(0.0));
        assert_eq!(float_mod(5.5, 2.0), Some(1.5));
        assert_eq!(float_mod(1.0, 0.0), None);
        assert_eq!(float_mod(-5.0, f64::INFINITY), Some(f64::INFINITY));
        assert!(float_mod(f64::INFINITY, 2.0).is_some_and(f64::is_nan));
    }

    #[test]
    fn truthiness() {
        assert!(!truthy(&serde_json::json!({})));
        assert!(truthy(&serde_json::json!({"id": 1})));
        assert!(!truthy(&Value::Null));
        assert!(!truthy(&serde_json::json!(0)));
    }
}
