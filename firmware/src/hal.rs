//! The small traits embedded-hal 1.0 does not have: a monotonic clock and a
//! multi-channel analog input. Kept concrete, as the 1.0 migration guide
//! advises (its ADC trait was dropped because generic associated types made
//! drivers unusable).

use core::fmt::Debug;

/// Monotonic milliseconds since boot. Never goes backwards, wraps after 584
/// million years.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Millis(pub u64);

impl Millis {
    /// Milliseconds from `earlier` to `self`, zero if `earlier` is later.
    #[must_use]
    pub const fn since(self, earlier: Millis) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// This instant plus `ms` milliseconds.
    #[must_use]
    pub const fn plus(self, ms: u64) -> Millis {
        Millis(self.0.saturating_add(ms))
    }
}

/// A monotonic millisecond clock (a SysTick counter on the board, a manual
/// clock in tests).
pub trait Clock {
    /// The current instant.
    fn now(&mut self) -> Millis;
}

/// A multi-channel analog input that reads volts at the pin.
///
/// Sensors (4–20 mA loops, NTC dividers, current shunts) are pure conversions
/// from volts, so the same sensor code works on the MCU's own ADC and on an
/// external SPI converter.
pub trait AnalogInput {
    /// Why a conversion failed (bus error, channel out of range).
    type Error: Debug;

    /// Converts one channel.
    ///
    /// # Errors
    /// The converter's error.
    fn read_volts(&mut self, channel: u8) -> Result<f32, Self::Error>;
}
