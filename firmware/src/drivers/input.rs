//! A debounced digital input: a door contact, a limit switch, a run-feedback
//! relay, a smoke detector's alarm contact.

use embedded_hal::digital::InputPin;

use crate::debounce::Debouncer;
use crate::hal::Millis;

/// A contact read through a GPIO, debounced in time.
#[derive(Debug)]
pub struct DebouncedInput<P> {
    pin: P,
    active_low: bool,
    debouncer: Debouncer,
}

impl<P: InputPin> DebouncedInput<P> {
    /// A contact that must be stable for `stable_ms` to change state.
    /// `active_low` for contacts that pull the pin to ground when closed.
    pub fn new(pin: P, active_low: bool, stable_ms: u32) -> Self {
        DebouncedInput {
            pin,
            active_low,
            debouncer: Debouncer::new(stable_ms, false),
        }
    }

    /// Samples the pin; returns the debounced "active" state.
    ///
    /// # Errors
    /// The pin's error; the debounced state is kept as it was.
    pub fn sample(&mut self, now: Millis) -> Result<bool, P::Error> {
        let high = self.pin.is_high()?;
        Ok(self.debouncer.update(high != self.active_low, now))
    }

    /// The debounced state without sampling.
    #[must_use]
    pub fn state(&self) -> bool {
        self.debouncer.state()
    }

    /// Gives the pin back.
    pub fn release(self) -> P {
        self.pin
    }
}
