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

/// SHA-1's initial state (FIPS 180-4 §5.3.1).
const SHA1_INITIAL_STATE: [u32; 5] = [
    0x6745_2301,
    0xEFCD_AB89,
    0x98BA_DCFE,
    0x1032_5476,
    0xC3D2_E1F0,
];

/// A bucketing prefix (`flagKey.salt`, a seed, or `segmentKey.salt`) prepared once at compile
/// time: the text, and a SHA-1 block that already holds `prefix + "."`.
///
/// Bucketing inputs are short, so nearly always one 64-byte block. For those, an evaluation
/// copies the template, appends the attribute value and the padding, and hands the block straight
/// to the compression function, skipping the general hasher's buffering. That halves the work
/// around the compression itself, which is the floor (about 55 ns with SHA-NI on our CI machine).
/// Longer inputs take the general path; `tests::one_block_path_matches_sha1` checks that both
/// agree at every length.
#[derive(Clone, Debug)]
pub(crate) struct BucketPrefix {
    text: Box<str>,
    block: [u8; 64],
}

/// Longest message that fits one block with SHA-1's padding (one 0x80 byte and a 64-bit length).
const ONE_BLOCK: usize = 55;

impl BucketPrefix {
    pub(crate) fn new(prefix: &str) -> BucketPrefix {
        let mut block = [0u8; 64];
        if prefix.len() < ONE_BLOCK {
            block[..prefix.len()].copy_from_slice(prefix.as_bytes());
            block[prefix.len()] = b'.';
        }
        BucketPrefix {
            text: prefix.into(),
            block,
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    /// The first 60 bits (15 hex digits) of SHA-1 over `prefix.id[.secondary]`.
    fn hash(&self, id: &[u8], secondary: Option<&str>) -> u64 {
        let head = self.text.len() + 1;
        let len = head + id.len() + secondary.map_or(0, |s| 1 + s.len());
        let state = if len <= ONE_BLOCK {
            // Built in place in the compression function's own block type, so that the bytes
            // written here are not copied again before they are read.
            let mut block = sha1::digest::generic_array::GenericArray::from(self.block);
            block[head..head + id.len()].copy_from_slice(id);
            if let Some(secondary) = secondary {
                let at = head + id.len();
                block[at] = b'.';
                block[at + 1..len].copy_from_slice(secondary.as_bytes());
            }
            block[len] = 0x80;
            block[56..].copy_from_slice(&(len as u64 * 8).to_be_bytes());
            let mut state = SHA1_INITIAL_STATE;
            sha1::compress(&mut state, std::slice::from_ref(&block));
            state
        } else {
            let mut hasher = Sha1::new();
            hasher.update(self.text.as_bytes());
            hasher.update(b".");
            hasher.update(id);
            if let Some(secondary) = secondary {
                hasher.update(b".");
                hasher.update(secondary.as_bytes());
            }
            let digest = hasher.finalize();
            let word = |i: usize| {
                u32::from_be_bytes([digest[i], digest[i + 1], digest[i + 2], digest[i + 3]])
            };
            [word(0), word(4), 0, 0, 0]
        };
        ((u64::from(state[0]) << 32) | u64::from(state[1])) >> 4
    }
}

/// The bucket of `value`, or `None` when the value cannot be bucketed (it is not a string or an
/// integral number); callers then use bucket 0, as every SDK does.
#[inline]
pub(crate) fn bucket(
    prefix: &BucketPrefix,
    value: AttrValue<'_>,
    secondary: Option<&str>,
) -> Option<f32> {
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
    Some(prefix.hash(id, secondary) as f32 / BUCKET_SCALE)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn scaled(prefix: &str, value: AttrValue<'_>) -> u32 {
        (bucket(&BucketPrefix::new(prefix), value, None).unwrap() * 100_000.0) as u32
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
    fn one_block_path_matches_sha1() {
        let text: String = (0..120)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        for prefix_len in [0, 1, 20, 54, 55, 60] {
            let prefix = BucketPrefix::new(&text[..prefix_len]);
            for id_len in 0..60 {
                for secondary in [None, Some(""), Some("sec")] {
                    let id = &text.as_bytes()[..id_len];
                    let mut message = format!("{}.", &text[..prefix_len]).into_bytes();
                    message.extend_from_slice(id);
                    if let Some(s) = secondary {
                        message.push(b'.');
                        message.extend_from_slice(s.as_bytes());
                    }
                    let digest = Sha1::digest(&message);
                    let expected = u64::from_be_bytes(digest[..8].try_into().unwrap()) >> 4;
                    assert_eq!(
                        prefix.hash(id, secondary),
                        expected,
                        "prefix {prefix_len}, id {id_len}, {secondary:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn integral_floats_bucket_like_integers_and_others_do_not_bucket() {
        let p = BucketPrefix::new("k.s");
        let as_int = bucket(&p, AttrValue::Json(&json!(33333)), None);
        assert_eq!(bucket(&p, AttrValue::Json(&json!(33333.0)), None), as_int);
        assert_eq!(bucket(&p, AttrValue::Json(&json!(1.5)), None), None);
        assert_eq!(bucket(&p, AttrValue::Bool(true), None), None);
        assert_eq!(bucket(&p, AttrValue::Json(&json!(["a"])), None), None);
        assert_eq!(
            bucket(&p, AttrValue::Json(&json!(-7)), None),
            bucket(&p, AttrValue::Str("-7"), None)
        );
    }
}
