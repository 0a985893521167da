//! Who may talk on the embedded broker (CONTRACT §8): device credentials,
//! and what each connection may publish and subscribe to.
//!
//! The rules are pure functions of a [`Principal`] and a topic, so the broker
//! (I/O) asks and this module answers; the tests need no socket. A device
//! may publish only under its own `fm/v1/{site}/{class}/{device}/` and only
//! the node-to-gateway kinds, subscribe only to its own `cmd`, and leave only
//! its own `death` as a will. A forged `event` `self_test` for a pump, a
//! `birth` for someone else's lift, or a `cmd` to a charging bay is refused
//! at the broker before the gateway ever judges it.
//!
//! Passwords are made here (192 random bits) and kept as Argon2id hashes
//! (PHC strings, parameters inside, so they can be raised later). A
//! password this long is not what Argon2's work protects; Argon2 is there so
//! that a copy of the database gives nothing a node could log in with, in
//! the format every auditor knows. Its cost is paid once per device and
//! process: a verified password is remembered as a SHA-256 of the stored hash
//! and the password, so a compound's thousand nodes reconnecting after a
//! broker restart cost microseconds each.

use std::collections::HashMap;
use std::sync::Mutex;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use sha2::{Digest, Sha256};

/// A provisioned device: the topics it owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The compound.
    pub site: String,
    /// `elevator`, `firepump` or `charger`.
    pub class: String,
    /// The device id.
    pub device: String,
}

impl Identity {
    /// The MQTT user name: `{site}/{device}` (the contract's form; a device id is unique in its site).
    pub fn username(&self) -> String {
        username(&self.site, &self.device)
    }

    /// The last level of `topic` if it is one of this device's own
    /// (`fm/v1/{site}/{class}/{device}/{kind}`): asked for every publish, so
    /// it compares in place and allocates nothing.
    fn own<'t>(&self, topic: &'t str) -> Option<&'t str> {
        let level = |rest: &'t str, name: &str| rest.strip_prefix(name)?.strip_prefix('/');
        let rest = level(topic, "fm/v1")?;
        let rest = level(rest, &self.site)?;
        let rest = level(rest, &self.class)?;
        level(rest, &self.device)
    }

    /// The Sparkplug B message type of `topic` if it is this device's own as
    /// an edge node: group = its site, edge node id = its device id
    /// (`spBv1.0/{site}/{type}/{device}`, or `.../{device}/{sparkplug device}`
    /// for the `D...` types). docs/integrations.md, "Sparkplug B ingest".
    fn own_sparkplug<'t>(&self, topic: &'t str) -> Option<&'t str> {
        let rest = topic
            .strip_prefix("spBv1.0/")?
            .strip_prefix(self.site.as_str())?
            .strip_prefix('/')?;
        let (kind, rest) = rest.split_once('/')?;
        let rest = rest.strip_prefix(self.device.as_str())?;
        let device_level = match rest.strip_prefix('/') {
            None if rest.is_empty() => false,
            Some(d) if !d.is_empty() && !d.contains('/') => true,
            _ => return None,
        };
        (kind.starts_with('D') == device_level && kind.len() > 1).then_some(kind)
    }
}

/// The Sparkplug B types an edge node sends (commands and STATE are hosts').
const SPARKPLUG_NODE_KINDS: [&str; 6] = ["NBIRTH", "NDEATH", "NDATA", "DBIRTH", "DDEATH", "DDATA"];

/// The user name of device `device` of `site`.
pub fn username(site: &str, device: &str) -> String {
    format!("{site}/{device}")
}

/// Who a broker connection is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// The gateway's own client (notifications, commands): anything.
    Gateway,
    /// A provisioned device: its own topics only.
    Device(Identity),
    /// Anyone, on a broker without authentication (`auth = "none"`).
    Anonymous,
}

/// Why the broker refused something; the label of `fm_mqtt_denied_total{reason}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Denial {
    /// CONNECT without a user name or password.
    NoCredentials,
    /// An unknown user, a wrong password, a revoked device.
    BadCredentials,
    /// Too many failed logins from this address: refused without checking.
    RateLimited,
    /// The gateway's own client id or user name, claimed by someone else.
    Reserved,
    /// A will on a topic other than the device's own `death`.
    Will,
    /// A publish outside the device's own topics (or of a kind it may not send).
    Publish,
    /// A subscription to anything but the device's own `cmd`.
    Subscribe,
    /// A client certificate whose name is not a provisioned device.
    Certificate,
}

impl Denial {
    /// Every reason, for a metric family whose series all exist from the start.
    pub const ALL: [Denial; 8] = [
        Denial::NoCredentials,
        Denial::BadCredentials,
        Denial::RateLimited,
        Denial::Reserved,
        Denial::Will,
        Denial::Publish,
        Denial::Subscribe,
        Denial::Certificate,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Denial::NoCredentials => "no_credentials",
            Denial::BadCredentials => "bad_credentials",
            Denial::RateLimited => "rate_limited",
            Denial::Reserved => "reserved",
            Denial::Will => "will",
            Denial::Publish => "publish",
            Denial::Subscribe => "subscribe",
            Denial::Certificate => "certificate",
        }
    }
}

/// The kinds a node sends; `cmd` is the gateway's.
const NODE_KINDS: [&str; 5] = ["birth", "death", "data", "event", "ack"];

/// May `who` publish on `topic`?
///
/// # Errors
/// [`Denial::Publish`] outside the device's own node-to-gateway topics.
pub fn may_publish(who: &Principal, topic: &str) -> Result<(), Denial> {
    match who {
        Principal::Gateway | Principal::Anonymous => Ok(()),
        Principal::Device(id) => {
            if let Some(kind) = id.own_sparkplug(topic) {
                return if SPARKPLUG_NODE_KINDS.contains(&kind) {
                    Ok(())
                } else {
                    Err(Denial::Publish)
                };
            }
            let kind = id.own(topic).ok_or(Denial::Publish)?;
            if NODE_KINDS.contains(&kind) {
                Ok(())
            } else {
                Err(Denial::Publish)
            }
        }
    }
}

/// May `who` subscribe to `filter`? A device: its own `cmd` and nothing else
/// (no wildcards: `fm/v1/+/+/+/cmd` would read every node's commands).
///
/// # Errors
/// [`Denial::Subscribe`].
pub fn may_subscribe(who: &Principal, filter: &str) -> Result<(), Denial> {
    match who {
        Principal::Gateway | Principal::Anonymous => Ok(()),
        Principal::Device(id) if id.own(filter) == Some("cmd") => Ok(()),
        // An edge node: its own commands, and the hosts' STATE (Sparkplug 3.0).
        Principal::Device(id) if matches!(id.own_sparkplug(filter), Some("NCMD" | "DCMD")) => Ok(()),
        Principal::Device(_)
            if filter
                .strip_prefix("spBv1.0/STATE/")
                .is_some_and(|h| !h.is_empty() && !h.contains(['/', '#'])) =>
        {
            Ok(())
        }
        Principal::Device(_) => Err(Denial::Subscribe),
    }
}

/// May `who` leave a will on `topic`? A device: only its own `death`.
///
/// # Errors
/// [`Denial::Will`].
pub fn may_will(who: &Principal, topic: &str) -> Result<(), Denial> {
    match who {
        Principal::Gateway | Principal::Anonymous => Ok(()),
        Principal::Device(id) if id.own(topic) == Some("death") => Ok(()),
        Principal::Device(id) if id.own_sparkplug(topic) == Some("NDEATH") => Ok(()),
        Principal::Device(_) => Err(Denial::Will),
    }
}

/// What provisioning hands a device, once: the broker password and the key
/// its commands are signed with.
pub struct Issued {
    /// 192 random bits, URL-safe base64 without padding (32 characters).
    pub password: String,
    /// HMAC-SHA256 key of the device's commands.
    pub cmd_key: [u8; 32],
}

impl std::fmt::Debug for Issued {
    // Never printed by accident, in a log line or a panic message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Issued { <secrets> }")
    }
}

/// Makes a device's secrets from the OS's generator, failing closed.
///
/// # Errors
/// When the OS has no randomness to give.
pub fn issue() -> Result<Issued, getrandom::Error> {
    let mut pw = [0u8; 24];
    getrandom::getrandom(&mut pw)?;
    let mut cmd_key = [0u8; 32];
    getrandom::getrandom(&mut cmd_key)?;
    Ok(Issued {
        password: base64url(&pw),
        cmd_key,
    })
}

/// URL-safe base64 without padding: a password that needs no quoting in a
/// shell, a TOML file or `mosquitto_passwd`.
fn base64url(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + 2);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ABC[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

/// Argon2id with OWASP's smallest recommended memory (19 MiB, 2 passes).
fn argon2() -> argon2::Argon2<'static> {
    let params = argon2::Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

/// The PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`) of `password`.
///
/// # Errors
/// No randomness for the salt, or Argon2 refusing its input.
pub fn hash_password(password: &str) -> Result<String, HashError> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(|e| HashError(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| HashError(e.to_string()))?;
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// A password could not be hashed.
#[derive(Debug, thiserror::Error)]
#[error("cannot hash a password: {0}")]
pub struct HashError(String);

/// Whether `password` is the one `phc` was made from (slow: Argon2).
pub fn verify_password(phc: &str, password: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| argon2().verify_password(password.as_bytes(), &h).is_ok())
}

/// Passwords already verified in this process, by user name: a SHA-256 of
/// the stored hash and the password, so a changed password (a new stored
/// hash) or a different one never matches. Bounded: when full it is
/// emptied, and the next logins pay Argon2 again.
#[derive(Debug, Default)]
pub struct Verified {
    seen: Mutex<HashMap<String, [u8; 32]>>,
}

/// Users remembered at most.
const VERIFIED_MAX: usize = 100_000;

impl Verified {
    fn digest(phc: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(phc.as_bytes());
        h.update([0]);
        h.update(password.as_bytes());
        h.finalize().into()
    }

    /// Whether `user` logged in with this password and stored hash before.
    pub fn knows(&self, user: &str, phc: &str, password: &str) -> bool {
        let d = Self::digest(phc, password);
        let seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.get(user).is_some_and(|k| same(k, &d))
    }

    /// Remembers a verified login.
    pub fn remember(&self, user: &str, phc: &str, password: &str) {
        let d = Self::digest(phc, password);
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.len() >= VERIFIED_MAX {
            seen.clear();
        }
        seen.insert(user.to_owned(), d);
    }

    /// Forgets a user (revoked).
    pub fn forget(&self, user: &str) {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(user);
    }
}

/// Equal in time independent of where they differ.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lift() -> Principal {
        Principal::Device(Identity {
            site: "lakeside".into(),
            class: "elevator".into(),
            device: "EL-1".into(),
        })
    }

    #[test]
    fn a_device_publishes_only_its_own_node_topics() {
        let me = lift();
        for kind in NODE_KINDS {
            assert_eq!(
                may_publish(&me, &format!("fm/v1/lakeside/elevator/EL-1/{kind}")),
                Ok(())
            );
        }
        for topic in [
            "fm/v1/lakeside/elevator/EL-1/cmd",
            "fm/v1/lakeside/elevator/EL-2/event",
            "fm/v1/lakeside/firepump/EL-1/event",
            "fm/v1/other/elevator/EL-1/birth",
            "fm/v1/lakeside/elevator/EL-1/event/x",
            "fm/v1/lakeside/elevator/EL-10/data",
            "fm/v1/lakeside/elevator/EL-1",
            "fm/v1/dispatch/lakeside/1",
            "anything",
        ] {
            assert_eq!(may_publish(&me, topic), Err(Denial::Publish), "{topic}");
        }
        assert_eq!(
            may_publish(&Principal::Gateway, "fm/v1/lakeside/charger/C-1/cmd"),
            Ok(())
        );
    }

    #[test]
    fn a_device_subscribes_only_to_its_own_commands_and_wills_only_its_death() {
        let me = lift();
        assert_eq!(may_subscribe(&me, "fm/v1/lakeside/elevator/EL-1/cmd"), Ok(()));
        for f in [
            "fm/v1/+/+/+/cmd",
            "fm/v1/lakeside/elevator/+/cmd",
            "fm/v1/lakeside/elevator/EL-1/#",
            "fm/v1/dispatch/#",
            "#",
            "fm/v1/lakeside/elevator/EL-2/cmd",
        ] {
            assert_eq!(may_subscribe(&me, f), Err(Denial::Subscribe), "{f}");
        }
        assert_eq!(may_will(&me, "fm/v1/lakeside/elevator/EL-1/death"), Ok(()));
        assert_eq!(may_will(&me, "fm/v1/lakeside/elevator/EL-2/death"), Err(Denial::Will));
        assert_eq!(may_will(&me, "fm/v1/lakeside/elevator/EL-1/event"), Err(Denial::Will));
    }

    /// An edge node provisioned as `lakeside/EL-1` speaks Sparkplug B as
    /// group `lakeside`, edge node `EL-1`, and nobody else.
    #[test]
    fn an_edge_node_publishes_only_its_own_sparkplug_topics() {
        let me = lift();
        for topic in [
            "spBv1.0/lakeside/NBIRTH/EL-1",
            "spBv1.0/lakeside/NDATA/EL-1",
            "spBv1.0/lakeside/NDEATH/EL-1",
            "spBv1.0/lakeside/DBIRTH/EL-1/car",
            "spBv1.0/lakeside/DDATA/EL-1/car",
            "spBv1.0/lakeside/DDEATH/EL-1/car",
        ] {
            assert_eq!(may_publish(&me, topic), Ok(()), "{topic}");
        }
        for topic in [
            "spBv1.0/lakeside/NCMD/EL-1",
            "spBv1.0/lakeside/DCMD/EL-1/car",
            "spBv1.0/lakeside/NDATA/EL-2",
            "spBv1.0/lakeside/NDATA/EL-10",
            "spBv1.0/other/NDATA/EL-1",
            "spBv1.0/lakeside/NDATA/EL-1/car",
            "spBv1.0/lakeside/DDATA/EL-1",
            "spBv1.0/lakeside/DDATA/EL-1/",
            "spBv1.0/lakeside/DDATA/EL-1/car/x",
            "spBv1.0/STATE/fm-gateway",
        ] {
            assert_eq!(may_publish(&me, topic), Err(Denial::Publish), "{topic}");
        }
        assert_eq!(may_subscribe(&me, "spBv1.0/lakeside/NCMD/EL-1"), Ok(()));
        assert_eq!(may_subscribe(&me, "spBv1.0/lakeside/DCMD/EL-1/+"), Ok(()));
        assert_eq!(may_subscribe(&me, "spBv1.0/STATE/fm-gateway"), Ok(()));
        for f in [
            "spBv1.0/lakeside/NCMD/+",
            "spBv1.0/lakeside/NDATA/EL-1",
            "spBv1.0/STATE/#",
            "spBv1.0/#",
        ] {
            assert_eq!(may_subscribe(&me, f), Err(Denial::Subscribe), "{f}");
        }
        assert_eq!(may_will(&me, "spBv1.0/lakeside/NDEATH/EL-1"), Ok(()));
        assert_eq!(may_will(&me, "spBv1.0/lakeside/NDEATH/EL-2"), Err(Denial::Will));
        assert_eq!(may_will(&me, "spBv1.0/lakeside/NDATA/EL-1"), Err(Denial::Will));
    }

    #[test]
    fn issued_passwords_are_random_and_verify_only_against_their_hash() {
        let a = issue().unwrap();
        let b = issue().unwrap();
        assert_eq!(a.password.len(), 32);
        assert!(
            a.password
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_ne!(a.password, b.password);
        assert_ne!(a.cmd_key, b.cmd_key);
        assert!(!format!("{a:?}").contains(&a.password));
        let phc = hash_password(&a.password).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(!phc.contains(&a.password));
        assert!(verify_password(&phc, &a.password));
        assert!(!verify_password(&phc, &b.password));
        assert!(!verify_password("not a hash", &a.password));
        // The same password hashes differently (salted).
        assert_ne!(phc, hash_password(&a.password).unwrap());
    }

    #[test]
    fn base64url_matches_the_rfc_vectors() {
        // RFC 4648 §10, unpadded.
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
        ] {
            assert_eq!(base64url(raw.as_bytes()), enc);
        }
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn a_verified_login_is_remembered_for_that_hash_and_password_only() {
        let v = Verified::default();
        v.remember("s/d", "$h1", "pw");
        assert!(v.knows("s/d", "$h1", "pw"));
        assert!(!v.knows("s/d", "$h1", "other"));
        assert!(
            !v.knows("s/d", "$h2", "pw"),
            "a re-provisioned device needs its new password"
        );
        assert!(!v.knows("s/e", "$h1", "pw"));
        v.forget("s/d");
        assert!(!v.knows("s/d", "$h1", "pw"));
    }
}
