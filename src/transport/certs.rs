//! TLS settings: the server certificate (loaded at start-up, swapped on
//! SIGHUP) and the client trust used to dial `rtmps://` origins.
//!
//! Crypto is rustls with the *ring* provider; protocol versions are
//! rustls's safe defaults (TLS 1.2 and 1.3).

use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("{key} {path}: {why}")]
    File {
        key: &'static str,
        path: String,
        why: String,
    },
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server side: what new TLS handshakes present. Shared by every
/// worker; a handshake takes the config in force when it starts, so a
/// reload never disturbs a connection that is already up.
pub struct TlsServer {
    current: RwLock<Arc<ServerConfig>>,
}

impl TlsServer {
    /// Loads `cert` (PEM chain, leaf first) and `key` (PEM private key).
    pub fn load(cert: &str, key: &str) -> Result<TlsServer, TlsConfigError> {
        Ok(TlsServer {
            current: RwLock::new(Arc::new(server_config(cert, key)?)),
        })
    }

    /// The configuration for a new handshake.
    pub fn config(&self) -> Arc<ServerConfig> {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reads the files again; on any error the certificate in use stays.
    pub fn reload(&self, cert: &str, key: &str) -> Result<(), TlsConfigError> {
        let next = Arc::new(server_config(cert, key)?);
        match self.current.write() {
            Ok(mut c) => *c = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
        Ok(())
    }
}

fn server_config(cert: &str, key: &str) -> Result<ServerConfig, TlsConfigError> {
    let chain = read_certs("tls.cert", cert)?;
    let file_err = |why: String| TlsConfigError::File {
        key: "tls.key",
        path: key.to_string(),
        why,
    };
    let key = PrivateKeyDer::from_pem_file(Path::new(key)).map_err(|e| file_err(e.to_string()))?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        // Checks that the key matches the leaf certificate.
        .with_single_cert(chain, key)?;
    Ok(config)
}

fn read_certs(
    key: &'static str,
    path: &str,
) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let file_err = |why: String| TlsConfigError::File {
        key,
        path: path.to_string(),
        why,
    };
    let certs = CertificateDer::pem_file_iter(Path::new(path))
        .map_err(|e| file_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(file_err("no PEM certificate in the file".into()));
    }
    Ok(certs)
}

/// The client side, for `rtmps://` origins: trust the bundled Mozilla
/// roots, or only the CAs in `ca_file` when it is set; with `verify` off,
/// accept any certificate (test origins with self-signed certificates).
pub fn client_config(ca_file: &str, verify: bool) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let config = if !verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(
                provider.signature_verification_algorithms,
            )))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        if ca_file.is_empty() {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        } else {
            for cert in read_certs("edge.tls_ca_file", ca_file)? {
                roots.add(cert)?;
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// `edge.tls_verify = false`: any certificate is taken as valid for any
/// name. The handshake signatures are still checked, so the session is
/// encrypted to whoever holds the presented key — just not authenticated.
#[derive(Debug)]
struct AcceptAny(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_name_their_key() {
        let e = TlsServer::load("/nonexistent/cert.pem", "/nonexistent/key.pem")
            .err()
            .unwrap();
        assert!(e.to_string().contains("tls.cert"), "{e}");
        let e = client_config("/nonexistent/ca.pem", true).err().unwrap();
        assert!(e.to_string().contains("edge.tls_ca_file"), "{e}");
    }

    #[test]
    fn client_configs_build() {
        assert!(client_config("", true).is_ok());
        assert!(client_config("", false).is_ok());
    }
}
