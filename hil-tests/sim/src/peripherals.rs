//! Simulated peripherals: what the firmware's drivers talk to on the host.
//! Each implements the same trait the real part's pin or bus does on the
//! board — `embedded-hal` 1.0's `InputPin`, `OutputPin`, `I2c` and
//! `SpiDevice`, and the firmware's own `Clock` — and reads or writes a
//! [`Wire`] the simulation sets from its physics. So `firmware::io` and the
//! drivers under it run unchanged: the AS5600 driver really sends its
//! register addresses over "I²C", the MCP3208 driver really clocks its
//! 3-byte frames over "SPI".
//!
//! Faults of the electrical kind live here too: a contact stuck, an angle
//! sensor without its magnet or off the bus, a converter off the bus.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};

use embedded_hal::digital::{ErrorType as PinErrorType, InputPin, OutputPin};
use embedded_hal::i2c::{self, I2c, NoAcknowledgeSource, Operation as I2cOp, SevenBitAddress};
use embedded_hal::spi::{self, Operation as SpiOp, SpiDevice};
use firmware::hal::{Clock, Millis};

/// A value shared between the simulation and one peripheral. A node's
/// simulation runs on one thread at a time, but its rig may move between the
/// bench's threads and be read by its Modbus link's task, so the wire is a
/// (never contended for long) mutex rather than a `Cell`.
#[derive(Debug, Default)]
pub struct Wire<T: Copy>(Arc<Mutex<T>>);

impl<T: Copy> Clone for Wire<T> {
    fn clone(&self) -> Self {
        Wire(Arc::clone(&self.0))
    }
}

impl<T: Copy> Wire<T> {
    /// A wire carrying `v`.
    pub fn new(v: T) -> Self {
        Wire(Arc::new(Mutex::new(v)))
    }

    /// What it carries.
    pub fn get(&self) -> T {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets what it carries.
    pub fn set(&self, v: T) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = v;
    }
}

/// A contact input: its electrical level (`true` is high). The reference
/// board's opto inputs are active low, so a closed contact reads low.
#[derive(Clone, Debug)]
pub struct SimInput {
    /// The level the pin reads.
    pub level: Wire<bool>,
}

impl SimInput {
    /// An input reading `level`.
    pub fn new(level: bool) -> Self {
        SimInput {
            level: Wire::new(level),
        }
    }

    /// Drives the pin as an active-low contact would: `closed` reads low.
    pub fn contact(&self, closed: bool) {
        self.level.set(!closed);
    }
}

impl PinErrorType for SimInput {
    type Error = Infallible;
}

impl InputPin for SimInput {
    fn is_high(&mut self) -> Result<bool, Infallible> {
        Ok(self.level.get())
    }

    fn is_low(&mut self) -> Result<bool, Infallible> {
        Ok(!self.level.get())
    }
}

/// An output (relay driver, test output): the level the firmware drives.
#[derive(Clone, Debug)]
pub struct SimOutput {
    /// The level driven (`true` is high).
    pub level: Wire<bool>,
}

impl SimOutput {
    /// An output, low.
    pub fn new() -> Self {
        SimOutput {
            level: Wire::new(false),
        }
    }
}

impl Default for SimOutput {
    fn default() -> Self {
        SimOutput::new()
    }
}

impl PinErrorType for SimOutput {
    type Error = Infallible;
}

impl OutputPin for SimOutput {
    fn set_low(&mut self) -> Result<(), Infallible> {
        self.level.set(false);
        Ok(())
    }

    fn set_high(&mut self) -> Result<(), Infallible> {
        self.level.set(true);
        Ok(())
    }
}

/// The firmware's millisecond clock, in virtual time.
#[derive(Clone, Debug, Default)]
pub struct SimClock {
    /// Milliseconds since the node started.
    pub now: Wire<u64>,
}

impl Clock for SimClock {
    fn now(&mut self) -> Millis {
        Millis(self.now.get())
    }
}

/// Why a simulated bus transaction failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusError {
    /// Nobody answered the address (the part is off the bus).
    NoAcknowledge,
    /// The transaction is not one the part understands.
    Other,
}

impl i2c::Error for BusError {
    fn kind(&self) -> i2c::ErrorKind {
        match self {
            BusError::NoAcknowledge => i2c::ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address),
            BusError::Other => i2c::ErrorKind::Other,
        }
    }
}

impl spi::Error for BusError {
    fn kind(&self) -> spi::ErrorKind {
        spi::ErrorKind::Other
    }
}

/// The AS5600 magnetic angle sensor on the governor sheave, as the I²C bus
/// sees it: `STATUS` (0x0B) and `RAW ANGLE` (0x0C–0x0D) at address 0x36.
#[derive(Clone, Debug)]
pub struct SimAs5600 {
    /// The raw angle, 0–4095 per turn.
    pub angle: Wire<u16>,
    /// Whether the magnet is in place (`STATUS.MD`).
    pub magnet: Wire<bool>,
    /// Whether the part answers at all.
    pub present: Wire<bool>,
}

/// The AS5600's fixed address.
pub const AS5600_ADDRESS: u8 = 0x36;

impl SimAs5600 {
    /// A sensor at angle 0 with its magnet, on the bus.
    pub fn new() -> Self {
        SimAs5600 {
            angle: Wire::new(0),
            magnet: Wire::new(true),
            present: Wire::new(true),
        }
    }

    /// Sets the angle from the sheave's turns (any real number of turns).
    pub fn set_turns(&self, turns: f64) {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let raw = (turns.rem_euclid(1.0) * 4096.0) as u16 & 0x0FFF;
        self.angle.set(raw);
    }

    fn register(&self, reg: u8) -> u8 {
        let [hi, lo] = self.angle.get().to_be_bytes();
        match reg {
            // MD (magnet detected) is bit 5.
            0x0B if self.magnet.get() => 0x20,
            0x0C => hi & 0x0F,
            0x0D => lo,
            _ => 0,
        }
    }
}

impl Default for SimAs5600 {
    fn default() -> Self {
        SimAs5600::new()
    }
}

impl i2c::ErrorType for SimAs5600 {
    type Error = BusError;
}

impl I2c<SevenBitAddress> for SimAs5600 {
    fn transaction(&mut self, address: u8, operations: &mut [I2cOp<'_>]) -> Result<(), BusError> {
        if address != AS5600_ADDRESS || !self.present.get() {
            return Err(BusError::NoAcknowledge);
        }
        // A write sets the register pointer; reads auto-increment from it.
        let mut pointer = 0u8;
        for op in operations {
            match op {
                I2cOp::Write(bytes) => {
                    pointer = *bytes.first().ok_or(BusError::Other)?;
                }
                I2cOp::Read(buf) => {
                    for b in buf.iter_mut() {
                        *b = self.register(pointer);
                        pointer = pointer.wrapping_add(1);
                    }
                }
            }
        }
        Ok(())
    }
}

/// An MCP3208 (8 × 12-bit ADC) on its own chip select, as the SPI bus sees
/// it: a 3-byte frame with start, single-ended and the channel in the first
/// two bytes, the 12-bit code clocked back in the last 12 bits.
#[derive(Clone, Debug)]
pub struct SimMcp3208 {
    /// The volts at each channel's input.
    pub volts: Wire<[f32; 8]>,
    /// The reference voltage (full scale).
    pub vref: f32,
    /// Whether the part answers (off the bus: the frame reads all ones,
    /// which the driver cannot tell from full scale, so it is an error here
    /// as a broken bus would be on the board).
    pub present: Wire<bool>,
}

impl SimMcp3208 {
    /// A converter with every input at 0 V.
    pub fn new(vref: f32) -> Self {
        SimMcp3208 {
            volts: Wire::new([0.0; 8]),
            vref,
            present: Wire::new(true),
        }
    }

    /// Sets one channel's input.
    pub fn set(&self, channel: u8, volts: f32) {
        let mut all = self.volts.get();
        if let Some(v) = all.get_mut(usize::from(channel)) {
            *v = volts;
            self.volts.set(all);
        }
    }

    fn code(&self, channel: u8) -> u16 {
        let v = self.volts.get().get(usize::from(channel)).copied().unwrap_or(0.0);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let code = (f64::from(v) / f64::from(self.vref) * 4096.0)
            .round()
            .clamp(0.0, 4095.0) as u16;
        code
    }
}

impl spi::ErrorType for SimMcp3208 {
    type Error = BusError;
}

impl SpiDevice for SimMcp3208 {
    fn transaction(&mut self, operations: &mut [SpiOp<'_, u8>]) -> Result<(), BusError> {
        if !self.present.get() {
            return Err(BusError::NoAcknowledge);
        }
        for op in operations {
            let SpiOp::TransferInPlace(frame) = op else {
                return Err(BusError::Other);
            };
            let [b0, b1, b2] = frame else {
                return Err(BusError::Other);
            };
            // Start bit and single-ended mode: 0b0000_011x.
            if *b0 & 0b0000_0110 != 0b0000_0110 {
                return Err(BusError::Other);
            }
            let channel = ((*b0 & 1) << 2) | (*b1 >> 6);
            let code = self.code(channel);
            let [hi, lo] = code.to_be_bytes();
            *b0 = 0;
            *b1 = hi & 0x0F;
            *b2 = lo;
        }
        Ok(())
    }
}

/// A converter a driver reads through [`firmware::hal::AnalogInput`]: the
/// real MCP3208 driver over a simulated part.
pub type SimAdc = firmware::drivers::mcp3208::Mcp3208<SimMcp3208>;
