//! Strict SemVer 2.0.0 parsing and precedence, as Python `semver` 3 (`Version.parse`).

use std::cmp::Ordering;

/// A parsed version. Numbers are kept as canonical digit strings (no leading zeros), so
/// arbitrarily large components compare correctly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    core: [String; 3],
    prerelease: Option<String>,
    build: Option<String>,
}

fn is_numeric_component(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'))
}

fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

fn is_prerelease_ident(s: &str) -> bool {
    if s.bytes().all(|b| b.is_ascii_digit()) {
        is_numeric_component(s)
    } else {
        !s.is_empty() && s.bytes().all(is_ident_char)
    }
}

fn is_build_ident(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_ident_char)
}

impl Version {
    /// Parses `MAJOR.MINOR.PATCH[-pre][+build]`; `None` if not strictly valid.
    pub fn parse(s: &str) -> Option<Version> {
        let (rest, build) = match s.split_once('+') {
            Some((r, b)) => (r, Some(b)),
            None => (s, None),
        };
        let (core, prerelease) = match rest.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (rest, None),
        };
        let mut parts = core.split('.');
        let mut take = || {
            parts
                .next()
                .filter(|p| is_numeric_component(p))
                .map(str::to_owned)
        };
        let core = [take()?, take()?, take()?];
        if parts.next().is_some() {
            return None;
        }
        if let Some(p) = prerelease {
            if !p.split('.').all(is_prerelease_ident) {
                return None;
            }
        }
        if let Some(b) = build {
            if !b.split('.').all(is_build_ident) {
                return None;
            }
        }
        Some(Version {
            core,
            prerelease: prerelease.map(str::to_owned),
            build: build.map(str::to_owned),
        })
    }

    /// SemVer precedence; build metadata is ignored.
    pub fn precedence(&self, other: &Version) -> Ordering {
        for (a, b) in self.core.iter().zip(other.core.iter()) {
            let ord = cmp_numeric(a, b);
            if ord != Ordering::Equal {
                return ord;
            }
        }
        match (&self.prerelease, &other.prerelease) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(a), Some(b)) => cmp_prerelease(a, b),
        }
    }

    /// Python `x in Version` iterates `(major, minor, patch, prerelease, build)`; a string
    /// can only equal the prerelease or build part.
    pub fn contains_str(&self, s: &str) -> bool {
        self.prerelease.as_deref() == Some(s) || self.build.as_deref() == Some(s)
    }
}

fn cmp_numeric(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn cmp_prerelease(a: &str, b: &str) -> Ordering {
    let mut pa = a.split('.');
    let mut pb = b.split('.');
    loop {
        match (pa.next(), pb.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let xd = x.bytes().all(|c| c.is_ascii_digit());
                let yd = y.bytes().all(|c| c.is_ascii_digit());
                let ord = match (xd, yd) {
                    (true, true) => cmp_numeric(x, y),
                    (true, false) => Ordering::Less,
                    (false, true) => Ordering::Greater,
                    (false, false) => x.cmp(y),
                };
                if ord != Ordering::Equal {
                    return ord;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn strict_parsing() {
        for ok in [
            "1.2.3",
            "0.0.0",
            "1.2.3-alpha.1",
            "1.2.3+b.01",
            "1.2.3-0a.1-x+z",
            "10.20.30",
        ] {
            assert!(Version::parse(ok).is_some(), "{ok}");
        }
        for bad in [
            "1.2",
            "v1.2.3",
            "01.2.3",
            "1.2.3-01",
            "1.2.3-",
            "1.2.3+",
            "1.2.3.4",
            "1.2.3-a..b",
            " 1.2.3",
            "1.2.3\n",
            "1.2.x",
            "",
            "1.2.3-α",
        ] {
            assert!(Version::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn precedence_rules() {
        let order = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "2.0.0",
            "2.1.0",
            "2.1.1",
            "100000000000000000000000.0.0",
        ];
        for w in order.windows(2) {
            assert_eq!(v(w[0]).precedence(&v(w[1])), Ordering::Less, "{w:?}");
        }
        assert_eq!(v("1.2.3+b1").precedence(&v("1.2.3+b2")), Ordering::Equal);
    }
}
