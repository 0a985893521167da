//! Microchip MCP3208: 8-channel 12-bit ADC on SPI. A charging bay needs 2 analog
//! channels per port (current, temperature) plus bay sensors, more than an MCU
//! has pins for, so the board chains these converters.

use embedded_hal::spi::{Operation, SpiDevice};

use crate::hal::AnalogInput;

/// Why a conversion failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error<E> {
    /// The SPI bus failed.
    Spi(E),
    /// Channel above 7.
    NoSuchChannel(u8),
}

/// An MCP3208 behind an [`SpiDevice`] (which owns chip select).
#[derive(Debug)]
pub struct Mcp3208<SPI> {
    spi: SPI,
    vref: f32,
}

impl<SPI: SpiDevice> Mcp3208<SPI> {
    /// A converter with reference voltage `vref`.
    pub fn new(spi: SPI, vref: f32) -> Self {
        Mcp3208 { spi, vref }
    }

    /// Reads the raw 12-bit count of a single-ended channel.
    ///
    /// The datasheet's 3-byte frame (figure 6-1): start bit and single-ended
    /// flag in byte 0 with D2, D1/D0 at the top of byte 1; the 12-bit result
    /// is the low nibble of reply byte 1 and all of byte 2.
    ///
    /// # Errors
    /// [`Error`].
    pub fn read_raw(&mut self, channel: u8) -> Result<u16, Error<SPI::Error>> {
        if channel > 7 {
            return Err(Error::NoSuchChannel(channel));
        }
        let mut frame = [0b0000_0110 | (channel >> 2), (channel & 0b11) << 6, 0];
        self.spi
            .transaction(&mut [Operation::TransferInPlace(&mut frame)])
            .map_err(Error::Spi)?;
        Ok((u16::from(frame[1] & 0x0F) << 8) | u16::from(frame[2]))
    }

    /// Gives the bus back.
    pub fn release(self) -> SPI {
        self.spi
    }
}

impl<SPI: SpiDevice> AnalogInput for Mcp3208<SPI> {
    type Error = Error<SPI::Error>;

    fn read_volts(&mut self, channel: u8) -> Result<f32, Self::Error> {
        Ok(f32::from(self.read_raw(channel)?) / 4096.0 * self.vref)
    }
}
