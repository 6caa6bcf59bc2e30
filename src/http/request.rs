//! Reading what SDKs send: the deployment key, the user, the flag keys, the tracking mode.
//!
//! Unlike the reference proxy, every decoder here accepts both base64 alphabets (the JS and
//! Python SDKs send URL-safe without padding, the JVM and Go SDKs standard with padding), and
//! malformed input becomes a 400 with a reason instead of a 500.

use axum::http::{header, HeaderMap};
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;

use super::error::ApiError;
use crate::amplitude::engine::{Map, Value};

/// Header carrying the base64 JSON user on GET requests.
pub const USER_HEADER: &str = "x-amp-exp-user";
/// Header carrying the base64 JSON array of flag keys.
pub const FLAG_KEYS_HEADER: &str = "x-amp-exp-flag-keys";
/// Header that turns assignment tracking off (`no-track`).
pub const TRACK_HEADER: &str = "x-amp-exp-track";

/// What an `X-Amp-Exp-Track` header asks for; kept for assignment tracking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackMode {
    /// Track the assignment (the default).
    Track,
    /// Do not track.
    NoTrack,
    /// Do not track (the JS client's `read-only`).
    ReadOnly,
}

impl TrackMode {
    /// Reads the header; an absent or unrecognised value means [`TrackMode::Track`].
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let value = headers.get(TRACK_HEADER).and_then(|v| v.to_str().ok());
        match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            Some("no-track") => Self::NoTrack,
            Some("read-only") => Self::ReadOnly,
            _ => Self::Track,
        }
    }

    /// Whether an assignment event should be recorded.
    pub fn tracks(self) -> bool {
        self == Self::Track
    }
}

/// The key from `Authorization: Api-Key <key>` (scheme case-insensitive), if present and not
/// empty.
pub fn deployment_key(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("api-key") {
        return None;
    }
    let key = key.trim();
    (!key.is_empty()).then_some(key)
}

const BASE64_CONFIG: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
// Statics, not consts: a const used by reference may be copied to the stack at each use.
static STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, BASE64_CONFIG);
static URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, BASE64_CONFIG);

/// Decodes base64 in either alphabet, padded or not.
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    decode_base64_bytes(text.trim().as_bytes())
}

/// [`decode_base64`] of a header value's bytes, without checking them as text first: a byte
/// that is not base64 fails the decode all the same, and surrounding spaces and tabs (the only
/// whitespace a header value can hold) are trimmed as `str::trim` would.
///
/// The alphabet is URL-safe when a `-` or `_` occurs anywhere, else standard; either way, padded
/// or not. Every whole group of four symbols before the last 1-4 is decoded by one table pass
/// that also notes which alphabet-specific symbols it saw; the last symbols (where padding and
/// the trailing-bit rule apply) are decoded by the `base64` crate. Input with a byte outside
/// both alphabets in those groups, or with symbols of both alphabets, goes to the crate whole,
/// so what is accepted and rejected is the crate's decision.
///
/// Why: the user header of `GET /sdk/v2/vardata` is ~800 bytes; checking it as a `str`,
/// scanning it for the URL-safe symbols and the crate's general-purpose decoder cost ~18k
/// instructions per request, about an eighth of the request.
pub fn decode_base64_bytes(bytes: &[u8]) -> Option<Vec<u8>> {
    let bytes = bytes.trim_ascii();
    if bytes.len() <= 8 {
        return decode_with_crate(bytes);
    }
    let tail_len = match bytes.len() % 4 {
        0 => 4,
        n => n,
    };
    let (head, tail) = bytes.split_at(bytes.len() - tail_len);
    let head_out = head.len() / 4 * 3;
    // Sized once; the tail (at most 3 bytes) is decoded into the spare end, then cut off.
    let mut out = vec![0u8; head_out + 8];
    let (body, spare) = out.split_at_mut(head_out);
    let mut seen = 0u8;
    for (quad, dst) in head.chunks_exact(4).zip(body.chunks_exact_mut(3)) {
        let a = SEXTETS[usize::from(quad[0])];
        let b = SEXTETS[usize::from(quad[1])];
        let c = SEXTETS[usize::from(quad[2])];
        let d = SEXTETS[usize::from(quad[3])];
        seen |= a | b | c | d;
        let group = (u32::from(a & 0x3f) << 18)
            | (u32::from(b & 0x3f) << 12)
            | (u32::from(c & 0x3f) << 6)
            | u32::from(d & 0x3f);
        let [_, x, y, z] = group.to_be_bytes();
        dst.copy_from_slice(&[x, y, z]);
    }
    if seen & (STANDARD_ONLY | URL_SAFE_ONLY) == STANDARD_ONLY | URL_SAFE_ONLY {
        // A byte outside both alphabets, or `+`/`/` together with `-`/`_`.
        return decode_with_crate(bytes);
    }
    let url_safe = seen & URL_SAFE_ONLY != 0 || tail.iter().any(|&b| b == b'-' || b == b'_');
    let engine = if url_safe { &URL_SAFE } else { &STANDARD };
    if url_safe && seen & STANDARD_ONLY != 0 {
        return None; // `+` or `/` in URL-safe input: the crate rejects it too.
    }
    let n = engine.decode_slice(tail, spare).ok()?;
    out.truncate(head_out + n);
    Some(out)
}

/// The whole decode by the `base64` crate (short or unusual input).
fn decode_with_crate(bytes: &[u8]) -> Option<Vec<u8>> {
    if bytes.iter().any(|&b| b == b'-' || b == b'_') {
        URL_SAFE.decode(bytes).ok()
    } else {
        STANDARD.decode(bytes).ok()
    }
}

/// Flag in [`SEXTETS`]: a symbol of the standard alphabet only (`+`, `/`).
const STANDARD_ONLY: u8 = 0x40;
/// Flag in [`SEXTETS`]: a symbol of the URL-safe alphabet only (`-`, `_`).
const URL_SAFE_ONLY: u8 = 0x80;

/// Each byte's 6-bit value in either alphabet, with [`STANDARD_ONLY`] or [`URL_SAFE_ONLY`] set
/// for the symbols of one alphabet, and both flags for bytes in neither (padding included).
static SEXTETS: [u8; 256] = {
    let mut table = [STANDARD_ONLY | URL_SAFE_ONLY; 256];
    let common = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut i = 0;
    while i < common.len() {
        table[common[i] as usize] = i as u8;
        i += 1;
    }
    table[b'+' as usize] = 62 | STANDARD_ONLY;
    table[b'/' as usize] = 63 | STANDARD_ONLY;
    table[b'-' as usize] = 62 | URL_SAFE_ONLY;
    table[b'_' as usize] = 63 | URL_SAFE_ONLY;
    table
};

/// Parses a JSON object (the user); anything else is a 400 naming `what`.
pub fn parse_user_object(bytes: &[u8], what: &str) -> Result<Map, ApiError> {
    match Value::from_json_slice(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request(format!(
            "{what} must be a JSON object"
        ))),
        Err(e) => Err(ApiError::bad_request(format!(
            "{what} is not valid JSON: {e}"
        ))),
    }
}

/// The user of a GET request: `X-Amp-Exp-User` if present, else the `context` query parameter,
/// then `user_id` and `device_id` query parameters override those fields.
pub fn user_from_get(headers: &HeaderMap, query: &Query) -> Result<Map, ApiError> {
    let mut user = match headers.get(USER_HEADER) {
        Some(value) => {
            let json = decode_base64_bytes(value.as_bytes())
                .ok_or_else(|| ApiError::bad_request("X-Amp-Exp-User is not valid base64"))?;
            parse_user_object(&json, "X-Amp-Exp-User")?
        }
        None => match query.first("context") {
            Some(context) => parse_user_object(context.as_bytes(), "query parameter context")?,
            None => Map::default(),
        },
    };
    for field in ["user_id", "device_id"] {
        if let Some(value) = query.first(field) {
            user.insert(field.to_owned(), Value::String(value.to_owned()));
        }
    }
    Ok(user)
}

/// The flag keys to evaluate: `X-Amp-Exp-Flag-Keys` (base64 JSON array of strings), else the
/// comma-separated `flag_keys` or `flag_key` query parameter. Empty means all flags.
pub fn flag_keys(headers: &HeaderMap, query: &Query) -> Result<Vec<String>, ApiError> {
    if let Some(value) = headers.get(FLAG_KEYS_HEADER) {
        let invalid = || {
            ApiError::bad_request("X-Amp-Exp-Flag-Keys must be base64 of a JSON array of strings")
        };
        let text = value.to_str().map_err(|_| invalid())?;
        let json = decode_base64(text).ok_or_else(invalid)?;
        return serde_json::from_slice::<Vec<String>>(&json).map_err(|_| invalid());
    }
    let keys = query.first("flag_keys").or_else(|| query.first("flag_key"));
    Ok(keys
        .map(|keys| keys.split(',').map(|k| k.trim().to_owned()).collect())
        .unwrap_or_default())
}

/// Whether the client accepts a gzip-encoded response (`Accept-Encoding` lists gzip with a
/// non-zero quality, or `*`).
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    value.split(',').any(|item| {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim();
        let quality_zero = parts.any(|p| {
            let p = p.trim();
            p.strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !quality_zero
    })
}

/// Decoded query parameters, in order, repeated names kept.
#[derive(Debug, Default)]
pub struct Query(Vec<(String, String)>);

impl Query {
    /// Decodes a raw query string.
    pub fn parse(raw: Option<&str>) -> Self {
        let pairs = raw
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        Self(pairs)
    }

    /// The first value of a parameter, as the reference proxy reads it.
    pub fn first(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn deployment_key_scheme_is_case_insensitive() {
        assert_eq!(
            deployment_key(&headers(&[("authorization", "Api-Key abc")])),
            Some("abc")
        );
        assert_eq!(
            deployment_key(&headers(&[("authorization", "api-key  abc ")])),
            Some("abc")
        );
        assert_eq!(
            deployment_key(&headers(&[("authorization", "Api-Key")])),
            None
        );
        assert_eq!(
            deployment_key(&headers(&[("authorization", "Api-Key ")])),
            None
        );
        assert_eq!(
            deployment_key(&headers(&[("authorization", "Bearer abc")])),
            None
        );
        assert_eq!(deployment_key(&HeaderMap::new()), None);
    }

    #[test]
    fn both_base64_alphabets_padded_or_not() {
        // ">>>?" encodes to "Pj4+Pw==" (standard) and "Pj4-Pw" (URL-safe, unpadded).
        for text in ["Pj4+Pw==", "Pj4+Pw", "Pj4-Pw", "Pj4-Pw=="] {
            assert_eq!(decode_base64(text).as_deref(), Some(&b">>>?"[..]), "{text}");
        }
        assert_eq!(decode_base64("not base64!"), None);
    }

    /// The header path decodes bytes directly; it must accept and reject what decoding the
    /// header as text did (`to_str`, `trim`, then the alphabet check).
    #[test]
    fn header_bytes_decode_like_header_text() {
        let user = br#"{"user_id":"u>>?","device_id":"d"}"#;
        let standard = STANDARD.encode(user);
        let url_safe = URL_SAFE.encode(user);
        assert!(standard.contains('+') && url_safe.contains('-'));
        let cases = [
            standard.clone(),
            url_safe.clone(),
            format!(" \t{standard}\t "),
            format!("  {url_safe}"),
            standard.trim_end_matches('=').to_owned(),
            format!("{standard}-"),
            standard.replace('+', "-"),
            format!("{url_safe}+"),
            "e30".to_owned(),
            "not base64!".to_owned(),
            String::new(),
            " \t ".to_owned(),
        ];
        for text in &cases {
            let value = HeaderValue::from_str(text).unwrap();
            let old = value.to_str().ok().and_then(decode_base64);
            assert_eq!(decode_base64_bytes(value.as_bytes()), old, "{text:?}");
        }
        assert_eq!(
            decode_base64_bytes(standard.as_bytes()).as_deref(),
            Some(&user[..])
        );
        // Bytes that are not visible ASCII: `to_str` refused them, the decode refuses them.
        let mut opaque = standard.clone().into_bytes();
        opaque.push(0xa0);
        let value = HeaderValue::from_bytes(&opaque).unwrap();
        assert!(value.to_str().is_err());
        assert_eq!(decode_base64_bytes(value.as_bytes()), None);
    }

    /// What `decode_base64_bytes` did before the table decoder: the oracle for it.
    fn crate_decode(bytes: &[u8]) -> Option<Vec<u8>> {
        let bytes = bytes.trim_ascii();
        if bytes.iter().any(|&b| b == b'-' || b == b'_') {
            URL_SAFE.decode(bytes).ok()
        } else {
            STANDARD.decode(bytes).ok()
        }
    }

    #[test]
    fn table_decoder_agrees_with_the_crate_on_edge_cases() {
        let long = STANDARD.encode(b"a user header that is longer than eight symbols");
        let cases = [
            long.clone(),
            long.trim_end_matches('=').to_owned(),
            format!("{long}="),
            format!("{long}A"),
            format!("{long}AA"),
            format!("AAAA{long}"),
            format!("AB=C{long}"),
            format!("{}=={}", &long[..8], &long[8..]),
            "QUJDREVGR0hJ".to_owned(),
            "QUJDREVGR0hJSw".to_owned(),
            "QUJDREVGR0hJSw==".to_owned(),
            "QUJDREVGR0hJSx==".to_owned(),
            "QUJDREVGR0hJS===".to_owned(),
            "QUJDREVGR0hJS".to_owned(),
            "QUJDREVGR0hJ====".to_owned(),
            "QUJDREVGR0hJ\tQUJD".to_owned(),
            "QUJD-EVGR0hJ+w==".to_owned(),
            "QUJD_EVGR0hJ".to_owned(),
            "QUJD+EVGR0hJS-".to_owned(),
            "QUJD-EVGR0hJS+".to_owned(),
            "QUJD+EVGR0hJS_==".to_owned(),
            "QUJDREVGR0hJSw-=".to_owned(),
            "QUJD\u{e9}VGR0hJ".to_owned(),
        ];
        for text in &cases {
            assert_eq!(
                decode_base64(text),
                crate_decode(text.as_bytes()),
                "{text:?}"
            );
        }
        assert_eq!(
            decode_base64(&long).as_deref(),
            Some(&b"a user header that is longer than eight symbols"[..])
        );
    }

    proptest::proptest! {
        /// Any string over both alphabets, padding and a few strangers decodes (or fails) as
        /// the `base64` crate decodes it.
        #[test]
        fn table_decoder_agrees_with_the_crate(text in "[A-Za-z0-9+/_=-]{0,48}[ =.]{0,2}") {
            proptest::prop_assert_eq!(decode_base64_bytes(text.as_bytes()), crate_decode(text.as_bytes()));
        }

        /// Real encodings of random bytes, padded or not, in both alphabets.
        #[test]
        fn table_decoder_decodes_encodings(data in proptest::collection::vec(proptest::num::u8::ANY, 0..200), unpadded: bool) {
            for engine in [&STANDARD, &URL_SAFE] {
                let mut text = engine.encode(&data);
                if unpadded {
                    text = text.trim_end_matches('=').to_owned();
                }
                proptest::prop_assert_eq!(decode_base64_bytes(text.as_bytes()), Some(data.clone()));
            }
        }
    }

    #[test]
    fn user_header_is_decoded_and_query_ids_override_it() {
        let encoded = URL_SAFE.encode(br#"{"user_id":"a","x":[1,2]}"#);
        let user = user_from_get(
            &headers(&[("x-amp-exp-user", &format!(" {encoded} "))]),
            &Query::parse(Some("device_id=d")),
        )
        .unwrap();
        assert_eq!(
            Value::Object(user).to_json_string(),
            r#"{"user_id":"a","x":[1,2],"device_id":"d"}"#
        );
        let error = user_from_get(&headers(&[("x-amp-exp-user", "%%%")]), &Query::default());
        assert!(error.is_err());
    }

    #[test]
    fn query_user_overrides_context() {
        let query = Query::parse(Some(
            "context=%7B%22user_id%22%3A%22a%22%2C%22x%22%3A1%7D&user_id=b&device_id=d",
        ));
        let user = user_from_get(&HeaderMap::new(), &query).unwrap();
        assert_eq!(
            Value::Object(user).to_json_string(),
            r#"{"user_id":"b","x":1,"device_id":"d"}"#
        );
    }

    #[test]
    fn flag_keys_from_header_or_query() {
        let encoded = STANDARD.encode(br#"["a","b"]"#);
        let from_header = flag_keys(
            &headers(&[("x-amp-exp-flag-keys", &encoded)]),
            &Query::default(),
        );
        assert_eq!(from_header.unwrap(), ["a", "b"]);
        assert_eq!(
            flag_keys(&HeaderMap::new(), &Query::parse(Some("flag_key=a,b"))).unwrap(),
            ["a", "b"]
        );
        assert_eq!(
            flag_keys(&HeaderMap::new(), &Query::parse(Some("flag_keys=c"))).unwrap(),
            ["c"]
        );
        assert!(flag_keys(
            &headers(&[("x-amp-exp-flag-keys", "e30")]),
            &Query::default()
        )
        .is_err());
    }

    #[test]
    fn gzip_acceptance() {
        assert!(accepts_gzip(&headers(&[(
            "accept-encoding",
            "gzip, deflate"
        )])));
        assert!(accepts_gzip(&headers(&[(
            "accept-encoding",
            "br;q=1, GZIP;q=0.5"
        )])));
        assert!(!accepts_gzip(&headers(&[("accept-encoding", "gzip;q=0")])));
        assert!(!accepts_gzip(&headers(&[("accept-encoding", "identity")])));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn track_mode() {
        assert_eq!(
            TrackMode::from_headers(&headers(&[("x-amp-exp-track", "no-track")])),
            TrackMode::NoTrack
        );
        assert_eq!(TrackMode::from_headers(&HeaderMap::new()), TrackMode::Track);
    }
}
