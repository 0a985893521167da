//! ams AS5600 12-bit magnetic angle sensor on I²C, on the overspeed governor's
//! sheave: car speed without touching the elevator controller. Plus
//! [`SpeedEstimator`], the pure conversion from angle samples to m/s.

use embedded_hal::i2c::I2c;

use crate::hal::Millis;

/// The sensor's fixed I²C address.
pub const ADDRESS: u8 = 0x36;
const RAW_ANGLE: u8 = 0x0C;
const STATUS: u8 = 0x0B;
const STATUS_MAGNET_DETECTED: u8 = 0x20;

/// Why a reading failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error<E> {
    /// The bus failed.
    I2c(E),
    /// No magnet in front of the sensor: the mount has come loose.
    NoMagnet,
}

/// An AS5600 owning its I²C bus.
#[derive(Debug)]
pub struct As5600<I2C> {
    i2c: I2C,
}

impl<I2C: I2c> As5600<I2C> {
    /// A driver for the sensor on `i2c`.
    pub fn new(i2c: I2C) -> Self {
        As5600 { i2c }
    }

    /// Reads the raw angle, 0–4095 per turn, after checking the magnet is there.
    ///
    /// # Errors
    /// [`Error`].
    pub fn raw_angle(&mut self) -> Result<u16, Error<I2C::Error>> {
        let mut status = [0u8];
        self.i2c
            .write_read(ADDRESS, &[STATUS], &mut status)
            .map_err(Error::I2c)?;
        if status[0] & STATUS_MAGNET_DETECTED == 0 {
            return Err(Error::NoMagnet);
        }
        let mut angle = [0u8; 2];
        self.i2c
            .write_read(ADDRESS, &[RAW_ANGLE], &mut angle)
            .map_err(Error::I2c)?;
        Ok(u16::from_be_bytes(angle) & 0x0FFF)
    }

    /// Gives the bus back.
    pub fn release(self) -> I2C {
        self.i2c
    }
}

/// Car speed from successive sheave angles. Positive is up.
///
/// Samples must come faster than half a turn per sample (at 4 m/s and a 0.3 m
/// sheave: every 35 ms or faster) or the direction is ambiguous.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SpeedEstimator {
    /// Rope travel per sheave turn (π × sheave diameter).
    pub metres_per_turn: f32,
    /// Whether increasing angle means the car goes down.
    pub inverted: bool,
    last: Option<(u16, Millis)>,
}

impl SpeedEstimator {
    /// An estimator for a sheave of the given circumference.
    #[must_use]
    pub const fn new(metres_per_turn: f32, inverted: bool) -> Self {
        SpeedEstimator {
            metres_per_turn,
            inverted,
            last: None,
        }
    }

    /// Feeds an angle sample; returns the speed since the previous one (m/s).
    /// The first sample, or one at the same instant, gives `None`.
    pub fn update(&mut self, angle: u16, now: Millis) -> Option<f32> {
        let prev = self.last.replace((angle, now));
        let (a0, t0) = prev?;
        let dt_ms = now.since(t0);
        if dt_ms == 0 {
            return None;
        }
        // Shortest signed step on the 4096-count circle.
        let mut step = i32::from(angle & 0x0FFF) - i32::from(a0 & 0x0FFF);
        if step > 2048 {
            step -= 4096;
        } else if step < -2048 {
            step += 4096;
        }
        if self.inverted {
            step = -step;
        }
        #[allow(clippy::cast_precision_loss)]
        let metres = step as f32 / 4096.0 * self.metres_per_turn;
        #[allow(clippy::cast_precision_loss)]
        Some(metres / (dt_ms as f32 / 1000.0))
    }
}
