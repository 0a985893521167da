//! Server-side TLS for the gateway's doors (the HTTP API, the embedded
//! broker's MQTTS): rustls 0.23 on the ring provider the gateway installs
//! (no aws-lc build, no OpenSSL), TLS 1.2 and 1.3, a certificate chain and
//! key from PEM files. Both doors load them here, so a configuration check
//! (`gateway check`) and the start refuse the same mistakes in the same words.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;

/// The server config of `cert` (a PEM chain) and `key`, asking for client
/// certificates through `client_auth` if given. `fields` name the two
/// settings in errors (`("http.tls_cert_file", "http.tls_key_file")`).
///
/// # Errors
/// The field and what is wrong: unreadable, no certificate, a key that does
/// not go with the certificate.
pub fn server_config(
    cert: &Path,
    key: &Path,
    (cert_field, key_field): (&'static str, &'static str),
    client_auth: Option<Arc<dyn ClientCertVerifier>>,
) -> Result<rustls::ServerConfig, (&'static str, String)> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect)
        .map_err(|e| (cert_field, format!("{}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err((cert_field, format!("{}: no PEM certificate in it", cert.display())));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| (key_field, format!("{}: {e}", key.display())))?;
    let builder = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| (cert_field, e.to_string()))?;
    let builder = match client_auth {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    builder.with_single_cert(certs, private).map_err(|e| {
        (
            key_field,
            format!("{} does not go with the certificate: {e}", key.display()),
        )
    })
}
