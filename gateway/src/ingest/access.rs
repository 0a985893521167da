//! The embedded broker's door: who a CONNECT is ([`crate::identity`]'s
//! rules then say what it may do), and its TLS listener.
//!
//! - The gateway's own client (notifications) logs in with a secret made at
//!   every start, so nobody else can take its session, whatever the mode.
//! - `auth = "devices"`: a device logs in as `{site}/{device}` with the
//!   password provisioning showed once, or on the TLS listener with the
//!   client certificate pinned at provisioning. Its credential is read from
//!   the store at every CONNECT (a device provisioned or revoked by the API
//!   or the offline CLI counts at its next connection); Argon2 runs once per
//!   password and process, on a blocking thread, two at a time.
//! - Failed logins are limited per address: a guesser gets refusals that
//!   cost nothing rather than Argon2 runs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::Semaphore;

use crate::app::config::{MqttAuth, MqttConfig};
use crate::broker::{Authenticator, Hello};
use crate::identity::{Denial, Principal, Verified};
use crate::limiter::Limiter;
use crate::store::credentials::{self, Credential};

/// The user name of the gateway's own client on its embedded broker.
pub const GATEWAY_USER: &str = "$gateway";

/// Client ids only the gateway's own client may use.
const RESERVED_IDS: [&str; 3] = [
    "fm-gateway",
    "fm-gateway-alarms",
    crate::ingest::sparkplug::EMBEDDED_CLIENT_ID,
];

/// Failed logins per address before refusals are unchecked, all earned back
/// over a minute (one every 6 s), as on the HTTP API.
const FAILURE_BURST: u32 = 10;
const FAILURE_WINDOW: std::time::Duration = std::time::Duration::from_mins(1);

/// Everything a CONNECT is checked against.
pub(crate) struct Access {
    mode: MqttAuth,
    gateway_secret: [u8; 32],
    db: PathBuf,
    conn: Mutex<Option<Connection>>,
    verified: Verified,
    failures: Limiter,
    argon: Semaphore,
}

impl Access {
    /// The door of a broker configured by `mqtt`, its store in `data_dir`,
    /// the gateway's own client logging in with `gateway_password`.
    pub(crate) fn new(
        mqtt: &MqttConfig,
        data_dir: &Path,
        gateway_password: &str,
        evicted: prometheus_client::metrics::counter::Counter,
    ) -> Arc<Access> {
        Arc::new(Access {
            mode: mqtt.effective_auth(),
            gateway_secret: crate::api::auth::digest(gateway_password),
            db: data_dir.join("gateway.sqlite"),
            conn: Mutex::new(None),
            verified: Verified::default(),
            failures: Limiter::new(
                FAILURE_BURST,
                FAILURE_WINDOW,
                65_536,
                crate::limiter::Counters {
                    // Refusals are the broker's to count (`reason="rate_limited"`).
                    limited: prometheus_client::metrics::counter::Counter::default(),
                    evicted,
                    door: "MQTT",
                },
            ),
            argon: Semaphore::new(2),
        })
    }

    /// The broker's hook.
    pub(crate) fn authenticator(self: &Arc<Self>) -> Authenticator {
        let me = self.clone();
        Arc::new(move |hello| {
            let me = me.clone();
            Box::pin(async move { me.check(hello).await })
        })
    }

    /// Forgets what was verified for `username` (revoked).
    pub(crate) fn forget(&self, username: &str) {
        self.verified.forget(username);
    }

    async fn check(&self, hello: Hello) -> Result<Principal, Denial> {
        let ip = hello.peer.ip();
        if hello.username.as_deref() == Some(GATEWAY_USER) {
            let given = crate::api::auth::digest(hello.password.as_deref().unwrap_or_default());
            return if crate::identity::same(&given, &self.gateway_secret) {
                Ok(Principal::Gateway)
            } else {
                self.failures.failed(ip);
                Err(Denial::BadCredentials)
            };
        }
        if RESERVED_IDS.contains(&hello.client_id.as_str()) {
            return Err(Denial::Reserved);
        }
        if self.mode == MqttAuth::None {
            return Ok(Principal::Anonymous);
        }
        if self.failures.check(ip).is_err() {
            return Err(Denial::RateLimited);
        }
        let verdict = self.device(&hello).await;
        if matches!(verdict, Err(Denial::BadCredentials | Denial::Certificate)) {
            self.failures.failed(ip);
        }
        verdict
    }

    /// A device by its pinned certificate, or by user name and password.
    async fn device(&self, hello: &Hello) -> Result<Principal, Denial> {
        if let Some(cert) = hello.certificate {
            let found = self
                .lookup(move |c| credentials::by_certificate(c, &hex::encode(cert)))
                .await;
            return found.map(|c| Principal::Device(c.identity)).ok_or(Denial::Certificate);
        }
        let (Some(user), Some(password)) = (hello.username.clone(), hello.password.clone()) else {
            return Err(Denial::NoCredentials);
        };
        let Some((site, device)) = user.split_once('/').map(|(s, d)| (s.to_owned(), d.to_owned())) else {
            return Err(Denial::BadCredentials);
        };
        let cred = self
            .lookup(move |c| credentials::get(c, &site, &device))
            .await
            .filter(|c| c.revoked.is_none())
            .ok_or(Denial::BadCredentials)?;
        if self.verified.knows(&user, &cred.password_hash, &password) {
            return Ok(Principal::Device(cred.identity));
        }
        let Ok(_permit) = self.argon.acquire().await else {
            return Err(Denial::BadCredentials);
        };
        let phc = cred.password_hash.clone();
        let pw = password.clone();
        let ok = tokio::task::spawn_blocking(move || crate::identity::verify_password(&phc, &pw))
            .await
            .unwrap_or(false);
        if ok {
            self.verified.remember(&user, &cred.password_hash, &password);
            Ok(Principal::Device(cred.identity))
        } else {
            Err(Denial::BadCredentials)
        }
    }

    /// One query on the store's credentials, on a blocking thread, through
    /// a read-only connection kept open. A store that cannot be read lets
    /// nobody in (and says so).
    async fn lookup(
        &self,
        query: impl FnOnce(&Connection) -> rusqlite::Result<Option<Credential>> + Send + 'static,
    ) -> Option<Credential> {
        let taken = self.conn.lock().unwrap_or_else(PoisonError::into_inner).take();
        let db = self.db.clone();
        let (conn, found) = tokio::task::spawn_blocking(move || {
            let conn = match taken {
                Some(c) => c,
                None => match Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!(error = %e, db = %db.display(), "device credentials cannot be read: refusing logins");
                        return (None, None);
                    }
                },
            };
            let found = query(&conn).unwrap_or_else(|e| {
                tracing::error!(error = %e, "device credentials cannot be read: refusing the login");
                None
            });
            (Some(conn), found)
        })
        .await
        .unwrap_or((None, None));
        if let Some(c) = conn {
            *self.conn.lock().unwrap_or_else(PoisonError::into_inner) = Some(c);
        }
        found
    }
}

/// The TLS acceptor of the embedded broker's MQTTS listener: its
/// certificate and key from PEM files; a client certificate is asked for but
/// not required (a device may log in with its password instead). A client
/// certificate is not checked against a CA: the one a device may use is
/// pinned at provisioning by its SHA-256, and rustls checks that the client
/// holds its private key.
///
/// # Errors
/// Unreadable or invalid PEM, a key that does not match.
pub(crate) fn tls_acceptor(cert: &Path, key: &Path) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = crate::tls::server_config(
        cert,
        key,
        ("mqtt.tls_cert_file", "mqtt.tls_key_file"),
        Some(Arc::new(Pinned(provider))),
    )
    .map_err(|(field, e)| anyhow::anyhow!("{field}: {e}"))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Asks for a client certificate, accepts any (its SHA-256 is matched
/// against the devices' pinned ones after the handshake), and checks the
/// handshake signature, which proves the client holds the certificate's key.
#[derive(Debug)]
struct Pinned(Arc<rustls::crypto::CryptoProvider>);

impl rustls::server::danger::ClientCertVerifier for Pinned {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
