//! Provisioning a device (CONTRACT §8): its secrets made once, what is
//! stored of them, and the supervision record of the change. Shared by the
//! API (through the pipeline, which owns the chain) and the offline CLI.
//!
//! The record says who provisioned or revoked which device and when, and
//! the certificate pinned if any; never the password or the command key.

use records::NewRecord;
use serde::Deserialize;
use serde_json::json;

use crate::identity::{Identity, Issued};
use crate::store::credentials::{Change, Credential};

/// What provisioning is asked for.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NewDevice {
    /// The compound.
    pub site: String,
    /// `elevator`, `firepump` or `charger`.
    pub class: String,
    /// The device id.
    pub device: String,
    /// A client certificate (SHA-256 of its DER, 64 hex digits) it may log
    /// in with on the TLS listener instead of its password.
    #[serde(default)]
    pub certificate_sha256: Option<String>,
    /// Provisioned already: make new secrets (the old ones stop working).
    #[serde(default)]
    pub rotate: bool,
}

/// Why a device cannot be provisioned or revoked.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProvisionError {
    /// A field outside the contract's rules.
    #[error("`{field}`: {message}")]
    Invalid {
        /// Which.
        field: &'static str,
        /// Why.
        message: String,
    },
    /// Provisioned and not revoked, and no rotation asked for.
    #[error("{0} is provisioned already: revoke it first, or ask to rotate its secrets")]
    Exists(String),
    /// Not provisioned (or revoked already).
    #[error("{0} is not provisioned")]
    Unknown(String),
    /// No randomness, or Argon2 failing.
    #[error("{0}")]
    Secrets(String),
}

/// A device provisioned: the answer shown once, the row, the record.
pub struct Provisioned {
    /// The 201 body (`site`, `class`, `device`, `username`, `password`, `cmd_key`).
    pub answer: serde_json::Value,
    /// What the store keeps.
    pub change: Change,
    /// The record.
    pub record: Option<NewRecord>,
}

/// Checks `new` against the topic rules (a device that could never publish is refused now).
///
/// # Errors
/// [`ProvisionError::Invalid`] naming the field.
pub fn identity(new: &NewDevice) -> Result<Identity, ProvisionError> {
    let invalid = |field, message: String| ProvisionError::Invalid { field, message };
    protocol::SiteId::new(&new.site).map_err(|e| invalid("site", e.to_string()))?;
    protocol::DeviceId::new(&new.device).map_err(|e| invalid("device", e.to_string()))?;
    if protocol::DeviceClass::from_name(&new.class).is_none() {
        return Err(invalid(
            "class",
            format!("`{}` is not elevator, firepump or charger", new.class),
        ));
    }
    if let Some(c) = &new.certificate_sha256
        && crate::api::auth::parse_digest(c).is_none()
    {
        return Err(invalid("certificate_sha256", "must be 64 hex digits".into()));
    }
    Ok(Identity {
        site: new.site.clone(),
        class: new.class.clone(),
        device: new.device.clone(),
    })
}

/// Makes `new`'s secrets and what follows from them. `existing` is the
/// stored credential of that site and device, if any.
///
/// # Errors
/// Invalid fields, provisioned already (without `rotate`), no randomness.
pub fn provision(
    new: &NewDevice,
    existing: Option<&Credential>,
    now: i64,
    by: &str,
) -> Result<Provisioned, ProvisionError> {
    let id = identity(new)?;
    let live = existing.filter(|c| c.revoked.is_none());
    if live.is_some() && !new.rotate {
        return Err(ProvisionError::Exists(id.username()));
    }
    let Issued { password, cmd_key } = crate::identity::issue().map_err(|e| ProvisionError::Secrets(e.to_string()))?;
    let password_hash =
        crate::identity::hash_password(&password).map_err(|e| ProvisionError::Secrets(e.to_string()))?;
    let certificate = new.certificate_sha256.as_ref().map(|c| c.trim().to_ascii_lowercase());
    let kind = if live.is_some() {
        "device_rotated"
    } else {
        "device_provisioned"
    };
    let record = crate::ops::supervision::record((
        now,
        kind.into(),
        id.site.clone(),
        id.class.clone(),
        id.device.clone(),
        id.username(),
        serde_json::to_string(&json!({
            "username": id.username(),
            "by": by,
            "certificate_sha256": certificate,
        })),
    ));
    let answer = json!({
        "site": id.site,
        "class": id.class,
        "device": id.device,
        "username": id.username(),
        "password": password,
        "cmd_key": hex::encode(cmd_key),
        "certificate_sha256": certificate,
    });
    Ok(Provisioned {
        answer,
        change: Change::Put(Credential {
            identity: id,
            password_hash,
            cmd_key,
            created: now,
            revoked: None,
            certificate,
        }),
        record,
    })
}

/// Revoking `existing` at `now`: the change and its record.
///
/// # Errors
/// [`ProvisionError::Unknown`] when it is not provisioned or revoked already.
pub fn revoke(
    site: &str,
    device: &str,
    existing: Option<&Credential>,
    now: i64,
    by: &str,
) -> Result<(Change, Option<NewRecord>), ProvisionError> {
    let username = crate::identity::username(site, device);
    let Some(c) = existing.filter(|c| c.revoked.is_none()) else {
        return Err(ProvisionError::Unknown(username));
    };
    let record = crate::ops::supervision::record((
        now,
        "device_revoked".into(),
        c.identity.site.clone(),
        c.identity.class.clone(),
        c.identity.device.clone(),
        username.clone(),
        serde_json::to_string(&json!({ "username": username, "by": by })),
    ));
    Ok((
        Change::Revoke {
            site: site.into(),
            device: device.into(),
            at: now,
        },
        record,
    ))
}

/// A credential as listed (no secrets).
#[must_use]
pub fn listed(c: &Credential) -> serde_json::Value {
    json!({
        "site": c.identity.site,
        "class": c.identity.class,
        "device": c.identity.device,
        "username": c.identity.username(),
        "created": c.created,
        "revoked": c.revoked,
        "certificate_sha256": c.certificate,
    })
}

/// An `acl_file` for Mosquitto's node listener: one `user` block per live
/// device, each its own node-to-gateway topics to write and its own `cmd` to
/// read. Explicit per-user rules rather than `pattern` lines: Mosquitto 2
/// refuses to substitute `%u` when a user name holds a `/`, as `{site}/{device}` does.
#[must_use]
pub fn mosquitto_acl(creds: &[Credential]) -> String {
    use std::fmt::Write as _;
    let mut out = String::from(
        "# Mosquitto acl_file for the nodes' listener, from `gateway devices mosquitto-acl`.\n\
         # Each device writes only its own topics and reads only its own commands.\n",
    );
    for c in creds.iter().filter(|c| c.revoked.is_none()) {
        let id = &c.identity;
        let base = format!("fm/v1/{}/{}/{}", id.site, id.class, id.device);
        let _ = writeln!(out, "\nuser {}", id.username());
        for kind in ["birth", "death", "data", "event", "ack"] {
            let _ = writeln!(out, "topic write {base}/{kind}");
        }
        let _ = writeln!(out, "topic read {base}/cmd");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(device: &str) -> NewDevice {
        NewDevice {
            site: "lakeside".into(),
            class: "charger".into(),
            device: device.into(),
            certificate_sha256: None,
            rotate: false,
        }
    }

    #[test]
    fn provisioning_shows_the_secrets_once_and_records_none_of_them() {
        let p = provision(&new("CH-1"), None, 1000, "admin").unwrap();
        let password = p.answer["password"].as_str().unwrap().to_owned();
        let key = p.answer["cmd_key"].as_str().unwrap().to_owned();
        assert_eq!(p.answer["username"], "lakeside/CH-1");
        assert_eq!(key.len(), 64);
        let Change::Put(c) = &p.change else { panic!("a put") };
        assert!(crate::identity::verify_password(&c.password_hash, &password));
        assert_eq!(hex::encode(c.cmd_key), key);
        let r = p.record.unwrap();
        assert_eq!(r.kind, "device_provisioned");
        assert!(!r.body.contains(&password) && !r.body.contains(&key), "{}", r.body);
        assert!(r.body.contains("\"by\":\"admin\""));
        // Listing shows no secret either.
        let listed = listed(c).to_string();
        assert!(!listed.contains(&password) && !listed.contains(&key) && !listed.contains("argon2"));
    }

    #[test]
    fn a_live_device_is_provisioned_again_only_when_rotating_and_revoked_once() {
        let Change::Put(c) = provision(&new("CH-1"), None, 1000, "admin").unwrap().change else {
            panic!()
        };
        assert_eq!(
            provision(&new("CH-1"), Some(&c), 2000, "admin").err(),
            Some(ProvisionError::Exists("lakeside/CH-1".into()))
        );
        let rotated = provision(
            &NewDevice {
                rotate: true,
                ..new("CH-1")
            },
            Some(&c),
            2000,
            "admin",
        )
        .unwrap();
        assert_eq!(rotated.record.unwrap().kind, "device_rotated");
        let (change, record) = revoke("lakeside", "CH-1", Some(&c), 3000, "ops").unwrap();
        assert!(matches!(change, Change::Revoke { at: 3000, .. }));
        assert_eq!(record.unwrap().kind, "device_revoked");
        let revoked = Credential {
            revoked: Some(3000),
            ..c
        };
        assert!(matches!(
            revoke("lakeside", "CH-1", Some(&revoked), 4000, "ops"),
            Err(ProvisionError::Unknown(_))
        ));
        // A revoked device may be provisioned again, with new secrets.
        assert!(provision(&new("CH-1"), Some(&revoked), 5000, "admin").is_ok());
    }

    #[test]
    fn fields_outside_the_topic_rules_are_refused_by_name() {
        let bad = |n: NewDevice| match identity(&n) {
            Err(ProvisionError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            bad(NewDevice {
                site: "Lake Side".into(),
                ..new("X")
            }),
            "site"
        );
        assert_eq!(bad(new("a/b")), "device");
        assert_eq!(
            bad(NewDevice {
                class: "boiler".into(),
                ..new("X")
            }),
            "class"
        );
        assert_eq!(
            bad(NewDevice {
                certificate_sha256: Some("xyz".into()),
                ..new("X")
            }),
            "certificate_sha256"
        );
    }
}
