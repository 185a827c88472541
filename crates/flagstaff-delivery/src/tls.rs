//! TLS for everything the server serves (API, dashboard, SDK endpoints and streams), on the same
//! port, with rustls (ring as its cryptography, so nothing is built with cmake or links
//! OpenSSL).
//!
//! The certificate chain and key are PEM files. [`Tls::reload`] reads them again (the binary
//! calls it on `SIGHUP`), so a renewed certificate is used by new connections without a restart
//! and without dropping open SDK streams; a reload that fails keeps the previous certificate
//! and says why. Only HTTP/1.1 is offered (ALPN), the protocol every SDK speaks.
//!
//! Over TLS every connection goes to hyper: the lean stream path of `raw.rs` peeks at the first
//! plaintext bytes of a TCP connection, which TLS hides. Streams over TLS therefore cost what a
//! hyper connection costs (BENCHMARKS.md) plus rustls's buffers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why a certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// rustls refused the pair (for example, the key does not match the certificate).
    #[error("the certificate and key cannot be used together: {0}")]
    Config(#[from] rustls::Error),
}

/// The server's TLS configuration, replaceable while it runs.
#[derive(Debug)]
pub struct Tls {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: ArcSwap<rustls::ServerConfig>,
}

impl Tls {
    /// Reads the certificate chain (leaf first) and private key from PEM files.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Tls, TlsError> {
        let config = server_config(cert_path, key_path)?;
        Ok(Tls {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            current: ArcSwap::from_pointee(config),
        })
    }

    /// Reads the files again; new connections use the new certificate, open ones keep theirs.
    /// On failure the previous certificate stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.cert_path, &self.key_path)?;
        self.current.store(Arc::new(config));
        Ok(())
    }

    /// The acceptor for a new connection.
    pub(crate) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.load_full())
    }
}

fn file_error(path: &Path, message: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

fn server_config(cert_path: &Path, key_path: &Path) -> Result<rustls::ServerConfig, TlsError> {
    let chain = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| file_error(cert_path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(cert_path, e))?;
    if chain.is_empty() {
        return Err(file_error(cert_path, "no PEM certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| file_error(key_path, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
