//! Java-flavoured whole-string regex matching (spec §7.8).
//!
//! A Java pattern is translated token by token into Rust syntax: `.` excludes the Java line
//! terminators, `\d`/`\w`/`\s` become their ASCII classes, `\Q…\E` is quoted, escaped ASCII
//! punctuation becomes a literal, and `\Z` becomes `\z` (equivalent under whole-string matching).
//! The translation is compiled with the linear-time `regex` crate, wrapped as `\A(?:p)\z`; if that
//! fails (lookaround, backreferences, atomic groups), `fancy-regex` is tried. A pattern neither
//! accepts is reported as invalid. Known gaps: possessive quantifiers, `\G`, Java-only named classes
//! such as `\p{Alpha}`, and Unicode-aware `(?i)` (Java's default is ASCII-only).

/// A compiled whole-string matcher.
#[derive(Debug, Clone)]
pub enum JavaRegex {
    /// Compiled by the `regex` crate.
    Fast(regex::Regex),
    /// Compiled by `fancy-regex` (backtracking features).
    Fancy(Box<fancy_regex::Regex>),
}

impl JavaRegex {
    /// Compiles `pattern` with Java syntax; `Err` carries a message for the invalid-regex error.
    pub fn new(pattern: &str) -> Result<JavaRegex, String> {
        let translated = translate(pattern)?;
        let wrapped = format!(r"\A(?:{translated})\z");
        // Generous size limit: configs sometimes hold long alternations of ids.
        let fast = regex::RegexBuilder::new(&wrapped)
            .size_limit(64 << 20)
            .build();
        match fast {
            Ok(r) => Ok(JavaRegex::Fast(r)),
            Err(fast_err) => match fancy_regex::Regex::new(&wrapped) {
                Ok(r) => Ok(JavaRegex::Fancy(Box::new(r))),
                Err(_) => Err(fast_err.to_string()),
            },
        }
    }

    /// True when the whole of `s` matches (Java `Matcher.matches()`).
    pub fn matches(&self, s: &str) -> bool {
        match self {
            JavaRegex::Fast(r) => r.is_match(s),
            // A backtracking-limit error is treated as "no match".
            JavaRegex::Fancy(r) => r.is_match(s).unwrap_or(false),
        }
    }
}

const DOT: &str = r"[^\n\r\x{85}\x{2028}\x{2029}]";
const SPACE_CHARS: &str = r"\t\n\x0B\f\r ";
const HORIZONTAL: &str = r" \t\xA0\x{1680}\x{180e}\x{2000}-\x{200a}\x{202f}\x{205f}\x{3000}";
const VERTICAL: &str = r"\n\x0B\f\r\x{85}\x{2028}\x{2029}";

/// Java's POSIX (US-ASCII) property classes mapped to Rust's ASCII class names.
fn posix_class(name: &str) -> Option<&'static str> {
    Some(match name {
        "Lower" => "lower",
        "Upper" => "upper",
        "ASCII" => "ascii",
        "Alpha" => "alpha",
        "Digit" => "digit",
        "Alnum" => "alnum",
        "Punct" => "punct",
        "Graph" => "graph",
        "Print" => "print",
        "Blank" => "blank",
        "Cntrl" => "cntrl",
        "XDigit" => "xdigit",
        "Space" => "space",
        _ => return None,
    })
}

fn translate(p: &str) -> Result<String, String> {
    let mut out = String::with_capacity(p.len() + 16);
    let chars: Vec<char> = p.chars().collect();
    let mut i = 0;
    let mut class_depth = 0usize;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '\\' => {
                let Some(&n) = chars.get(i) else {
                    return Err("unexpected trailing backslash".to_string());
                };
                i += 1;
                translate_escape(n, class_depth > 0, &chars, &mut i, &mut out);
            }
            '[' => {
                class_depth += 1;
                out.push('[');
                if chars.get(i) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
            }
            ']' if class_depth > 0 => {
                class_depth -= 1;
                out.push(']');
            }
            '.' if class_depth == 0 => out.push_str(DOT),
            _ if class_depth > 0 && matches!(c, '-' | '&' | '~') => {
                // Rust treats `--` and `~~` as class set operators; Java does not.
                if c == '&' && chars.get(i) == Some(&'&') {
                    out.push_str("&&");
                    i += 1;
                } else if c == '&' || c == '~' {
                    out.push('\\');
                    out.push(c);
                } else {
                    out.push('-');
                }
            }
            _ => out.push(c),
        }
    }
    Ok(out)
}

fn translate_escape(n: char, in_class: bool, chars: &[char], i: &mut usize, out: &mut String) {
    match n {
        'd' => out.push_str(if in_class { "0-9" } else { "[0-9]" }),
        'w' => out.push_str(if in_class {
            "a-zA-Z_0-9"
        } else {
            "[a-zA-Z_0-9]"
        }),
        's' if in_class => out.push_str(SPACE_CHARS),
        's' => {
            out.push('[');
            out.push_str(SPACE_CHARS);
            out.push(']');
        }
        'D' if !in_class => out.push_str("[^0-9]"),
        'W' if !in_class => out.push_str("[^a-zA-Z_0-9]"),
        'S' if !in_class => {
            out.push_str("[^");
            out.push_str(SPACE_CHARS);
            out.push(']');
        }
        'D' | 'W' | 'S' => {
            out.push('\\');
            out.push(n);
        }
        'Z' => out.push_str(r"\z"),
        'h' | 'H' | 'v' | 'V' => {
            let set = if n.eq_ignore_ascii_case(&'h') {
                HORIZONTAL
            } else {
                VERTICAL
            };
            match (in_class, n.is_ascii_uppercase()) {
                (true, false) => out.push_str(set),
                (false, false) => {
                    out.push('[');
                    out.push_str(set);
                    out.push(']');
                }
                (_, true) => {
                    out.push_str("[^");
                    out.push_str(set);
                    out.push(']');
                }
            }
        }
        'p' | 'P' if chars.get(*i) == Some(&'{') => {
            let end = chars[*i..].iter().position(|c| *c == '}').map(|p| *i + p);
            let name: Option<String> = end.map(|e| chars[*i + 1..e].iter().collect());
            match (end, name.as_deref().and_then(posix_class)) {
                (Some(e), Some(class)) => {
                    *i = e + 1;
                    let neg = if n == 'P' { "^" } else { "" };
                    if in_class {
                        out.push_str(&format!("[:{neg}{class}:]"));
                    } else {
                        out.push_str(&format!("[[:{neg}{class}:]]"));
                    }
                }
                _ => {
                    out.push('\\');
                    out.push(n);
                }
            }
        }
        'Q' => {
            while *i < chars.len() {
                if chars[*i] == '\\' && chars.get(*i + 1) == Some(&'E') {
                    *i += 2;
                    return;
                }
                push_literal(chars[*i], out);
                *i += 1;
            }
        }
        c if c.is_ascii_punctuation() || c == ' ' => push_literal(c, out),
        c => {
            out.push('\\');
            out.push(c);
        }
    }
}

fn push_literal(c: char, out: &mut String) {
    // `regex::escape` escapes exactly the characters Rust treats as meta (not `<`/`>`, which
    // would become word boundaries).
    let mut buf = [0u8; 4];
    out.push_str(regex::escape(c.encode_utf8(&mut buf)).as_str());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        JavaRegex::new(p).unwrap().matches(s)
    }

    #[test]
    fn whole_match_and_java_classes() {
        assert!(m("/path/.*/end", "/path/1/2/3/end"));
        assert!(!m("b", "abc"));
        assert!(m(".*b.*", "abc"));
        assert!(!m("a.c", "a\rc"));
        assert!(!m(r"\d", "٣"));
        assert!(m(r"\Q.*\E", ".*"));
        assert!(m(r"a(?=b)b", "ab"));
        assert!(m(r"(a)\1", "aa"));
        assert!(m(r"\<", "<"));
        assert!(m(r"[a-c&&[b]]", "b"));
        assert!(JavaRegex::new("(").is_err());
        assert!(m(r"\p{Alpha}+\P{Digit}", "abc!"));
        assert!(m(r"[\p{Digit}x]+", "1x2"));
        assert!(m(r"a\hb", "a b"));
    }
}
