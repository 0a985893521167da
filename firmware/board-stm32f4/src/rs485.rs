//! Modbus RTU on RS-485: USART2 with the transceiver's DE and /RE tied
//! together on one GPIO, interrupt driven.
//!
//! The USART has a one-byte receive register, and a node step (sampling 24
//! converter channels, encoding a sample) takes longer than a character at
//! 19200 baud, so reception and transmission run in the USART2 interrupt:
//!
//! * every received byte goes into a frame buffer with its time (DWT cycle
//!   counter); a parity, framing, noise or overrun error marks the frame
//!   broken;
//! * [`ModbusPort::take_request`] hands over the frame once the line has been
//!   silent for t3.5 ([`firmware::modbus::rtu_frame_gap_us`]). A broken or
//!   over-long frame is dropped there and counted; a bad CRC is the slave's to
//!   drop. Ending frames only at the silence (not early by
//!   `rtu_request_len`) costs nothing: a reply must wait for t3.5 anyway;
//! * [`ModbusPort::send`] raises DE and feeds the reply byte by byte on
//!   "transmit register empty"; on "transmission complete" (the last stop bit
//!   is out) DE drops, and anything received meanwhile (our own echo if /RE is
//!   not tied to DE) is discarded.
//!
//! Not checked: the t1.5 inter-character limit inside a frame (a gap between
//! t1.5 and t3.5 should void the frame). Masters that pause mid-frame are rare
//! and the CRC catches a frame merged from two.

use core::cell::RefCell;

use critical_section::Mutex;
use firmware::modbus::{MAX_ADU_LEN, rtu_frame_gap_us};
use stm32f4xx_hal::pac::{self, interrupt};
use stm32f4xx_hal::prelude::*;
use stm32f4xx_hal::serial::{CFlag, Event, Flag, Serial};

use crate::board::Out;
use crate::clock::cycles;

/// Largest RTU frame: unit id, 253-byte PDU, CRC.
pub const MAX_FRAME: usize = 256;

/// Time for the transceiver's driver to enable before the start bit (a
/// MAX3485 needs under 1 µs, slower parts up to 3 µs): 5 µs at 96 MHz.
const DE_SETUP_CYCLES: u32 = 480;

/// The port's state, shared with the interrupt.
struct Port {
    serial: Serial<pac::USART2>,
    de: Out,
    rx: heapless::Vec<u8, MAX_FRAME>,
    rx_broken: bool,
    last_rx: u32,
    tx: heapless::Vec<u8, MAX_ADU_LEN>,
    tx_next: usize,
    sending: bool,
}

static PORT: Mutex<RefCell<Option<Port>>> = Mutex::new(RefCell::new(None));

/// The main loop's handle on the RS-485 port.
#[derive(Debug)]
pub struct ModbusPort {
    gap_cycles: u32,
    dropped: u32,
}

impl ModbusPort {
    /// Takes the USART (configured for the line) and the DE pin (low), and
    /// starts receiving in the USART2 interrupt.
    #[allow(unsafe_code)]
    pub fn start(mut serial: Serial<pac::USART2>, de: Out, baud: u32, hclk_hz: u32) -> Self {
        serial.listen(Event::RxNotEmpty);
        critical_section::with(|cs| {
            PORT.borrow_ref_mut(cs).replace(Port {
                serial,
                de,
                rx: heapless::Vec::new(),
                rx_broken: false,
                last_rx: cycles(),
                tx: heapless::Vec::new(),
                tx_next: 0,
                sending: false,
            });
        });
        // SAFETY: unmasking can break a critical section built on masking that
        // interrupt; this program has none. Its only critical sections are
        // `critical_section::with` (cortex-m's single-core implementation:
        // all interrupts off), which an unmasked line cannot enter. The port
        // state the handler uses is in `PORT` before the line is unmasked.
        unsafe { cortex_m::peripheral::NVIC::unmask(pac::Interrupt::USART2) };
        let gap_us = u64::from(rtu_frame_gap_us(baud));
        let gap_cycles = u32::try_from(gap_us * u64::from(hclk_hz / 1_000_000)).unwrap_or(u32::MAX);
        ModbusPort { gap_cycles, dropped: 0 }
    }

    /// A complete request, copied into `buf`: the bytes received before a
    /// silence of t3.5. `None` while a frame is still arriving, while a reply
    /// is going out, or when the frame was broken (then counted in
    /// [`Self::dropped`]).
    pub fn take_request(&mut self, buf: &mut [u8; MAX_FRAME]) -> Option<usize> {
        let (len, broken) = critical_section::with(|cs| {
            let mut port = PORT.borrow_ref_mut(cs);
            let port = port.as_mut()?;
            if port.sending || (port.rx.is_empty() && !port.rx_broken) {
                return None;
            }
            if cycles().wrapping_sub(port.last_rx) < self.gap_cycles {
                return None;
            }
            let len = port.rx.len();
            buf[..len].copy_from_slice(&port.rx);
            port.rx.clear();
            Some((len, core::mem::take(&mut port.rx_broken)))
        })?;
        if broken {
            self.dropped = self.dropped.wrapping_add(1);
            return None;
        }
        Some(len)
    }

    /// Starts sending a reply (at most [`MAX_ADU_LEN`] bytes; longer is
    /// dropped, the slave never builds one).
    pub fn send(&mut self, frame: &[u8]) {
        critical_section::with(|cs| {
            let mut port = PORT.borrow_ref_mut(cs);
            let Some(port) = port.as_mut() else { return };
            port.tx.clear();
            if port.tx.extend_from_slice(frame).is_err() {
                return;
            }
            port.tx_next = 0;
            port.sending = true;
            port.de.set_high();
            cortex_m::asm::delay(DE_SETUP_CYCLES);
            port.serial.clear_flags(CFlag::TransmissionComplete);
            port.serial.listen(Event::TxEmpty);
        });
    }

    /// Frames dropped as broken (parity, framing, noise, overrun, too long).
    pub fn dropped(&self) -> u32 {
        self.dropped
    }
}

impl Port {
    fn service(&mut self) {
        let flags = self.serial.flags();
        if flags.intersects(Flag::RxNotEmpty | Flag::Overrun | Flag::FramingError | Flag::Noise | Flag::ParityError) {
            // Reading clears the flags; an error consumes the byte.
            let byte = self.serial.read();
            if !self.sending {
                match byte {
                    Ok(b) => {
                        if self.rx.push(b).is_err() {
                            self.rx_broken = true;
                        }
                    }
                    Err(nb::Error::Other(_)) => self.rx_broken = true,
                    Err(nb::Error::WouldBlock) => {}
                }
                self.last_rx = cycles();
            }
        }
        if !self.sending {
            return;
        }
        if let Some(&b) = self.tx.get(self.tx_next) {
            if flags.contains(Flag::TxEmpty) && self.serial.write(b).is_ok() {
                self.tx_next += 1;
                if self.tx_next == self.tx.len() {
                    self.serial.unlisten(Event::TxEmpty);
                    self.serial.listen(Event::TransmissionComplete);
                }
            }
        } else if flags.contains(Flag::TransmissionComplete) {
            self.serial.unlisten(Event::TransmissionComplete);
            self.de.set_low();
            self.sending = false;
            self.rx.clear();
            self.rx_broken = false;
            self.last_rx = cycles();
        }
    }
}

#[interrupt]
fn USART2() {
    critical_section::with(|cs| {
        if let Some(port) = PORT.borrow_ref_mut(cs).as_mut() {
            port.service();
        }
    });
}
