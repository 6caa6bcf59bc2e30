//! Semantic versions as the engine parses and orders them (spec §8). A hand-written linear parser
//! equivalent to the upstream 2.1.0+ pattern, so there is no backtracking at all.

use std::cmp::Ordering;

/// A parsed version: build metadata is discarded, pre-release kept as one string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SemanticVersion {
    /// Major version (int32).
    pub major: i32,
    /// Minor version (int32).
    pub minor: i32,
    /// Patch version; 0 when absent or when it overflows int32 (upstream quirk).
    pub patch: i32,
    /// Pre-release text after `-` (without the dash), if any.
    pub pre_release: Option<String>,
}

fn digits(s: &str) -> usize {
    s.bytes().take_while(u8::is_ascii_digit).count()
}

fn ident_len(s: &str) -> usize {
    s.bytes()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == b'-')
        .count()
}

/// `0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*` on a whole identifier.
fn valid_pre_ident(id: &str) -> bool {
    if id.is_empty() {
        return false;
    }
    if id.bytes().all(|c| c.is_ascii_digit()) {
        return id == "0" || !id.starts_with('0');
    }
    true
}

fn to_int(s: &str) -> Option<i32> {
    s.parse::<i32>().ok()
}

impl SemanticVersion {
    /// Parses a version; `None` when the upstream pattern does not match the whole string or when
    /// major/minor overflow int32.
    pub fn parse(s: &str) -> Option<Self> {
        let n = digits(s);
        if n == 0 {
            return None;
        }
        let major = &s[..n];
        let rest = s[n..].strip_prefix('.')?;
        let n = digits(rest);
        if n == 0 {
            return None;
        }
        let minor = &rest[..n];
        let rest = &rest[n..];
        let (patch, pre_release) = if rest.is_empty() {
            (None, None)
        } else {
            let rest = rest.strip_prefix('.')?;
            let n = digits(rest);
            if n == 0 {
                return None;
            }
            let patch = &rest[..n];
            let (pre, rest) = parse_pre(&rest[n..])?;
            parse_build(rest)?;
            (Some(patch), pre)
        };
        Some(SemanticVersion {
            major: to_int(major)?,
            minor: to_int(minor)?,
            patch: patch.and_then(to_int).unwrap_or(0),
            pre_release: pre_release.filter(|p| !p.is_empty()).map(str::to_string),
        })
    }
}

/// Optional `-ident(.ident)*`; returns the pre-release text and the remainder.
fn parse_pre(s: &str) -> Option<(Option<&str>, &str)> {
    let Some(body) = s.strip_prefix('-') else {
        return Some((None, s));
    };
    let mut i = 0;
    loop {
        let n = ident_len(&body[i..]);
        if !valid_pre_ident(&body[i..i + n]) {
            return None;
        }
        i += n;
        if body[i..].starts_with('.') {
            i += 1;
        } else {
            break;
        }
    }
    Some((Some(&body[..i]), &body[i..]))
}

/// Optional `+ident(.ident)*` that must end the input.
fn parse_build(s: &str) -> Option<()> {
    if s.is_empty() {
        return Some(());
    }
    let body = s.strip_prefix('+')?;
    let mut i = 0;
    loop {
        let n = ident_len(&body[i..]);
        if n == 0 {
            return None;
        }
        i += n;
        if body[i..].starts_with('.') {
            i += 1;
        } else {
            break;
        }
    }
    (i == body.len()).then_some(())
}

impl Ord for SemanticVersion {
    /// Major, minor, patch numerically; then no pre-release > pre-release; then pre-release strings.
    fn cmp(&self, other: &Self) -> Ordering {
        self.major
            .cmp(&other.major)
            .then(self.minor.cmp(&other.minor))
            .then(self.patch.cmp(&other.patch))
            .then_with(|| match (&self.pre_release, &other.pre_release) {
                (None, None) => Ordering::Equal,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(a), Some(b)) => super::java::compare_utf16(a, b),
            })
    }
}

impl PartialOrd for SemanticVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quirks() {
        assert!(SemanticVersion::parse("1.2+b").is_none());
        assert!(SemanticVersion::parse("1.2.3+b").is_some());
        assert!(SemanticVersion::parse("1.2.3-01").is_none());
        assert!(SemanticVersion::parse("10.2.33-alpha1.2.").is_none());
        assert_eq!(
            SemanticVersion::parse("1.2.99999999999").map(|v| v.patch),
            Some(0)
        );
        assert!(SemanticVersion::parse("99999999999.1").is_none());
        assert!(SemanticVersion::parse("1.2.3\n").is_none());
        assert!(SemanticVersion::parse("06.1").is_some_and(|v| v.major == 6));
    }
}
