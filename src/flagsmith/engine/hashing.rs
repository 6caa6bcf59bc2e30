//! Deterministic bucketing: Flagsmith's md5-based percentage in `[0, 100)`.

use md5::{Digest, Md5};

/// Percentage in `[0, 100)` for a list of ids, bit-exact with the reference:
/// `int(md5(",".join(ids)), 16) % 9999 / 9998 * 100`; a result of exactly 100 is retried
/// with the ids repeated (`a,b,a,b`, then `a,b,a,b,a,b`, …).
pub fn hashed_percentage(ids: &[&str]) -> f64 {
    let mut iterations = 1usize;
    loop {
        let mut hasher = Md5::new();
        for i in 0..ids.len() * iterations {
            if i > 0 {
                hasher.update(b",");
            }
            hasher.update(ids[i % ids.len()].as_bytes());
        }
        let digest: [u8; 16] = hasher.finalize().into();
        let n = u128::from_be_bytes(digest);
        // n % 9999 < 2^14, so the conversion and the division are exact like Python's.
        let value = (n % 9999) as f64 / 9998.0 * 100.0;
        if value != 100.0 || ids.is_empty() {
            return value;
        }
        iterations += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worked_examples_from_spec() {
        assert_eq!(
            hashed_percentage(&["12345", "test_env_foobar"]),
            51.990398079615915
        );
        assert_eq!(hashed_percentage(&["78986", "32103813"]), 49.27985597119424);
        assert_eq!(
            hashed_percentage(&["104", "client_key_1_user1"]),
            27.895579115823168
        );
    }

    #[test]
    fn exactly_100_is_retried_with_repeated_ids() {
        // md5("seg,27259") % 9999 == 9998; "seg,27259,seg,27259" gives 58.38…
        assert_eq!(hashed_percentage(&["seg", "27259"]), 58.38167633526705);
    }

    #[test]
    fn always_below_100() {
        for i in 0..20_000 {
            let id = i.to_string();
            let p = hashed_percentage(&["seg", &id]);
            assert!((0.0..100.0).contains(&p), "{p}");
        }
    }

    #[test]
    fn empty_ids_do_not_loop() {
        let p = hashed_percentage(&[]);
        assert!((0.0..=100.0).contains(&p));
    }
}
