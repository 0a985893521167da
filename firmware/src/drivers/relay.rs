//! A port relay (or contactor) driven from a GPIO. Off is the safe state.

use embedded_hal::digital::OutputPin;

/// A relay that powers a charging port.
#[derive(Debug)]
pub struct Relay<P> {
    pin: P,
    active_high: bool,
    on: bool,
}

impl<P: OutputPin> Relay<P> {
    /// Takes the pin and switches the relay off at once: after a reset no port
    /// is powered until the node decides it may be.
    ///
    /// # Errors
    /// The pin's error.
    pub fn new(pin: P, active_high: bool) -> Result<Self, P::Error> {
        let mut r = Relay {
            pin,
            active_high,
            on: true,
        };
        r.set(false)?;
        Ok(r)
    }

    /// Switches the relay.
    ///
    /// # Errors
    /// The pin's error.
    pub fn set(&mut self, on: bool) -> Result<(), P::Error> {
        if on == self.on {
            return Ok(());
        }
        if on == self.active_high {
            self.pin.set_high()?;
        } else {
            self.pin.set_low()?;
        }
        self.on = on;
        Ok(())
    }

    /// Whether the relay is on.
    #[must_use]
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// Gives the pin back.
    pub fn release(self) -> P {
        self.pin
    }
}
