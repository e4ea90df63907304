//! The client side of the machine config server's tests: a test CA with a server certificate
//! it signed (rcgen), and GET over HTTPS verified against that CA only (rustls), or plain HTTP.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;

/// The Ignition media type.
pub const IGN: &str = "application/vnd.coreos.ignition+json";

/// A test CA and a server certificate for `localhost` / 127.0.0.1 it signed, as PEM files.
pub struct Pki {
    dir: tempfile::TempDir,
    pub ca_pem: String,
}

impl Pki {
    pub fn new() -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "test machine-config-server CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tls.crt"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("tls.key"), key.serialize_pem()).unwrap();
        Pki {
            ca_pem: ca.pem(),
            dir,
        }
    }
    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("tls.crt")
    }
    pub fn key(&self) -> PathBuf {
        self.dir.path().join("tls.key")
    }
}

/// An answer: status, content type, Retry-After, body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub retry_after: Option<String>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// GET `path` over HTTPS, trusting only `ca_pem`.
pub async fn get_tls(
    addr: SocketAddr,
    ca_pem: &str,
    path: &str,
    accept: Option<&str>,
) -> Result<Answer, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    request(hyper_util::rt::TokioIo::new(tls), path, accept).await
}

/// GET `path` over plain HTTP.
pub async fn get_plain(addr: SocketAddr, path: &str) -> Answer {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    request(hyper_util::rt::TokioIo::new(tcp), path, None)
        .await
        .unwrap()
}

async fn request<IO>(io: IO, path: &str, accept: Option<&str>) -> Result<Answer, String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut req = hyper::Request::get(path).header("host", "localhost");
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let resp = sender
        .send_request(req.body(Empty::<Bytes>::new()).unwrap())
        .await
        .map_err(|e| e.to_string())?;
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    let status = resp.status().as_u16();
    let content_type = header("content-type").unwrap_or_default();
    let retry_after = header("retry-after");
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes()
        .to_vec();
    Ok(Answer {
        status,
        content_type,
        retry_after,
        body,
    })
}
