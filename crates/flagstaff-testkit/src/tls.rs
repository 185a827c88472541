//! Throwaway certificate authorities for the TLS tests: a CA that exists only for one test, and
//! server certificates it issues for 127.0.0.1 and localhost.

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// A certificate authority made for one test.
pub struct Authority {
    key: rcgen::KeyPair,
    certificate: rcgen::Certificate,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authority(..)")
    }
}

/// A server certificate and its key.
#[derive(Debug)]
pub struct Issued {
    /// The certificate, PEM.
    pub certificate_pem: String,
    /// The private key, PEM.
    pub key_pem: String,
    /// The certificate, DER (to compare with what a server presents).
    pub der: Vec<u8>,
    /// The SHA-256 of the key's SubjectPublicKeyInfo, base64: what chromium's
    /// `--ignore-certificate-errors-spki-list` takes.
    pub spki_sha256: String,
}

impl Authority {
    /// A new CA, with a new key.
    pub fn new() -> Authority {
        let key = rcgen::KeyPair::generate().expect("a key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Flagstaff test CA");
        let certificate = params.self_signed(&key).expect("a CA certificate");
        Authority { key, certificate }
    }

    /// The CA's certificate, PEM: what clients are told to trust.
    pub fn pem(&self) -> String {
        self.certificate.pem()
    }

    /// A server certificate for 127.0.0.1 and localhost, named `name`, with a new key.
    pub fn issue(&self, name: &str) -> Issued {
        let key = rcgen::KeyPair::generate().expect("a key");
        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let certificate = params
            .signed_by(&key, &self.certificate, &self.key)
            .expect("a server certificate");
        Issued {
            certificate_pem: certificate.pem(),
            key_pem: key.serialize_pem(),
            der: certificate.der().to_vec(),
            spki_sha256: base64::engine::general_purpose::STANDARD
                .encode(Sha256::digest(key.public_key_der())),
        }
    }
}

impl Default for Authority {
    fn default() -> Self {
        Authority::new()
    }
}
