//! The rustls client configuration built from [`TlsSettings`]: shared by the adapters, which only
//! wrap their TCP stream with it.

use crate::settings::TlsSettings;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("{what} {path}: {source}")]
    Pem {
        /// What the file holds ("CA file", "certificate file", "key file").
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: rustls::pki_types::pem::Error,
    },
    /// The CA file holds no certificate that can be used as a trust anchor.
    #[error("CA file {0}: no usable certificate")]
    NoTrustAnchor(PathBuf),
    /// No CA file and no usable certificate in the system's store.
    #[error("no CA file given and no usable certificate in the system's store")]
    NoSystemRoots,
    /// The server name is neither a DNS name nor an IP address.
    #[error("invalid TLS server name {0:?}")]
    ServerName(String),
    /// rustls refused the client certificate and key.
    #[error("client certificate or key refused: {0}")]
    ClientCertificate(rustls::Error),
    /// rustls refused the protocol versions of its crypto provider.
    #[error("TLS configuration refused: {0}")]
    Config(rustls::Error),
}

/// A TLS client configuration and the name the broker's certificate must carry.
#[derive(Clone, Debug)]
pub struct TlsConfig {
    /// The rustls configuration (ring provider, TLS 1.2 and 1.3).
    pub config: Arc<ClientConfig>,
    /// The name checked against the broker's certificate (DNS name or IP address).
    pub server_name: ServerName<'static>,
}

impl TlsConfig {
    /// Reads the PEM files of `tls` and builds the configuration for a broker at `host` (the
    /// server name unless [`TlsSettings::server_name`] is set).
    pub fn new(tls: &TlsSettings, host: &str) -> Result<TlsConfig, TlsError> {
        let name = tls.server_name.as_deref().unwrap_or(host);
        let server_name = ServerName::try_from(name.to_owned())
            .map_err(|_| TlsError::ServerName(name.to_owned()))?;
        let roots = match &tls.ca_file {
            Some(path) => {
                let mut roots = RootCertStore::empty();
                let (added, _) = roots.add_parsable_certificates(certificates("CA file", path)?);
                if added == 0 {
                    return Err(TlsError::NoTrustAnchor(path.clone()));
                }
                roots
            }
            None => system_roots()?,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_root_certificates(roots);
        let config = match &tls.client_certificate {
            None => builder.with_no_client_auth(),
            Some(client) => {
                let chain = certificates("certificate file", &client.cert_file)?;
                let key = PrivateKeyDer::from_pem_file(&client.key_file).map_err(|source| {
                    TlsError::Pem {
                        what: "key file",
                        path: client.key_file.clone(),
                        source,
                    }
                })?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(TlsError::ClientCertificate)?
            }
        };
        Ok(TlsConfig {
            config: Arc::new(config),
            server_name,
        })
    }
}

/// Every certificate of a PEM file (at least one).
fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |source| TlsError::Pem {
        what,
        path: path.to_owned(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem)?;
    if certs.is_empty() {
        return Err(pem(rustls::pki_types::pem::Error::NoItemsFound));
    }
    Ok(certs)
}

/// The system's trust store.
fn system_roots() -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if roots.is_empty() {
        return Err(TlsError::NoSystemRoots);
    }
    Ok(roots)
}
