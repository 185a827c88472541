//! Secure mode (`ld-protocol.md` §5.7): a browser must present
//! `h = hex(HMAC-SHA256(key = SDK key, message = fully-qualified context key))`, computed by the
//! customer's server, so that nobody can ask for another person's flags by inventing a context.
//!
//! The SDK key is a secret that Flagstaff keeps only as a SHA-256 fingerprint, so it cannot
//! compute an HMAC with it later. HMAC does not need the key itself, though: only the SHA-256
//! states after absorbing `key XOR ipad` and `key XOR opad` (the "precomputed" values of
//! RFC 2104 §4). [`HmacKey`] is those two states. They are stored beside the key's fingerprint
//! when the key is created or rotated. They allow computing secure-mode hashes, which is what
//! verifying them takes, but not recovering the SDK key (that would need a SHA-256 preimage),
//! so whoever reads the database still cannot use them to download an environment's rules.

use sha2::Digest;
use sha2::digest::generic_array::GenericArray;
use subtle::ConstantTimeEq;

const BLOCK: usize = 64;

/// SHA-256's initial state (FIPS 180-4 §5.3.3).
const H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// The HMAC-SHA256 key schedule of one SDK key.
#[derive(Clone, PartialEq, Eq)]
pub struct HmacKey {
    inner: [u32; 8],
    outer: [u32; 8],
}

impl std::fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HmacKey(..)")
    }
}

fn absorb_block(state: &mut [u32; 8], block: &[u8; BLOCK]) {
    sha2::compress256(state, std::slice::from_ref(GenericArray::from_slice(block)));
}

/// Finishes a SHA-256 whose state has absorbed exactly one block, over `message`.
fn finish(mut state: [u32; 8], message: &[u8]) -> [u8; 32] {
    let total_bits = ((BLOCK + message.len()) as u64).wrapping_mul(8);
    let mut chunks = message.chunks_exact(BLOCK);
    for chunk in &mut chunks {
        let mut block = [0u8; BLOCK];
        block.copy_from_slice(chunk);
        absorb_block(&mut state, &block);
    }
    let rest = chunks.remainder();
    let mut tail = [0u8; 2 * BLOCK];
    tail[..rest.len()].copy_from_slice(rest);
    tail[rest.len()] = 0x80;
    // The length goes in the last 8 bytes of the first block that has room for it.
    let end = if rest.len() + 1 + 8 <= BLOCK {
        BLOCK
    } else {
        2 * BLOCK
    };
    tail[end - 8..end].copy_from_slice(&total_bits.to_be_bytes());
    for block in tail[..end].chunks_exact(BLOCK) {
        let mut b = [0u8; BLOCK];
        b.copy_from_slice(block);
        absorb_block(&mut state, &b);
    }
    let mut out = [0u8; 32];
    for (i, word) in state.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&word.to_be_bytes());
    }
    out
}

impl HmacKey {
    /// The key schedule of `key` (RFC 2104: keys longer than a block are hashed first).
    pub fn new(key: &[u8]) -> HmacKey {
        let mut padded = [0u8; BLOCK];
        if key.len() > BLOCK {
            padded[..32].copy_from_slice(&sha2::Sha256::digest(key));
        } else {
            padded[..key.len()].copy_from_slice(key);
        }
        let mut inner = H0;
        let mut outer = H0;
        absorb_block(&mut inner, &padded.map(|b| b ^ 0x36));
        absorb_block(&mut outer, &padded.map(|b| b ^ 0x5c));
        HmacKey { inner, outer }
    }

    /// HMAC-SHA256 of `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 32] {
        let inner = finish(self.inner, message);
        finish(self.outer, &inner)
    }

    /// Whether `hash` (hex, any case) is the HMAC of `message`. Compares in constant time.
    pub fn verify(&self, message: &[u8], hash: &str) -> bool {
        let Ok(given) = hex::decode(hash.trim()) else {
            return false;
        };
        let expected = self.sign(message);
        // The length is public (a SHA-256 is 32 bytes); the bytes are compared in constant time.
        given.len() == expected.len() && bool::from(given.as_slice().ct_eq(&expected))
    }

    /// The stored form: 128 hex digits.
    pub fn to_hex(&self) -> String {
        let mut bytes = Vec::with_capacity(64);
        for word in self.inner.iter().chain(self.outer.iter()) {
            bytes.extend_from_slice(&word.to_be_bytes());
        }
        hex::encode(bytes)
    }

    /// Reads the stored form.
    pub fn from_hex(text: &str) -> Option<HmacKey> {
        let bytes = hex::decode(text).ok()?;
        if bytes.len() != 64 {
            return None;
        }
        let mut words = bytes
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
        let mut inner = [0u32; 8];
        let mut outer = [0u32; 8];
        for word in inner.iter_mut().chain(outer.iter_mut()) {
            *word = words.next()?;
        }
        Some(HmacKey { inner, outer })
    }
}

/// An environment's secure-mode setting as delivery enforces it: the schedules of the SDK keys
/// that are valid now (more than one during a rotation's grace period), with their expiry.
#[derive(Clone, Debug, Default)]
pub struct SecureMode {
    /// `(key schedule, expires at (ms))` per valid SDK key.
    pub keys: Vec<(HmacKey, Option<i64>)>,
}

impl SecureMode {
    /// Whether `hash` was made for `fully_qualified_key` with an SDK key valid at `now`.
    pub fn accepts(&self, fully_qualified_key: &str, hash: &str, now: i64) -> bool {
        self.keys
            .iter()
            .filter(|(_, expires)| expires.is_none_or(|at| at > now))
            .any(|(key, _)| key.verify(fully_qualified_key.as_bytes(), hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hmac_hex(key: &[u8], message: &[u8]) -> String {
        hex::encode(HmacKey::new(key).sign(message))
    }

    #[test]
    fn rfc_4231_test_cases() {
        assert_eq!(
            hmac_hex(&[0x0b; 20], b"Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hmac_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // A key longer than a block, hashed first.
        assert_eq!(
            hmac_hex(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            ),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        // A message longer than a block.
        assert_eq!(
            hmac_hex(
                &[0xaa; 131],
                b"This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm."
            ),
            "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"
        );
    }

    #[test]
    fn secure_mode_vectors_from_the_spec() {
        // ld-protocol.md §5.7 (from LaunchDarkly's SDK test harness).
        let cases = [
            (
                "sdk-01234567-89ab-cdef-0123-456789abcdef",
                "user-key-123",
                "73df666a13f2c474e50aa34ca5a761e89abb737fb139ff65fdde7fa85c9dcacd",
            ),
            (
                "sdk-11234567-89ab-cdef-0123-456789abcdef",
                "user-key-123",
                "63538426a9845721a5547b4715f4284b060c21743702a896e1ff8a9a5b57215d",
            ),
            (
                "sdk-01234567-89ab-cdef-0123-456789abcdef",
                "user-key-456",
                "55be6b5ceb2a11acc6a7e9c60dbee5022d9c7084baf9ecd8cf69d12bce5a92fb",
            ),
            (
                "sdk-01234567-89ab-cdef-0123-456789abcdef",
                "other:user-key-123",
                "98a933ca26d2951547fc021981ebcdeda95fbca2ac3f767ae67f7042d5458f72",
            ),
        ];
        for (sdk_key, message, expected) in cases {
            let stored = HmacKey::from_hex(&HmacKey::new(sdk_key.as_bytes()).to_hex()).unwrap();
            assert_eq!(hex::encode(stored.sign(message.as_bytes())), expected);
            assert!(stored.verify(message.as_bytes(), &expected.to_uppercase()));
            assert!(!stored.verify(b"someone-else", expected));
        }
    }

    #[test]
    fn every_message_length_around_the_block_boundary_is_padded_right() {
        // 55, 56 and 64 bytes are where SHA-256 padding needs one or two blocks; check against
        // the ordinary two-pass definition of HMAC built on the sha2 crate.
        let key = b"sdk-key";
        for len in 0..200 {
            let message = vec![b'x'; len];
            let mut padded = [0u8; BLOCK];
            padded[..key.len()].copy_from_slice(key);
            let mut inner = sha2::Sha256::new();
            inner.update(padded.map(|b| b ^ 0x36));
            inner.update(&message);
            let mut outer = sha2::Sha256::new();
            outer.update(padded.map(|b| b ^ 0x5c));
            outer.update(inner.finalize());
            assert_eq!(
                HmacKey::new(key).sign(&message).as_slice(),
                outer.finalize().as_slice(),
                "length {len}"
            );
        }
    }

    #[test]
    fn expired_keys_are_not_accepted() {
        let key = HmacKey::new(b"sdk-old");
        let hash = hex::encode(key.sign(b"u"));
        let mode = SecureMode {
            keys: vec![(key, Some(1_000))],
        };
        assert!(mode.accepts("u", &hash, 999));
        assert!(!mode.accepts("u", &hash, 1_000));
        assert!(!mode.accepts("u", "not hex", 0));
    }
}
