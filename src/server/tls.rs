//! TLS for TCP listeners: the certificate is read at start-up and on SIGHUP, and handed to
//! rustls through a resolver, so that a reload reaches new handshakes without a restart.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::{
    ServerConfig,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};

use super::config::FileSource;
use crate::config::Problem;

/// Where the certificate chain and its key come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSource {
    pub certificate: FileSource,
    pub key: FileSource,
}

/// A certificate chain with its private key, checked to belong together.
#[derive(Debug, Clone)]
pub struct LoadedCertificate(Arc<CertifiedKey>);

/// The provider for every TLS handshake: aws-lc-rs, like the verification core.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl CertificateSource {
    /// Reads and checks both files. The problem names the configuration key and says why.
    pub fn load(&self) -> Result<LoadedCertificate, Problem> {
        let problem = |key: &str, message: String| Problem {
            key: key.to_owned(),
            message,
        };
        let certificate_key = match self.certificate {
            FileSource::Path(_) => "server.tls_certificate",
            FileSource::Credential(_) => "server.tls_certificate_credential",
        };
        let key_key = match self.key {
            FileSource::Path(_) => "server.tls_key",
            FileSource::Credential(_) => "server.tls_key_credential",
        };
        let pem = self
            .certificate
            .read()
            .map_err(|e| problem(certificate_key, e.to_string()))?;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|e| problem(certificate_key, format!("not a PEM certificate chain: {e}")))?;
        if chain.is_empty() {
            return Err(problem(
                certificate_key,
                "holds no `CERTIFICATE` PEM block".to_owned(),
            ));
        }
        let pem = self
            .key
            .read()
            .map_err(|e| problem(key_key, e.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(&pem)
            .map_err(|e| problem(key_key, format!("not a PEM private key: {e}")))?;
        CertifiedKey::from_der(chain, key, &provider())
            .map(|key| LoadedCertificate(Arc::new(key)))
            .map_err(|e| problem(key_key, format!("cannot be used with the certificate: {e}")))
    }
}

/// Hands rustls the current certificate; [`CertificateResolver::replace`] swaps it for new
/// handshakes while established connections keep theirs.
#[derive(Debug)]
pub struct CertificateResolver(ArcSwap<CertifiedKey>);

impl CertificateResolver {
    #[must_use]
    pub fn new(certificate: &LoadedCertificate) -> Arc<Self> {
        Arc::new(Self(ArcSwap::new(certificate.0.clone())))
    }

    pub fn replace(&self, certificate: &LoadedCertificate) {
        self.0.store(certificate.0.clone());
    }
}

impl ResolvesServerCert for CertificateResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

/// The rustls configuration of every TLS listener: HTTP/1.1 only, no client certificates
/// (clients authenticate with the bearer token).
pub fn server_config(
    resolver: Arc<CertificateResolver>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
