//! Reading a condition's property from the context: trait keys, RFC 9535 JSONPath
//! (`$.identity.traits.plan`, `$.environment.name`, …), and the legacy empty property of
//! `PERCENTAGE_SPLIT`. Paths are parsed once at compile time; the common singular paths
//! are resolved directly, anything else through `serde_json_path` on a JSON view of the
//! context built lazily, at most once per evaluation.

use std::borrow::Cow;

use serde_json::Value;
use serde_json_path::JsonPath;

use super::value::ContextValue;

/// How a compiled condition obtains its context value.
#[derive(Debug, Clone)]
pub enum Accessor {
    /// The raw identity key (legacy `PERCENTAGE_SPLIT` with an empty property); no coercion.
    IdentityKeyRaw,
    /// A trait by key (also used for `$.`-properties that are not valid JSONPath).
    Trait(String),
    /// A valid JSONPath; a trait literally named like the path takes precedence.
    Path {
        /// The property text, looked up as a trait key first.
        raw: String,
        /// The compiled path.
        path: PathKind,
    },
}

/// A compiled JSONPath.
#[derive(Debug, Clone)]
pub enum PathKind {
    /// A singular path of member names, resolved without building JSON.
    Names(NamePath),
    /// Any other path, evaluated on the JSON form of the context.
    General(Box<JsonPath>),
}

/// What a singular member-name path points at.
#[derive(Debug, Clone)]
pub enum NamePath {
    /// `$.environment.key`
    EnvironmentKey,
    /// `$.environment.name`
    EnvironmentName,
    /// `$.identity.identifier`
    Identifier,
    /// `$.identity.key` (enriched)
    IdentityKey,
    /// `$.identity.traits.<name>`
    Trait(String),
    /// `$.segments…` / `$.features…`: walked on the JSON view.
    Json(Vec<String>),
    /// Objects (`$.identity`, `$.environment`, …), children of scalars, unknown members.
    Nothing,
}

impl NamePath {
    fn new(names: Vec<String>) -> NamePath {
        let parts: Vec<&str> = names.iter().map(String::as_str).collect();
        match parts.as_slice() {
            ["environment", "key"] => NamePath::EnvironmentKey,
            ["environment", "name"] => NamePath::EnvironmentName,
            ["identity", "identifier"] => NamePath::Identifier,
            ["identity", "key"] => NamePath::IdentityKey,
            ["identity", "traits", name] => NamePath::Trait((*name).to_owned()),
            ["segments", ..] | ["features", ..] => NamePath::Json(names),
            _ => NamePath::Nothing,
        }
    }
}

/// What an accessor can read: the evaluation's environment and (enriched) identity, plus
/// a lazily built JSON view of the whole context for general JSONPath queries.
pub trait Source {
    /// Environment key.
    fn environment_key(&self) -> &str;
    /// Environment name.
    fn environment_name(&self) -> &str;
    /// Identifier and enriched key, if there is an identity.
    fn identity(&self) -> Option<(&str, &str)>;
    /// A trait value, if there is an identity with that trait.
    fn trait_value(&self, key: &str) -> Option<&Value>;
    /// The JSON form of the enriched context.
    fn json(&self) -> &Value;
}

impl Accessor {
    /// Compiles a condition property for the given operator.
    pub fn compile(property: &str, is_percentage_split: bool) -> Accessor {
        if is_percentage_split && property.is_empty() {
            return Accessor::IdentityKeyRaw;
        }
        if !property.starts_with("$.") {
            return Accessor::Trait(property.to_owned());
        }
        let path = if let Some(names) = simple_names(property) {
            PathKind::Names(NamePath::new(names))
        } else if has_unquoted_non_bmp(property) {
            // The reference's JSONPath lexer only knows BMP characters outside strings.
            return Accessor::Trait(property.to_owned());
        } else {
            match JsonPath::parse(property) {
                Ok(path) => PathKind::General(Box::new(path)),
                Err(_) => return Accessor::Trait(property.to_owned()),
            }
        };
        Accessor::Path {
            raw: property.to_owned(),
            path,
        }
    }

    /// True if resolving this accessor may need [`Source::json`].
    pub fn needs_json(&self) -> bool {
        match self {
            Accessor::Path { path, .. } => match path {
                PathKind::General(_) => true,
                PathKind::Names(names) => matches!(names, NamePath::Json(_)),
            },
            _ => false,
        }
    }

    /// The (coerced, except for [`Accessor::IdentityKeyRaw`]) context value.
    pub fn resolve<'s, S: Source>(&self, src: &'s S) -> ContextValue<'s> {
        match self {
            Accessor::IdentityKeyRaw => match src.identity() {
                Some((_, key)) => ContextValue::Str(Cow::Borrowed(key)),
                None => ContextValue::None,
            },
            Accessor::Trait(key) => src
                .trait_value(key)
                .map_or(ContextValue::None, ContextValue::coerce),
            Accessor::Path { raw, path } => {
                if let Some(v) = src.trait_value(raw).filter(|v| !v.is_null()) {
                    return ContextValue::coerce(v);
                }
                match path {
                    PathKind::Names(names) => resolve_names(names, src),
                    PathKind::General(path) => match path.query(src.json()).first() {
                        Some(v) => scalar(v),
                        None => ContextValue::None,
                    },
                }
            }
        }
    }
}

fn scalar(v: &Value) -> ContextValue<'_> {
    match v {
        Value::Array(_) | Value::Object(_) => ContextValue::None,
        other => ContextValue::coerce(other),
    }
}

fn resolve_names<'s, S: Source>(path: &NamePath, src: &'s S) -> ContextValue<'s> {
    let identity = src.identity();
    match path {
        NamePath::EnvironmentKey => ContextValue::coerce_str(src.environment_key()),
        NamePath::EnvironmentName => ContextValue::coerce_str(src.environment_name()),
        NamePath::Identifier => {
            identity.map_or(ContextValue::None, |(id, _)| ContextValue::coerce_str(id))
        }
        NamePath::IdentityKey => {
            identity.map_or(ContextValue::None, |(_, key)| ContextValue::coerce_str(key))
        }
        NamePath::Trait(name) => match identity {
            Some(_) => src.trait_value(name).map_or(ContextValue::None, scalar),
            None => ContextValue::None,
        },
        NamePath::Json(names) => {
            let mut node = Some(src.json());
            for name in names {
                node = node.and_then(|n| n.get(name.as_str()));
            }
            node.map_or(ContextValue::None, scalar)
        }
        NamePath::Nothing => ContextValue::None,
    }
}

/// Parses `$.a.b['c']["d"]` (member-name shorthands and simple quoted names without
/// escapes) into names; `None` for anything else.
fn simple_names(path: &str) -> Option<Vec<String>> {
    let mut rest = path.strip_prefix('$')?;
    let mut names = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r
                .char_indices()
                .find(|(_, c)| !is_name_char(*c))
                .map_or(r.len(), |(i, _)| i);
            let name = &r[..end];
            let first = name.chars().next()?;
            if first.is_ascii_digit() || first == '-' {
                return None;
            }
            names.push(name.to_owned());
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let quote = r.chars().next().filter(|c| *c == '\'' || *c == '"')?;
            let body = &r[1..];
            let end = body.find(quote)?;
            let name = &body[..end];
            if name.contains('\\') || name.chars().any(|c| (c as u32) < 0x20) {
                return None;
            }
            rest = body[end + 1..].strip_prefix(']')?;
            names.push(name.to_owned());
        } else {
            return None;
        }
    }
    Some(names)
}

/// Member-name-shorthand characters as the reference's lexer (`jsonpath-rfc9535`)
/// accepts them: RFC 9535's set restricted to the BMP, plus `-` after the first character.
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-' || ('\u{80}'..='\u{ffff}').contains(&c)
}

fn has_unquoted_non_bmp(path: &str) -> bool {
    let mut quote: Option<char> = None;
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(_), '\\') => {
                chars.next();
            }
            (Some(q), c) if c == q => quote = None,
            (None, '\'' | '"') => quote = Some(c),
            (None, c) if (c as u32) > 0xffff => return true,
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Src {
        json: Value,
    }

    impl Source for Src {
        fn environment_key(&self) -> &str {
            "env"
        }
        fn environment_name(&self) -> &str {
            "Dev"
        }
        fn identity(&self) -> Option<(&str, &str)> {
            Some(("007", "env_007"))
        }
        fn trait_value(&self, key: &str) -> Option<&Value> {
            self.json["identity"]["traits"].get(key)
        }
        fn json(&self) -> &Value {
            &self.json
        }
    }

    fn src() -> Src {
        Src {
            json: json!({
                "environment": {"key": "env", "name": "Dev"},
                "identity": {"identifier": "007", "key": "env_007",
                             "traits": {"plan": "gold", "[$the.size$]": 3, "$.x": "lit", "n": "1.50"}},
                "features": {"f": {"name": "f", "value": 5}}
            }),
        }
    }

    fn get(prop: &str) -> ContextValue<'static> {
        let s = src();
        let v = Accessor::compile(prop, false).resolve(&s);
        match v {
            ContextValue::Str(c) => ContextValue::Str(Cow::Owned(c.into_owned())),
            ContextValue::None => ContextValue::None,
            ContextValue::Bool(b) => ContextValue::Bool(b),
            ContextValue::Int(i) => ContextValue::Int(i),
            ContextValue::Float(f) => ContextValue::Float(f),
        }
    }

    #[test]
    fn paths_resolve() {
        assert_eq!(get("$.environment.name"), ContextValue::Str("Dev".into()));
        assert_eq!(get("$.identity.identifier"), ContextValue::int(7));
        assert_eq!(get("$.identity"), ContextValue::None);
        assert_eq!(get("$.identity.traits"), ContextValue::None);
        assert_eq!(get("$.identity.traits.n"), ContextValue::Float(1.5));
        assert_eq!(
            get("$.identity.traits['[$the.size$]']"),
            ContextValue::int(3)
        );
        assert_eq!(get("$.leads.to.nowhere"), ContextValue::None);
        assert_eq!(get("$.x"), ContextValue::Str("lit".into()));
        assert_eq!(get("$.features.f.value"), ContextValue::int(5));
        assert_eq!(get("$.identity.traits.*"), ContextValue::Str("gold".into()));
        assert_eq!(get("$..plan"), ContextValue::Str("gold".into()));
        assert_eq!(get("plan"), ContextValue::Str("gold".into()));
        assert_eq!(get("$.  invalid\""), ContextValue::None);
    }

    #[test]
    fn compiled_kinds() {
        assert!(matches!(
            Accessor::compile("$.identity.traits.tamaño", false),
            Accessor::Path {
                path: PathKind::Names(_),
                ..
            }
        ));
        assert!(matches!(
            Accessor::compile("$.  i am not\" a valid jsonpath", false),
            Accessor::Trait(_)
        ));
        assert!(matches!(
            Accessor::compile("", true),
            Accessor::IdentityKeyRaw
        ));
        assert!(matches!(Accessor::compile("", false), Accessor::Trait(_)));
        // Validity as the reference's lexer decides it.
        for valid in [
            "$.identity.traits.a-b",
            "$.a-",
            "$._x",
            "$.x[ 'y' ]",
            "$.x[?@.a==1]",
        ] {
            assert!(
                matches!(Accessor::compile(valid, false), Accessor::Path { .. }),
                "{valid}"
            );
        }
        for invalid in [
            "$.-a",
            "$.1a",
            "$.a b",
            "$.x ",
            "$.x..",
            "$.x[01]",
            "$.t.😀",
            "$.x[?foo(@)]",
        ] {
            assert!(
                matches!(Accessor::compile(invalid, false), Accessor::Trait(_)),
                "{invalid}"
            );
        }
        assert!(matches!(
            Accessor::compile("$.x['😀']", false),
            Accessor::Path { .. }
        ));
        assert!(Accessor::compile("$.identity.traits[0]", false).needs_json());
        assert!(Accessor::compile("$.features.f.value", false).needs_json());
        assert!(!Accessor::compile("$.identity.traits.x", false).needs_json());
    }
}
