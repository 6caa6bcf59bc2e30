//! Context values: what a condition compares against, after the reference's coercion
//! (numeric-looking strings become numbers).

use std::borrow::Cow;

use serde_json::Value;

use super::python::{self, PyInt};

/// A coerced context value (Python `None | bool | int | float | str`).
#[derive(Debug, Clone, PartialEq)]
pub enum ContextValue<'a> {
    /// Missing (`None`).
    None,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(PyInt),
    /// A float.
    Float(f64),
    /// A string.
    Str(Cow<'a, str>),
}

impl<'a> ContextValue<'a> {
    /// The reference's "context value mapping": JSON scalars kept, strings matching
    /// `-?[0-9]+` become ints and `-?[0-9]+\.[0-9]+` floats; arrays/objects become their
    /// JSON text (the reference would use Python `str()`; not reachable via the proxy).
    pub fn coerce(v: &'a Value) -> Self {
        match v {
            Value::Null => ContextValue::None,
            Value::Bool(b) => ContextValue::Bool(*b),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    ContextValue::Int(PyInt::Small(i128::from(i)))
                } else if let Some(u) = n.as_u64() {
                    ContextValue::Int(PyInt::Small(i128::from(u)))
                } else {
                    ContextValue::Float(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => Self::coerce_str(s),
            Value::Array(_) | Value::Object(_) => ContextValue::Str(Cow::Owned(v.to_string())),
        }
    }

    /// Coercion of a string (see [`ContextValue::coerce`]).
    pub fn coerce_str(s: &'a str) -> Self {
        let digits = s.strip_prefix('-').unwrap_or(s);
        let all_digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if all_digits(digits) {
            return ContextValue::Int(PyInt::from_digits(s.starts_with('-'), digits));
        } else if let Some((int, frac)) = digits.split_once('.') {
            if all_digits(int) && all_digits(frac) {
                if let Ok(f) = s.parse::<f64>() {
                    return ContextValue::Float(f);
                }
            }
        }
        ContextValue::Str(Cow::Borrowed(s))
    }

    /// A small integer value.
    #[cfg(test)]
    pub fn int(v: i128) -> Self {
        ContextValue::Int(PyInt::Small(v))
    }

    /// True for `None`.
    pub fn is_none(&self) -> bool {
        matches!(self, ContextValue::None)
    }

    /// Python `str()` of the value.
    pub fn py_str(&self) -> Cow<'_, str> {
        match self {
            ContextValue::None => Cow::Borrowed("None"),
            ContextValue::Bool(b) => Cow::Borrowed(python::bool_str(*b)),
            ContextValue::Int(i) => Cow::Owned(i.to_string()),
            ContextValue::Float(f) => Cow::Owned(python::float_repr(*f)),
            ContextValue::Str(s) => Cow::Borrowed(s.as_ref()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn c(v: Value) -> ContextValue<'static> {
        match ContextValue::coerce(&v) {
            ContextValue::Str(s) => ContextValue::Str(Cow::Owned(s.into_owned())),
            ContextValue::None => ContextValue::None,
            ContextValue::Bool(b) => ContextValue::Bool(b),
            ContextValue::Int(i) => ContextValue::Int(i),
            ContextValue::Float(f) => ContextValue::Float(f),
        }
    }

    #[test]
    fn coercion_of_strings() {
        assert_eq!(c(json!("007")), ContextValue::int(7));
        assert_eq!(c(json!("-0")), ContextValue::int(0));
        assert_eq!(c(json!("1.50")), ContextValue::Float(1.5));
        assert_eq!(c(json!("-2.5")), ContextValue::Float(-2.5));
        for s in [
            "+5", "1e5", " 7", "１２", "1.", ".5", "-", "", "1.2.3", "abc",
        ] {
            assert_eq!(
                c(json!(s)),
                ContextValue::Str(Cow::Owned(s.to_owned())),
                "{s}"
            );
        }
        let huge = "1".repeat(45);
        assert_eq!(
            c(json!(format!("-0{huge}"))),
            ContextValue::Int(PyInt::Big {
                negative: true,
                digits: huge
            })
        );
    }

    #[test]
    fn coercion_keeps_scalars() {
        assert_eq!(c(json!(true)), ContextValue::Bool(true));
        assert_eq!(c(json!(3)), ContextValue::int(3));
        assert_eq!(c(json!(u64::MAX)), ContextValue::int(i128::from(u64::MAX)));
        assert_eq!(c(json!(1.0)), ContextValue::Float(1.0));
        assert_eq!(c(Value::Null), ContextValue::None);
    }

    #[test]
    fn python_str() {
        assert_eq!(ContextValue::Bool(false).py_str(), "False");
        assert_eq!(ContextValue::Float(1.0).py_str(), "1.0");
        assert_eq!(ContextValue::int(-3).py_str(), "-3");
    }
}
