//! Streaming reader of the cohort API body (spec §4.4):
//! `{"cohortId":..,"groupType":..,"lastModified":..,"size":..,"memberIds":[..]}`.
//!
//! The body can hold tens of millions of ids, so it is never buffered whole: serde walks it
//! from a [`Read`] and hands each member to a [`MemberSink`] as it is read. Fields may come in
//! any order (the reference fails when `memberIds` precedes the others); unknown fields are
//! skipped without being kept. When `cohortId` and `lastModified` precede `memberIds` and the
//! version is not newer than the stored one, reading stops before the array.

use std::cell::Cell;
use std::fmt;
use std::io::Read;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Receives member ids as they are read.
pub trait MemberSink {
    /// Takes one member; an error stops the parse (e.g. more members than allowed).
    fn push(&mut self, member: String) -> Result<(), String>;

    /// The body's `size` field, when it precedes `memberIds`: how many members to expect (a
    /// hint, not trusted).
    fn expect(&mut self, _size: u64) {}
}

/// Most members [`Collect`] reserves room for on the body's word (16.8 M; 400 MB of `String`s).
const MOST_RESERVED: u64 = 1 << 24;

/// Collects members, refusing more than `limit` of them so a lying server cannot exhaust memory.
#[derive(Debug, Default)]
pub struct Collect {
    /// The members read so far.
    pub members: Vec<String>,
    /// Largest number of members accepted.
    pub limit: u64,
}

impl MemberSink for Collect {
    fn push(&mut self, member: String) -> Result<(), String> {
        if self.members.len() as u64 >= self.limit {
            return Err(format!("more than {} members", self.limit));
        }
        self.members.push(member);
        Ok(())
    }

    /// Reserves room up front, so a large cohort's list is not regrown (a doubling briefly
    /// holds the old and the new list: 1.5 times the final size at best).
    fn expect(&mut self, size: u64) {
        let size = size.min(self.limit).min(MOST_RESERVED);
        let more = usize::try_from(size)
            .unwrap_or(0)
            .saturating_sub(self.members.len());
        self.members.reserve_exact(more);
    }
}

/// The description fields of a cohort body; members went to the sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// `cohortId`.
    pub cohort_id: String,
    /// `groupType`.
    pub group_type: String,
    /// `lastModified` (ms).
    pub last_modified: i64,
    /// Array elements read (duplicates included); 0 when `memberIds` is absent.
    pub members_read: u64,
}

/// What reading a body gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A complete cohort.
    Cohort(Header),
    /// `lastModified` is not newer than the stored version; the array was not read.
    NotModified,
}

/// Why a cohort body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Not JSON, not the documented shape, or a required field missing.
    #[error("invalid cohort body: {0}")]
    Invalid(String),
}

/// Reads a cohort body from `reader`, pushing members into `sink`. `stored_last_modified` is
/// the version already stored, if any (enables the short-circuit).
pub fn parse_cohort<R: Read>(
    reader: R,
    stored_last_modified: Option<i64>,
    sink: &mut dyn MemberSink,
) -> Result<Parsed, ParseError> {
    let not_modified = Cell::new(false);
    let mut de =
        serde_json::Deserializer::from_reader(std::io::BufReader::with_capacity(64 * 1024, reader));
    let seed = BodySeed {
        stored_last_modified,
        sink,
        not_modified: &not_modified,
    };
    match seed.deserialize(&mut de) {
        Ok(header) => {
            de.end().map_err(|e| ParseError::Invalid(e.to_string()))?;
            Ok(Parsed::Cohort(header))
        }
        Err(_) if not_modified.get() => Ok(Parsed::NotModified),
        Err(e) => Err(ParseError::Invalid(e.to_string())),
    }
}

struct BodySeed<'a> {
    stored_last_modified: Option<i64>,
    sink: &'a mut dyn MemberSink,
    not_modified: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for BodySeed<'_> {
    type Value = Header;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Header, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BodySeed<'_> {
    type Value = Header;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a cohort object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Header, A::Error> {
        let mut cohort_id: Option<String> = None;
        let mut group_type: Option<String> = None;
        let mut last_modified: Option<i64> = None;
        let mut members_read = 0u64;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "cohortId" => cohort_id = Some(map.next_value::<Lenient>()?.0),
                "groupType" => group_type = Some(map.next_value::<Lenient>()?.0),
                "lastModified" => last_modified = Some(map.next_value::<Millis>()?.0),
                "size" => {
                    if let SizeHint(Some(size)) = map.next_value()? {
                        self.sink.expect(size);
                    }
                }
                "memberIds" => {
                    if let (Some(_), Some(new), Some(stored)) =
                        (&cohort_id, last_modified, self.stored_last_modified)
                    {
                        if new <= stored {
                            self.not_modified.set(true);
                            return Err(de::Error::custom("not modified"));
                        }
                    }
                    members_read += map.next_value_seed(Members {
                        sink: &mut *self.sink,
                    })?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let missing = |name: &str| de::Error::custom(format!("{name} missing"));
        let last_modified = last_modified.ok_or_else(|| missing("lastModified"))?;
        if let Some(stored) = self.stored_last_modified {
            if last_modified <= stored {
                self.not_modified.set(true);
                return Err(de::Error::custom("not modified"));
            }
        }
        Ok(Header {
            cohort_id: cohort_id.ok_or_else(|| missing("cohortId"))?,
            group_type: group_type.ok_or_else(|| missing("groupType"))?,
            last_modified,
            members_read,
        })
    }
}

/// The `memberIds` array, streamed into the sink; yields the element count. `null` is empty.
struct Members<'a> {
    sink: &'a mut dyn MemberSink,
}

impl<'de> DeserializeSeed<'de> for Members<'_> {
    type Value = u64;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Members<'_> {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of member ids")
    }

    fn visit_unit<E: de::Error>(self) -> Result<u64, E> {
        Ok(0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<u64, A::Error> {
        let mut count = 0u64;
        while let Some(Lenient(member)) = seq.next_element()? {
            self.sink.push(member).map_err(de::Error::custom)?;
            count += 1;
        }
        Ok(count)
    }
}

/// A string, or a number taken as its text (the reference's lenient codec does the same).
struct Lenient(String);

impl<'de> de::Deserialize<'de> for Lenient {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Lenient;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Lenient, E> {
                Ok(Lenient(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Lenient, E> {
                Ok(Lenient(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Lenient, E> {
                Ok(Lenient(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Lenient, E> {
                Ok(Lenient(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// The `size` field if it is a non-negative integer; anything else is ignored.
struct SizeHint(Option<u64>);

impl<'de> de::Deserialize<'de> for SizeHint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SizeHint;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a member count")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SizeHint, E> {
                Ok(SizeHint(Some(v)))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<SizeHint, E> {
                Ok(SizeHint(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<SizeHint, E> {
                Ok(SizeHint(None))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<SizeHint, E> {
                Ok(SizeHint(None))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<SizeHint, E> {
                Ok(SizeHint(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<SizeHint, E> {
                Ok(SizeHint(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SizeHint, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(SizeHint(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SizeHint, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(SizeHint(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// Epoch milliseconds as a JSON integer or a numeric string.
struct Millis(i64);

impl<'de> de::Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Millis;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("epoch milliseconds")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Millis, E> {
                Ok(Millis(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Millis, E> {
                i64::try_from(v)
                    .map(Millis)
                    .map_err(|_| E::custom("lastModified out of range"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Millis, E> {
                v.trim()
                    .parse()
                    .map(Millis)
                    .map_err(|_| E::custom("lastModified is not a number"))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str, stored: Option<i64>) -> Result<(Parsed, Vec<String>), ParseError> {
        let mut sink = Collect {
            members: Vec::new(),
            limit: u64::MAX,
        };
        let parsed = parse_cohort(body.as_bytes(), stored, &mut sink)?;
        Ok((parsed, sink.members))
    }

    fn header(id: &str, group_type: &str, lm: i64, read: u64) -> Parsed {
        Parsed::Cohort(Header {
            cohort_id: id.into(),
            group_type: group_type.into(),
            last_modified: lm,
            members_read: read,
        })
    }

    #[test]
    fn reads_the_documented_shape() {
        let (parsed, members) = parse(
            r#"{"cohortId":"c1","groupType":"User","groupTypeId":7,"lastComputed":5,"lastModified":10,"size":2,"memberIds":["a","b"]}"#,
            None,
        )
        .unwrap();
        assert_eq!(parsed, header("c1", "User", 10, 2));
        assert_eq!(members, ["a", "b"]);
    }

    #[test]
    fn any_field_order_works() {
        let (parsed, members) = parse(
            r#"{"memberIds":["x","y","x"],"size":3,"extra":{"deep":[1,{"a":[]}]},"lastModified":"12","groupType":"org name","cohortId":"g"}"#,
            None,
        )
        .unwrap();
        assert_eq!(parsed, header("g", "org name", 12, 3));
        assert_eq!(members, ["x", "y", "x"]);
    }

    #[test]
    fn members_after_the_header_short_circuit_when_not_newer() {
        let body =
            r#"{"cohortId":"c","groupType":"User","lastModified":10,"memberIds":["a",BROKEN"#;
        assert_eq!(parse(body, Some(10)).unwrap().0, Parsed::NotModified);
        assert_eq!(parse(body, Some(11)).unwrap().0, Parsed::NotModified);
        assert!(parse(body, Some(9)).is_err(), "newer: the array is read");
    }

    #[test]
    fn header_after_members_is_compared_at_the_end() {
        let body = r#"{"memberIds":["a"],"cohortId":"c","groupType":"User","lastModified":10}"#;
        assert_eq!(parse(body, Some(10)).unwrap().0, Parsed::NotModified);
        assert_eq!(parse(body, Some(9)).unwrap().0, header("c", "User", 10, 1));
    }

    #[test]
    fn missing_or_null_members_mean_an_empty_cohort() {
        let (parsed, members) = parse(
            r#"{"cohortId":"c","groupType":"User","lastModified":1}"#,
            None,
        )
        .unwrap();
        assert_eq!(parsed, header("c", "User", 1, 0));
        assert!(members.is_empty());
        let (parsed, _) = parse(
            r#"{"cohortId":"c","groupType":"User","lastModified":1,"memberIds":null}"#,
            None,
        )
        .unwrap();
        assert_eq!(parsed, header("c", "User", 1, 0));
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        for body in [
            "",
            "[]",
            "null",
            "{",
            r#"{"cohortId":"c","groupType":"User"}"#,
            r#"{"groupType":"User","lastModified":1}"#,
            r#"{"cohortId":"c","lastModified":1}"#,
            r#"{"cohortId":"c","groupType":"User","lastModified":"soon"}"#,
            r#"{"cohortId":"c","groupType":"User","lastModified":1,"memberIds":"a"}"#,
            r#"{"cohortId":"c","groupType":"User","lastModified":1,"memberIds":[{"a":1}]}"#,
            r#"{"cohortId":"c","groupType":"User","lastModified":1,"memberIds":["a",]}"#,
            r#"{"cohortId":"c","groupType":"User","lastModified":1} trailing"#,
            r#"{"cohortId":"c","groupType":"User","lastModified":1,"memberIds":["a"}"#,
        ] {
            assert!(parse(body, None).is_err(), "{body:?} must be rejected");
        }
    }

    #[test]
    fn the_member_limit_stops_the_parse() {
        let mut sink = Collect {
            members: Vec::new(),
            limit: 2,
        };
        let body =
            r#"{"cohortId":"c","groupType":"User","lastModified":1,"memberIds":["a","b","c"]}"#;
        let error = parse_cohort(body.as_bytes(), None, &mut sink).unwrap_err();
        assert!(error.to_string().contains("more than 2 members"), "{error}");
    }

    /// Produces a cohort body of `n` members on the fly, so the test never holds the body.
    struct Generated {
        n: u64,
        next: u64,
        pending: Vec<u8>,
        stage: u8,
    }

    impl Read for Generated {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            while self.pending.is_empty() {
                match self.stage {
                    0 => {
                        self.pending.extend_from_slice(br#"{"memberIds":["#);
                        self.stage = 1;
                    }
                    1 if self.next < self.n => {
                        if self.next > 0 {
                            self.pending.push(b',');
                        }
                        self.pending
                            .extend_from_slice(format!("\"user-{:012}\"", self.next).as_bytes());
                        self.next += 1;
                    }
                    1 => {
                        self.pending.extend_from_slice(
                            br#"],"cohortId":"big","groupType":"User","lastModified":5}"#,
                        );
                        self.stage = 2;
                    }
                    _ => return Ok(0),
                }
            }
            let n = buf.len().min(self.pending.len());
            buf[..n].copy_from_slice(&self.pending[..n]);
            self.pending.drain(..n);
            Ok(n)
        }
    }

    struct Count(u64, Option<String>);

    impl MemberSink for Count {
        fn push(&mut self, member: String) -> Result<(), String> {
            self.0 += 1;
            self.1 = Some(member);
            Ok(())
        }
    }

    #[test]
    fn a_huge_cohort_streams_through_without_being_held() {
        // 1 million members is a ~20 MB body; only one member at a time is alive here.
        let mut sink = Count(0, None);
        let parsed = parse_cohort(
            Generated {
                n: 1_000_000,
                next: 0,
                pending: Vec::new(),
                stage: 0,
            },
            None,
            &mut sink,
        )
        .unwrap();
        assert_eq!(parsed, header("big", "User", 5, 1_000_000));
        assert_eq!(sink.0, 1_000_000);
        assert_eq!(sink.1.as_deref(), Some("user-000000999999"));
    }

    #[test]
    fn the_size_field_reserves_room_within_the_limit() {
        let read = |body: &str, limit: u64| {
            let mut sink = Collect {
                members: Vec::new(),
                limit,
            };
            let parsed = parse_cohort(body.as_bytes(), None, &mut sink).map(|_| ());
            (parsed.is_ok(), sink.members.capacity(), sink.members.len())
        };
        let body = |size: &str| {
            format!(
                r#"{{"cohortId":"c","groupType":"User","lastModified":1,"size":{size},"memberIds":["a"]}}"#
            )
        };
        let (ok, capacity, len) = read(&body("1000"), 10_000);
        assert!(ok && capacity >= 1000 && len == 1);
        // A lying size is capped by the member limit.
        let (ok, capacity, _) = read(&body("4000000000"), 50);
        assert!(ok && capacity <= 50, "{capacity}");
        for odd in ["-1", "2.5", "\"3\"", "null", "[1]", "{\"a\":1}"] {
            let (ok, capacity, len) = read(&body(odd), 10_000);
            assert!(ok && capacity < 1000 && len == 1, "{odd}");
        }
    }
}
