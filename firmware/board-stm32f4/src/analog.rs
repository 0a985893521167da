//! The MCP3208 converters on SPI1, and reading them as optional volts.

use embedded_hal_bus::spi::{ExclusiveDevice, NoDelay, RefCellDevice};
use firmware::drivers::mcp3208::Mcp3208;
use firmware::hal::AnalogInput;

use crate::board::{Out, Spi1};

/// The converters' reference: the 3.3 V rail.
pub const VREF: f32 = 3.3;

/// The MCP3208 needs chip select high for 500 ns between conversions
/// (`t_CSH`); 1 µs at up to 100 MHz.
const CS_HIGH_CYCLES: u32 = 100;

/// A converter alone on the bus (the fire pump's).
pub type SoloAdc = Mcp3208<ExclusiveDevice<Spi1, Out, NoDelay>>;
/// One of several converters sharing the bus (the charger's).
pub type SharedAdc = Mcp3208<RefCellDevice<'static, Spi1, Out, NoDelay>>;

/// Converts one channel; `None` if the bus failed.
pub fn volts<A: AnalogInput>(adc: &mut A, channel: u8) -> Option<f32> {
    let v = adc.read_volts(channel).ok();
    cortex_m::asm::delay(CS_HIGH_CYCLES);
    v
}
