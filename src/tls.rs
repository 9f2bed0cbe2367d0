//! TLS for the MAAS client and the HTTP provisioner: the system's root certificates
//! plus an optional CA file (a private MAAS CA), with rustls on the ring provider.

#![warn(missing_docs)]

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// Why TLS for a client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The CA file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The CA file (`tls.ca_file`).
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The CA file holds no certificate.
    #[error("{path} holds no PEM certificate")]
    Empty {
        /// The CA file.
        path: String,
    },
    /// rustls refused a certificate of the CA file.
    #[error("{path}: certificate rejected: {reason}")]
    Rejected {
        /// The CA file.
        path: String,
        /// rustls's reason.
        reason: String,
    },
    /// The client configuration could not be built.
    #[error("TLS setup: {0}")]
    Setup(String),
}

/// Certificates from a PEM file.
pub fn read_pem(path: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.into(),
        source,
    })?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut bytes.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|source| TlsError::Read {
            path: path.into(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty { path: path.into() });
    }
    Ok(certs)
}

/// A client configuration trusting the system roots and `ca_file`.
pub fn client_config(ca_file: Option<&str>) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    // A missing or partly unreadable system store is not fatal: a CA file may be all we need.
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        for cert in read_pem(path)? {
            roots.add(cert).map_err(|e| TlsError::Rejected {
                path: path.into(),
                reason: e.to_string(),
            })?;
        }
    }
    let mut cfg =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Setup(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
