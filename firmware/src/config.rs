//! The node's configuration: thresholds by name (so `set_threshold`
//! commands and the docs use one table), and its credentials (who it is,
//! how it logs in to the broker, and the key its commands must be signed
//! with).

use core::fmt;

use protocol::CommandKey;
use protocol::topic::{DeviceId, MAX_DEVICE_LEN, MAX_SITE_LEN, SiteId};

use crate::registers::CommandError;

/// Longest MQTT password a node keeps (the gateway issues 32 characters).
pub const MAX_PASSWORD_LEN: usize = 64;
/// Longest MQTT username: `{site}/{device}`.
pub const MAX_USERNAME_LEN: usize = MAX_SITE_LEN + 1 + MAX_DEVICE_LEN;

/// An MQTT password.
pub type Password = heapless::String<MAX_PASSWORD_LEN>;

/// What provisioning gives a node (contract §8): its identity, the MQTT
/// password the gateway issued for it, and the key its commands are signed
/// with (`cmd_key`, [`protocol::cmdauth`]).
///
/// Without a command key the node carries out no command (it answers
/// `no_key`) and its Modbus slave is read-only: a node that cannot tell the
/// gateway from anybody else obeys nobody. `Debug` never prints the
/// password or the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The compound (the topic's `site`).
    pub site: SiteId,
    /// The device id (the topic's `device`).
    pub device: DeviceId,
    /// The broker password; `None` connects without a username and password
    /// (a broker with `auth = "none"`).
    pub password: Option<Password>,
    /// The command key; `None` refuses every command.
    pub cmd_key: Option<CommandKey>,
    /// Refuse every Modbus write even with a key (a site that commands its
    /// nodes over MQTT only).
    pub modbus_read_only: bool,
}

/// Why credentials were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialsError {
    /// The site or device is not a valid topic segment.
    Identity(protocol::topic::Segment),
    /// The password is longer than [`MAX_PASSWORD_LEN`].
    PasswordTooLong,
    /// The command key is not 64 hex digits.
    Key(protocol::cmdauth::HexError),
}

impl Credentials {
    /// Credentials with an identity only: no password, no key (commands
    /// refused, Modbus read-only).
    ///
    /// # Errors
    /// [`CredentialsError::Identity`] for an id that is no topic segment.
    pub fn new(site: &str, device: &str) -> Result<Self, CredentialsError> {
        Ok(Credentials {
            site: SiteId::new(site).map_err(|e| CredentialsError::Identity(e.segment))?,
            device: DeviceId::new(device).map_err(|e| CredentialsError::Identity(e.segment))?,
            password: None,
            cmd_key: None,
            modbus_read_only: false,
        })
    }

    /// With the broker password.
    ///
    /// # Errors
    /// [`CredentialsError::PasswordTooLong`].
    pub fn with_password(mut self, password: &str) -> Result<Self, CredentialsError> {
        self.password = Some(Password::try_from(password).map_err(|_| CredentialsError::PasswordTooLong)?);
        Ok(self)
    }

    /// With the command key as provisioning prints it (64 hex digits).
    ///
    /// # Errors
    /// [`CredentialsError::Key`].
    pub fn with_cmd_key_hex(mut self, hex: &str) -> Result<Self, CredentialsError> {
        self.cmd_key = Some(CommandKey::from_hex(hex).map_err(CredentialsError::Key)?);
        Ok(self)
    }

    /// With the command key.
    #[must_use]
    pub fn with_cmd_key(mut self, key: CommandKey) -> Self {
        self.cmd_key = Some(key);
        self
    }

    /// The key Modbus writes are checked with: the command key, unless the
    /// node is configured read-only on Modbus. `None`: the slave stays
    /// read-only.
    #[must_use]
    pub fn modbus_key(&self) -> Option<&CommandKey> {
        self.cmd_key.as_ref().filter(|_| !self.modbus_read_only)
    }

    /// The MQTT username: `{site}/{device}`, as the gateway provisions it.
    #[must_use]
    pub fn username(&self) -> heapless::String<MAX_USERNAME_LEN> {
        let mut u = heapless::String::new();
        // Both ids are bounded: the sum fits.
        let _ = u.push_str(self.site.as_str());
        let _ = u.push('/');
        let _ = u.push_str(self.device.as_str());
        u
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("site", &self.site)
            .field("device", &self.device)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("cmd_key", &self.cmd_key)
            .field("modbus_read_only", &self.modbus_read_only)
            .finish()
    }
}

/// A threshold a `set_threshold` command may change: its name, the range a
/// value must be in, and where it lives in a class's configuration.
pub struct Threshold<C> {
    /// Name used in `args.name`.
    pub name: &'static str,
    /// Smallest accepted value.
    pub min: f32,
    /// Largest accepted value.
    pub max: f32,
    /// Reads it.
    pub get: fn(&C) -> f32,
    /// Writes it.
    pub set: fn(&mut C, f32),
}

/// Sets a named threshold after checking its range.
///
/// # Errors
/// [`CommandError::UnknownThreshold`] for an unknown name,
/// [`CommandError::OutOfRange`] for a value out of range.
pub fn set_threshold<C>(table: &[Threshold<C>], config: &mut C, name: &str, value: f64) -> Result<(), CommandError> {
    let t = table
        .iter()
        .find(|t| t.name == name)
        .ok_or(CommandError::UnknownThreshold)?;
    #[allow(clippy::cast_possible_truncation)]
    let v = value as f32;
    if !(v.is_finite() && v >= t.min && v <= t.max) {
        return Err(CommandError::OutOfRange);
    }
    (t.set)(config, v);
    Ok(())
}

/// Seconds as milliseconds, for hold times configured in seconds.
#[must_use]
pub fn ms(seconds: f32) -> u64 {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let ms = (seconds.max(0.0) * 1000.0) as u64;
    ms
}

/// One [`Threshold`] entry for a field of a config struct.
macro_rules! threshold {
    ($field:ident, $min:expr, $max:expr) => {
        $crate::config::Threshold {
            name: stringify!($field),
            min: $min,
            max: $max,
            get: |c| c.$field,
            set: |c, v| c.$field = v,
        }
    };
}
pub(crate) use threshold;
