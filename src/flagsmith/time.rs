//! The few date conversions the Flagsmith layer needs, without a date crate: the document's
//! ISO-8601 `updated_at` to epoch seconds (for `If-Modified-Since`), epoch seconds to an
//! RFC 1123 HTTP date, and epoch milliseconds to the naive ISO timestamp the reference's
//! health endpoint reports.

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn digits(text: &str, range: std::ops::Range<usize>) -> Option<i64> {
    let part = text.get(range)?;
    if part.bytes().all(|b| b.is_ascii_digit()) {
        part.parse().ok()
    } else {
        None
    }
}

/// Parses `YYYY-MM-DD[T ]HH:MM:SS[.fraction][Z|±HH:MM|±HHMM]` to whole epoch seconds. A time
/// without an offset is taken as UTC (the reference uses the host's zone, which in containers
/// is UTC). `None` when unparsable.
pub fn parse_iso8601(text: &str) -> Option<i64> {
    let text = text.trim();
    let b = text.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (
        digits(text, 0..4)?,
        digits(text, 5..7)?,
        digits(text, 8..10)?,
    );
    let (hour, minute, second) = (
        digits(text, 11..13)?,
        digits(text, 14..16)?,
        digits(text, 17..19)?,
    );
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let end = fraction
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(fraction.len());
        if end == 0 {
            return None;
        }
        rest = &fraction[end..];
    }
    let offset = match rest {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return None,
            };
            let body = rest[1..].replace(':', "");
            if body.len() != 4 {
                return None;
            }
            let (h, m) = (digits(&body, 0..2)?, digits(&body, 2..4)?);
            sign * (h * 3600 + m * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// Formats epoch seconds as an RFC 1123 HTTP date: `Sun, 20 Jul 1969 20:17:40 GMT`.
pub fn http_date(epoch_seconds: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = epoch_seconds.div_euclid(86_400);
    let secs = epoch_seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let weekday = DAYS[days.rem_euclid(7) as usize];
    let month_name = MONTHS[(month - 1).clamp(0, 11) as usize];
    format!(
        "{weekday}, {day:02} {month_name} {year:04} {:02}:{:02}:{:02} GMT",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Formats epoch milliseconds as `YYYY-MM-DDTHH:MM:SS.ffffff` (UTC, no offset; the fraction
/// is omitted when zero), like Python's `datetime.isoformat()` of the reference.
pub fn iso_naive(epoch_millis: u64) -> String {
    let millis = i64::try_from(epoch_millis).unwrap_or(i64::MAX);
    let secs = millis.div_euclid(1000);
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    let base = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        s / 3600,
        s % 3600 / 60,
        s % 60
    );
    match millis.rem_euclid(1000) {
        0 => base,
        ms => format!("{base}.{:06}", ms * 1000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_to_http_date_matches_the_reference() {
        let moon = parse_iso8601("1969-07-20T20:17:40Z").unwrap();
        assert_eq!(http_date(moon), "Sun, 20 Jul 1969 20:17:40 GMT");
        let t = parse_iso8601("2024-05-01T10:20:30.123456+00:00").unwrap();
        assert_eq!(http_date(t), "Wed, 01 May 2024 10:20:30 GMT");
        assert_eq!(
            parse_iso8601("2024-05-01T12:20:30+02:00"),
            parse_iso8601("2024-05-01T10:20:30")
        );
        assert_eq!(parse_iso8601("1970-01-01T00:00:00Z"), Some(0));
    }

    #[test]
    fn unparsable_dates_are_none() {
        for bad in [
            "",
            "yesterday",
            "2024-13-01T00:00:00Z",
            "2024-05-01T10:20:30+0",
            "2024-05-01T10:20:30.Z",
        ] {
            assert_eq!(parse_iso8601(bad), None, "{bad}");
        }
    }

    #[test]
    fn naive_iso_timestamps() {
        assert_eq!(iso_naive(0), "1970-01-01T00:00:00");
        assert_eq!(iso_naive(1_714_558_830_123), "2024-05-01T10:20:30.123000");
    }
}
