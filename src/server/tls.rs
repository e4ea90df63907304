//! The server's TLS: a PEM certificate chain and private key from files (in packaging, a
//! `kubernetes.io/tls` Secret mounted read-only), rustls with the `ring` provider, TLS 1.2 and
//! 1.3 only (upstream refuses older versions too), HTTP/1.1 by ALPN.
//!
//! **Rotation without a restart.** The files are read at start (an unusable pair stops the
//! server before it listens). Afterwards each handshake looks at the files' modification times
//! and sizes (two `stat`s) and, when either changed, reads the pair again: a renewed Secret
//! (which the kubelet swaps in by replacing a symlink) is presented to the next client. A new
//! pair that cannot be used (half written, key and certificate not matching) is logged and the
//! last good pair is kept.

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// A certificate or key that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct TlsError {
    pub path: PathBuf,
    pub reason: String,
}

/// The TLS acceptor for `cert` (a PEM chain) and `key` (a PEM private key).
pub fn acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let resolver = Reloading::new(cert, key, provider.clone())?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError {
            path: cert.to_path_buf(),
            reason: e.to_string(),
        })?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// What identifies a version of a file: modification time and size.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
}

/// The certificate and key, read again when the files change.
#[derive(Debug)]
struct Reloading {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    /// The files' stamps when last read, and the last good pair.
    current: Mutex<((Stamp, Stamp), Arc<CertifiedKey>)>,
}

impl Reloading {
    fn new(cert: &Path, key: &Path, provider: Arc<CryptoProvider>) -> Result<Self, TlsError> {
        let stamps = (stamp(cert), stamp(key));
        let pair = load(cert, key, &provider)?;
        Ok(Reloading {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            provider,
            current: Mutex::new((stamps, Arc::new(pair))),
        })
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let stamps = (stamp(&self.cert), stamp(&self.key));
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.0 != stamps {
            // Remembered even when unusable: a broken pair is reported once, not per handshake.
            current.0 = stamps;
            match load(&self.cert, &self.key, &self.provider) {
                Ok(pair) => {
                    tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                    current.1 = Arc::new(pair);
                }
                Err(e) => {
                    tracing::error!(error = %e, "the new TLS certificate cannot be used; keeping the previous one")
                }
            }
        }
        Some(current.1.clone())
    }
}

fn load(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let err = |path: &Path, reason: String| TlsError {
        path: path.to_path_buf(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| err(cert, format!("cannot read the certificate: {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(cert, format!("invalid PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(err(cert, "no CERTIFICATE block found".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| err(key, format!("no usable private key: {e}")))?;
    CertifiedKey::from_der(certs, key_der, provider)
        .map_err(|e| err(key, format!("does not go with {}: {e}", cert.display())))
}
