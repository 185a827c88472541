//! Offline bundles: environments exported from a server into one file (`flagstaff export`) that a
//! relay serves with no upstream (`flagstaff relay --offline`), for networks that never reach
//! the server.
//!
//! A bundle is a gzip-compressed tar archive of two members:
//! - `bundle.json`: [`Bundle`], the environments' SDK data, client-side IDs, secure mode with the
//!   SDK keys' HMAC key schedules, and their credentials as fingerprints (SHA-256 of the secret):
//!   a relay serving a bundle authenticates SDKs as the server does and never holds a key.
//! - `bundle.sig`: the Ed25519 signature of `bundle.json`'s exact bytes (hex), when exported
//!   with a signing key.
//!
//! Reading is for untrusted files: members are read with size limits, unknown members are
//! refused, gzip's own checksum catches a truncated file, and with a verifying key a missing or
//! wrong signature refuses the bundle before anything in it is used.

use std::io::Read as _;

use ed25519_dalek::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _};
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use flagstaff_protocol::FlagData;
use serde::{Deserialize, Serialize};

/// The version of the format this code writes and reads.
pub const FORMAT: u32 = 1;
/// The largest `bundle.json` read (decompressed).
const MAX_JSON_BYTES: u64 = 1024 * 1024 * 1024;
/// The largest signature member read.
const MAX_SIGNATURE_BYTES: u64 = 1024;

/// What a bundle holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Bundle {
    /// [`FORMAT`].
    pub format: u32,
    /// When it was exported (Unix ms).
    pub created_at: i64,
    /// The environments.
    pub environments: Vec<BundledEnvironment>,
}

/// One environment in a bundle.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BundledEnvironment {
    /// Its project's key.
    pub project: String,
    /// Its key.
    pub key: String,
    /// Its client-side ID.
    pub client_side_id: String,
    /// Whether browsers must send the context's hash.
    pub secure_mode: bool,
    /// The credentials that may read it.
    pub credentials: Vec<BundledCredential>,
    /// Its flags and segments as SDKs receive them.
    pub data: FlagData,
}

/// A credential in a bundle (and in the upstream's answer to a relay token).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BundledCredential {
    /// SHA-256 of the secret, hex.
    pub fingerprint: String,
    /// `sdk`, `mobile` or `client-side`.
    pub kind: String,
    /// When a rotated-out key stops working (Unix ms).
    #[serde(default)]
    pub expires_at: Option<i64>,
    /// For SDK keys: the HMAC key schedule secure mode checks hashes with (hex).
    #[serde(default)]
    pub secure_mode_key: Option<String>,
}

/// Why a bundle was refused.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Not a readable gzip tar archive (or truncated).
    #[error("not a readable bundle (gzip tar): {0}")]
    Archive(String),
    /// A member the format does not have, or a member missing.
    #[error("not a bundle: {0}")]
    Shape(String),
    /// The signature is missing or does not match.
    #[error("the signature does not verify: {0}")]
    Signature(String),
    /// `bundle.json` does not parse.
    #[error("bundle.json: {0}")]
    Json(String),
    /// A key file cannot be read.
    #[error("{0}")]
    Key(String),
}

/// Reads an Ed25519 private key from PKCS#8 PEM (`openssl genpkey -algorithm ed25519`).
pub fn signing_key_from_pem(pem: &str) -> Result<SigningKey, BundleError> {
    SigningKey::from_pkcs8_pem(pem)
        .map_err(|e| BundleError::Key(format!("not an Ed25519 private key in PEM: {e}")))
}

/// Reads an Ed25519 public key from SPKI PEM (`openssl pkey -pubout`).
pub fn verifying_key_from_pem(pem: &str) -> Result<VerifyingKey, BundleError> {
    VerifyingKey::from_public_key_pem(pem)
        .map_err(|e| BundleError::Key(format!("not an Ed25519 public key in PEM: {e}")))
}

/// The archive bytes of a bundle, signed when a key is given.
pub fn write(bundle: &Bundle, signing_key: Option<&SigningKey>) -> std::io::Result<Vec<u8>> {
    let json = serde_json::to_vec(bundle).map_err(std::io::Error::other)?;
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut archive = tar::Builder::new(encoder);
    let mut append = |name: &str, bytes: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(u64::try_from(bundle.created_at / 1000).unwrap_or(0));
        header.set_cksum();
        archive.append_data(&mut header, name, bytes)
    };
    append("bundle.json", &json)?;
    if let Some(key) = signing_key {
        let signature = hex::encode(key.sign(&json).to_bytes());
        append("bundle.sig", signature.as_bytes())?;
    }
    archive.into_inner()?.finish()
}

/// Reads and checks a bundle. With `verifying_key`, only a bundle signed by its private key is
/// accepted.
pub fn read(bytes: &[u8], verifying_key: Option<&VerifyingKey>) -> Result<Bundle, BundleError> {
    let archive_error = |e: std::io::Error| BundleError::Archive(e.to_string());
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let (mut json, mut signature) = (None, None);
    for entry in archive.entries().map_err(archive_error)? {
        let entry = entry.map_err(archive_error)?;
        let name = entry
            .path()
            .map_err(archive_error)?
            .to_string_lossy()
            .into_owned();
        let limit = match name.as_str() {
            "bundle.json" => MAX_JSON_BYTES,
            "bundle.sig" => MAX_SIGNATURE_BYTES,
            other => return Err(BundleError::Shape(format!("unexpected member {other:?}"))),
        };
        let mut content = Vec::new();
        entry
            .take(limit + 1)
            .read_to_end(&mut content)
            .map_err(archive_error)?;
        if content.len() as u64 > limit {
            return Err(BundleError::Shape(format!(
                "{name} is larger than {limit} bytes"
            )));
        }
        let slot = if name == "bundle.json" {
            &mut json
        } else {
            &mut signature
        };
        if slot.replace(content).is_some() {
            return Err(BundleError::Shape(format!("{name} appears twice")));
        }
    }
    // Reading to the end makes the gzip decoder check its CRC and length: a truncated file
    // fails here even when the cut fell after the last member.
    std::io::copy(&mut archive.into_inner(), &mut std::io::sink()).map_err(archive_error)?;
    let json = json.ok_or_else(|| BundleError::Shape("bundle.json is missing".into()))?;
    if let Some(key) = verifying_key {
        let signature =
            signature.ok_or_else(|| BundleError::Signature("the bundle is not signed".into()))?;
        let raw = hex::decode(signature.trim_ascii())
            .map_err(|_| BundleError::Signature("bundle.sig is not hex".into()))?;
        let signature = ed25519_dalek::Signature::from_slice(&raw)
            .map_err(|e| BundleError::Signature(e.to_string()))?;
        key.verify(&json, &signature).map_err(|_| {
            BundleError::Signature("made with another key, or the bundle was changed".into())
        })?;
    }
    let bundle: Bundle =
        serde_json::from_slice(&json).map_err(|e| BundleError::Json(e.to_string()))?;
    if bundle.format != FORMAT {
        return Err(BundleError::Shape(format!(
            "format {} (this Flagstaff reads format {FORMAT})",
            bundle.format
        )));
    }
    Ok(bundle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle() -> Bundle {
        Bundle {
            format: FORMAT,
            created_at: 1_700_000_000_000,
            environments: vec![BundledEnvironment {
                project: "shop".into(),
                key: "production".into(),
                client_side_id: "cid".into(),
                secure_mode: true,
                credentials: vec![BundledCredential {
                    fingerprint: "ab".repeat(32),
                    kind: "sdk".into(),
                    expires_at: None,
                    secure_mode_key: Some("00".repeat(64)),
                }],
                data: FlagData::from_json_str(
                    r#"{"flags":{"a":{"key":"a","version":3,"variations":[true,false]}},"segments":{}}"#,
                )
                .unwrap(),
            }],
        }
    }

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn a_signed_bundle_reads_back_with_its_key_only() {
        let bytes = write(&bundle(), Some(&key(1))).unwrap();
        let read_back = read(&bytes, Some(&key(1).verifying_key())).unwrap();
        assert_eq!(
            read_back.environments[0].data,
            bundle().environments[0].data
        );
        assert!(matches!(
            read(&bytes, Some(&key(2).verifying_key())),
            Err(BundleError::Signature(_))
        ));
        // Without a key to check against, the content is still read.
        assert!(read(&bytes, None).is_ok());
        // An unsigned bundle is refused where a key is expected.
        let unsigned = write(&bundle(), None).unwrap();
        assert!(matches!(
            read(&unsigned, Some(&key(1).verifying_key())),
            Err(BundleError::Signature(_))
        ));
    }

    #[test]
    fn a_tampered_or_truncated_bundle_is_refused() {
        let bytes = write(&bundle(), Some(&key(1))).unwrap();
        // Re-pack the same signature with different content.
        let mut changed = bundle();
        changed.environments[0].data.flags.get_mut("a").unwrap().on = true;
        let json = serde_json::to_vec(&changed).unwrap();
        let original = read(&bytes, None).unwrap();
        assert!(!original.environments[0].data.flags["a"].on);
        let signature = hex::encode(
            key(1)
                .sign(&serde_json::to_vec(&bundle()).unwrap())
                .to_bytes(),
        );
        let mut archive = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::default(),
        ));
        for (name, content) in [
            ("bundle.json", json.as_slice()),
            ("bundle.sig", signature.as_bytes()),
        ] {
            let mut header = tar::Header::new_gnu();
            header.set_size(content.len() as u64);
            header.set_cksum();
            archive.append_data(&mut header, name, content).unwrap();
        }
        let tampered = archive.into_inner().unwrap().finish().unwrap();
        assert!(matches!(
            read(&tampered, Some(&key(1).verifying_key())),
            Err(BundleError::Signature(_))
        ));
        for cut in [10, bytes.len() / 2, bytes.len() - 1] {
            assert!(read(&bytes[..cut], None).is_err(), "cut at {cut}");
        }
        assert!(read(b"not a bundle", None).is_err());
    }
}
