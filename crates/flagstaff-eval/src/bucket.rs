//! Percentage-rollout bucketing (`ld-protocol.md` §3.8.2).
//!
//! A context's bucket is a number in [0, 1) derived from SHA-1 of
//! `prefix + "." + attributeValue`, where the prefix is `flagKey.salt`, the rollout's seed, or
//! `segmentKey.salt`. The first 15 hex digits (60 bits) of the digest, divided by
//! `0xFFFFFFFFFFFFFFF`, give the bucket. The arithmetic is done in `f32`, exactly as the Go, Java
//! and Rust reference engines do, so that contexts near a bucket boundary land on the same side.
//! Nothing here allocates: the hash is fed incrementally and integers are formatted on the stack.

use flagstaff_protocol::AttrValue;
use serde_json::Value;
use sha1::{Digest, Sha1};

const BUCKET_SCALE: f32 = 0x0FFF_FFFF_FFFF_FFFF_u64 as f32;

/// Formats an integer into `buf` and returns the digits.
fn format_integer(n: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut magnitude = n.unsigned_abs();
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (magnitude % 10) as u8;
        magnitude /= 10;
        if magnitude == 0 {
            break;
        }
    }
    if n < 0 {
        at -= 1;
        buf[at] = b'-';
    }
    &buf[at..]
}

/// The bucket of `value`, or `None` when the value cannot be bucketed (it is not a string or an
/// integral number); callers then use bucket 0, as every SDK does.
pub(crate) fn bucket(prefix: &str, value: AttrValue<'_>, secondary: Option<&str>) -> Option<f32> {
    let mut buf = [0u8; 20];
    let id: &[u8] = match value {
        AttrValue::Str(_) | AttrValue::Json(Value::String(_)) => {
            value.as_str().unwrap_or_default().as_bytes()
        }
        AttrValue::Json(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                format_integer(i, &mut buf)
            } else {
                let f = n.as_f64()?;
                // Integral floats such as 1.0 bucket like the integer 1 (Go, Java, JS, Rust).
                if f.fract() != 0.0 || f.abs() >= 9.2e18 {
                    return None;
                }
                format_integer(f as i64, &mut buf)
            }
        }
        _ => return None,
    };
    let mut hasher = Sha1::new();
    hasher.update(prefix.as_bytes());
    hasher.update(b".");
    hasher.update(id);
    if let Some(secondary) = secondary {
        hasher.update(b".");
        hasher.update(secondary.as_bytes());
    }
    let digest = hasher.finalize();
    let mut first8 = [0u8; 8];
    first8.copy_from_slice(&digest[..8]);
    let first_15_hex_digits = u64::from_be_bytes(first8) >> 4;
    Some(first_15_hex_digits as f32 / BUCKET_SCALE)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn scaled(prefix: &str, value: AttrValue<'_>) -> u32 {
        (bucket(prefix, value, None).unwrap() * 100_000.0) as u32
    }

    /// The vectors of `ld-protocol.md` §3.8.3.
    #[test]
    fn reference_vectors() {
        assert_eq!(scaled("hashKey.saltyA", AttrValue::Str("userKeyA")), 42157);
        assert_eq!(scaled("hashKey.saltyA", AttrValue::Str("userKeyB")), 67084);
        assert_eq!(scaled("hashKey.saltyA", AttrValue::Str("userKeyC")), 10343);
        assert_eq!(scaled("61", AttrValue::Str("userKeyA")), 9801);
        assert_eq!(scaled("61", AttrValue::Str("userKeyB")), 14483);
        assert_eq!(scaled("61", AttrValue::Str("userKeyC")), 92426);
        assert_eq!(
            scaled("hashKey.saltyA", AttrValue::Json(&json!(33333))),
            54771
        );
        assert_eq!(
            scaled("hashKey.saltyA", AttrValue::Json(&json!(99999))),
            73096
        );
        assert_eq!(scaled("segment3.salty", AttrValue::Str("user-key")), 14950);
        assert_eq!(
            scaled("segment3.salty", AttrValue::Str("unmatching-key")),
            36563
        );
    }

    #[test]
    fn integral_floats_bucket_like_integers_and_others_do_not_bucket() {
        let as_int = bucket("k.s", AttrValue::Json(&json!(33333)), None);
        assert_eq!(
            bucket("k.s", AttrValue::Json(&json!(33333.0)), None),
            as_int
        );
        assert_eq!(bucket("k.s", AttrValue::Json(&json!(1.5)), None), None);
        assert_eq!(bucket("k.s", AttrValue::Bool(true), None), None);
        assert_eq!(bucket("k.s", AttrValue::Json(&json!(["a"])), None), None);
        assert_eq!(
            bucket("k.s", AttrValue::Json(&json!(-7)), None),
            bucket("k.s", AttrValue::Str("-7"), None)
        );
    }
}
