//! The MCP3208 converters on SPI1, paced for the part's chip-select timing.

use embedded_hal_bus::spi::{ExclusiveDevice, NoDelay, RefCellDevice};
use firmware::drivers::mcp3208::Mcp3208;
use firmware::hal::AnalogInput;

use crate::board::{Out, Spi1};

/// The converters' reference: the 3.3 V rail.
pub const VREF: f32 = firmware::io::VREF;

/// The MCP3208 needs chip select high for 500 ns between conversions
/// (`t_CSH`); 1 µs at up to 100 MHz.
const CS_HIGH_CYCLES: u32 = 100;

/// A converter that waits `t_CSH` after every conversion, so the shared
/// class glue (`firmware::io`) can read channel after channel.
pub struct Paced<A>(pub A);

impl<A: AnalogInput> AnalogInput for Paced<A> {
    type Error = A::Error;

    fn read_volts(&mut self, channel: u8) -> Result<f32, Self::Error> {
        let v = self.0.read_volts(channel);
        cortex_m::asm::delay(CS_HIGH_CYCLES);
        v
    }
}

/// A converter alone on the bus (the fire pump's).
pub type SoloAdc = Paced<Mcp3208<ExclusiveDevice<Spi1, Out, NoDelay>>>;
/// One of several converters sharing the bus (the charger's).
pub type SharedAdc = Paced<Mcp3208<RefCellDevice<'static, Spi1, Out, NoDelay>>>;
