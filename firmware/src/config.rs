//! Thresholds by name, so `set_threshold` commands and the docs use one table.

use crate::registers::CommandError;

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
/// [`CommandError::BadArgument`] for an unknown name or a value out of range.
pub fn set_threshold<C>(table: &[Threshold<C>], config: &mut C, name: &str, value: f64) -> Result<(), CommandError> {
    let t = table.iter().find(|t| t.name == name).ok_or(CommandError::BadArgument)?;
    #[allow(clippy::cast_possible_truncation)]
    let v = value as f32;
    if !(v.is_finite() && v >= t.min && v <= t.max) {
        return Err(CommandError::BadArgument);
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
