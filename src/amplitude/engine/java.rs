//! Java/Kotlin standard-library number semantics the engine depends on (spec §3, §4.4, §7.7):
//! `Double.toString`, `Double.parseDouble`'s grammar, `Double.compare`, the kotlinx integer reader
//! and `String.compareTo` (UTF-16 order).

use std::cmp::Ordering;
use std::fmt::Write as _;

/// Appends Java `Double.toString(d)` to `out` (spec §4.4), using Rust's shortest round-trip digits.
pub fn write_double(d: f64, out: &mut String) {
    if d.is_nan() {
        out.push_str("NaN");
        return;
    }
    if d.is_infinite() {
        out.push_str(if d > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    if d == 0.0 {
        out.push_str(if d.is_sign_negative() { "-0.0" } else { "0.0" });
        return;
    }
    // `{:e}` yields the shortest round-trip digits as `d[.ddd]e<exp>`.
    let mut sci = String::with_capacity(32);
    let _ = write!(sci, "{:e}", d.abs());
    let (mantissa, exp) = match sci.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (sci.as_str(), 0),
    };
    let mut digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut exp = exp;
    if digits.len() == 1 {
        // JDK >= 19 picks, among 2-digit candidates, the one closest to the exact value
        // (4.9E-324 rather than 5.0E-324).
        let mut two = String::with_capacity(32);
        let _ = write!(two, "{:.1e}", d.abs());
        if two.parse::<f64>().ok() == Some(d.abs()) {
            if let Some((m, e)) = two.split_once('e') {
                let cand: String = m.chars().filter(|c| *c != '.').collect();
                if !cand.ends_with('0') {
                    digits = cand;
                    exp = e.parse::<i32>().unwrap_or(exp);
                }
            }
        }
    }
    if d < 0.0 {
        out.push('-');
    }
    let abs = d.abs();
    if (1e-3..1e7).contains(&abs) {
        if exp >= 0 {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                out.push_str(&digits);
                for _ in digits.len()..int_len {
                    out.push('0');
                }
                out.push_str(".0");
            } else {
                out.push_str(&digits[..int_len]);
                out.push('.');
                out.push_str(&digits[int_len..]);
            }
        } else {
            out.push_str("0.");
            for _ in 0..(-exp - 1) {
                out.push('0');
            }
            out.push_str(&digits);
        }
    } else {
        out.push_str(&digits[..1]);
        out.push('.');
        if digits.len() > 1 {
            out.push_str(&digits[1..]);
        } else {
            out.push('0');
        }
        out.push('E');
        let _ = write!(out, "{exp}");
    }
}

/// Java `Double.toString(d)` as a new string.
pub fn double_to_string(d: f64) -> String {
    let mut s = String::new();
    write_double(d, &mut s);
    s
}

/// Java `Double.parseDouble` (spec §7.7): `None` when Java would throw `NumberFormatException`.
pub fn parse_double(s: &str) -> Option<f64> {
    let t = s.trim_matches(|c: char| c <= '\u{20}');
    let (neg, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let v = match body {
        "NaN" => f64::NAN,
        "Infinity" => f64::INFINITY,
        _ => {
            let b = body.as_bytes();
            if b.len() > 2 && b[0] == b'0' && (b[1] == b'x' || b[1] == b'X') {
                parse_hex_float(&body[2..])?
            } else {
                parse_decimal(body)?
            }
        }
    };
    Some(if neg { -v } else { v })
}

fn strip_suffix(s: &str) -> &str {
    match s.as_bytes().last() {
        Some(b'f' | b'F' | b'd' | b'D') => &s[..s.len() - 1],
        _ => s,
    }
}

fn count_digits(b: &[u8], i: usize) -> usize {
    b[i..].iter().take_while(|c| c.is_ascii_digit()).count()
}

/// Decimal Java literal without sign: `digits[.digits?]` or `.digits`, exponent, suffix.
fn parse_decimal(body: &str) -> Option<f64> {
    let s = strip_suffix(body);
    let b = s.as_bytes();
    let mut i = 0;
    let int_digits = count_digits(b, i);
    i += int_digits;
    let mut frac_digits = 0;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        frac_digits = count_digits(b, i);
        i += frac_digits;
    }
    if int_digits + frac_digits == 0 {
        return None;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let e = count_digits(b, i);
        if e == 0 {
            return None;
        }
        i += e;
    }
    if i != b.len() {
        return None;
    }
    // Rust's parser accepts exactly this grammar (plus forms we already excluded) and rounds correctly.
    s.parse::<f64>().ok()
}

/// Hexadecimal Java literal after `0x`: hex digits, optional fraction, mandatory binary exponent.
fn parse_hex_float(rest: &str) -> Option<f64> {
    let s = strip_suffix(rest);
    let b = s.as_bytes();
    let mut i = 0;
    let mut mantissa: u64 = 0;
    let mut sticky = false;
    let mut shift: i64 = 0; // binary exponent adjustment
    let mut ndigits = 0;
    let mut seen_point = false;
    while i < b.len() {
        let c = b[i];
        if c == b'.' && !seen_point {
            seen_point = true;
            i += 1;
            continue;
        }
        let Some(d) = (c as char).to_digit(16) else {
            break;
        };
        ndigits += 1;
        if mantissa >> 56 == 0 {
            mantissa = (mantissa << 4) | u64::from(d);
            if seen_point {
                shift -= 4;
            }
        } else {
            sticky |= d != 0;
            if !seen_point {
                shift += 4;
            }
        }
        i += 1;
    }
    if ndigits == 0 || i >= b.len() || (b[i] != b'p' && b[i] != b'P') {
        return None;
    }
    i += 1;
    let mut eneg = false;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        eneg = b[i] == b'-';
        i += 1;
    }
    let ed = count_digits(b, i);
    if ed == 0 || i + ed != b.len() {
        return None;
    }
    let mut exp: i64 = 0;
    for &c in &b[i..] {
        exp = (exp * 10 + i64::from(c - b'0')).min(1 << 20);
    }
    if eneg {
        exp = -exp;
    }
    if sticky {
        mantissa |= 1;
    }
    let total = exp + shift;
    // Approximation: one rounding to 64-bit mantissa then exact power-of-two scaling (documented).
    let mut v = mantissa as f64;
    let mut e = total.clamp(-2200, 2200);
    while e > 0 {
        let step = e.min(1000);
        v *= 2f64.powi(step as i32);
        e -= step;
    }
    while e < 0 {
        let step = (-e).min(1000);
        v /= 2f64.powi(step as i32);
        e += step;
    }
    Some(v)
}

/// Java `Double.compare`: a total order where -0.0 < 0.0 and NaN (any payload) is largest.
pub fn compare_doubles(a: f64, b: f64) -> Ordering {
    let canon = |x: f64| if x.is_nan() { f64::NAN } else { x };
    canon(a).total_cmp(&canon(b))
}

/// Java `String.compareTo`: lexicographic over UTF-16 code units.
pub fn compare_utf16(a: &str, b: &str) -> Ordering {
    if a.is_ascii() && b.is_ascii() {
        return a.as_bytes().cmp(b.as_bytes());
    }
    a.encode_utf16().cmp(b.encode_utf16())
}

/// The kotlinx-serialization 1.6.3 integer reader (spec §3), including its wrap quirk.
pub fn kx_parse_long(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let mut i = 0;
    let neg = b.first() == Some(&b'-');
    if neg {
        i = 1;
    }
    let start = i;
    let mut acc: i64 = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        acc = acc.wrapping_mul(10).wrapping_sub(i64::from(b[i] - b'0'));
        if acc > 0 {
            return None;
        }
        i += 1;
    }
    if i == start {
        return None;
    }
    if i < b.len() {
        if b[i] != b'e' && b[i] != b'E' {
            return None;
        }
        i += 1;
        let mut eneg = false;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            eneg = b[i] == b'-';
            i += 1;
        }
        let estart = i;
        let mut exp: i64 = 0;
        while i < b.len() && b[i].is_ascii_digit() {
            exp = exp
                .saturating_mul(10)
                .saturating_add(i64::from(b[i] - b'0'));
            i += 1;
        }
        if i == estart || i != b.len() {
            return None;
        }
        let e = if eneg { -exp } else { exp };
        let x = (acc as f64) * 10f64.powf(e as f64);
        if !(x >= i64::MIN as f64 && x <= i64::MAX as f64) || x.floor() != x {
            return None;
        }
        acc = x as i64;
    }
    if neg {
        Some(acc)
    } else if acc != i64::MIN {
        Some(-acc)
    } else {
        None
    }
}

/// Java `equalsIgnoreCase` restricted to what matters here (ASCII plus `ſ` folding to `s`).
pub fn equals_ignore_case(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        return a.eq_ignore_ascii_case(b);
    }
    let mut x = a.chars().map(fold);
    let mut y = b.chars().map(fold);
    loop {
        match (x.next(), y.next()) {
            (None, None) => return true,
            (Some(p), Some(q)) if p == q => {}
            _ => return false,
        }
    }
}

fn fold(c: char) -> char {
    // Java compares toUpperCase then toLowerCase per char; single-char mappings approximate it.
    let up = c.to_uppercase();
    let u = if up.len() == 1 {
        up.into_iter().next().unwrap_or(c)
    } else {
        c
    };
    let low = u.to_lowercase();
    if low.len() == 1 {
        low.into_iter().next().unwrap_or(u)
    } else {
        u
    }
}

/// True when `s` is `true` or `false` ignoring case (Java `equalsIgnoreCase`).
pub fn is_boolean_like(s: &str) -> bool {
    s.len() <= 6 && (equals_ignore_case(s, "true") || equals_ignore_case(s, "false"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn double_to_string_cases() {
        let cases = [
            (1.0, "1.0"),
            (100.0, "100.0"),
            (13.12, "13.12"),
            (0.001, "0.001"),
            (9999999.0, "9999999.0"),
            (1e7, "1.0E7"),
            (12345678.9, "1.23456789E7"),
            (1e-4, "1.0E-4"),
            (9.223372036854776e18, "9.223372036854776E18"),
            (-0.0, "-0.0"),
            (1e20, "1.0E20"),
            (0.01, "0.01"),
            (4.9e-324, "4.9E-324"),
        ];
        for (d, s) in cases {
            assert_eq!(double_to_string(d), s);
        }
    }

    #[test]
    fn parse_double_grammar() {
        assert_eq!(parse_double(" 5 "), Some(5.0));
        assert_eq!(parse_double("5f"), Some(5.0));
        assert_eq!(parse_double("1e2"), Some(100.0));
        assert_eq!(parse_double("0x1p4"), Some(16.0));
        assert_eq!(parse_double("0x1.8p1"), Some(3.0));
        assert_eq!(parse_double("0x10"), None);
        assert_eq!(parse_double("abc"), None);
        assert_eq!(parse_double("inf"), None);
        assert_eq!(parse_double("nan"), None);
        assert_eq!(parse_double(""), None);
        assert_eq!(parse_double("1,000"), None);
        assert_eq!(parse_double("5."), Some(5.0));
        assert_eq!(parse_double(".5"), Some(0.5));
        assert_eq!(parse_double("1.e3"), Some(1000.0));
        assert!(parse_double("-NaN").is_some_and(f64::is_nan));
        assert_eq!(parse_double("+Infinity"), Some(f64::INFINITY));
    }

    #[test]
    fn boolean_like_follows_java_equals_ignore_case() {
        assert!(is_boolean_like("TRUE"));
        assert!(is_boolean_like("falſe"));
        assert!(!is_boolean_like("yes"));
        assert_eq!(compare_utf16("\u{ffff}", "\u{10000}"), Ordering::Greater);
        assert_eq!(compare_doubles(-0.0, 0.0), Ordering::Less);
        assert_eq!(compare_doubles(f64::NAN, f64::INFINITY), Ordering::Greater);
        assert_eq!(compare_doubles(f64::NAN, -f64::NAN), Ordering::Equal);
    }

    #[test]
    fn kx_reader() {
        assert_eq!(kx_parse_long("1e3"), Some(1000));
        assert_eq!(kx_parse_long("10e-1"), Some(1));
        assert_eq!(kx_parse_long("1.5e1"), None);
        assert_eq!(kx_parse_long("9223372036854775808"), None);
        assert_eq!(kx_parse_long("-9223372036854775808"), Some(i64::MIN));
        assert_eq!(kx_parse_long("18446744073709551620"), Some(4));
        assert_eq!(kx_parse_long("-0"), Some(0));
        assert_eq!(kx_parse_long("1e20"), None);
        assert_eq!(kx_parse_long("1e-2"), None);
    }
}
