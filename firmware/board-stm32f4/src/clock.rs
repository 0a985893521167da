//! Time on the board: a SysTick-driven millisecond counter behind
//! [`firmware::hal::Clock`], and the DWT cycle counter for the microsecond
//! silences of Modbus RTU framing.

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::{DCB, DWT, SYST};
use cortex_m_rt::exception;
use firmware::hal::{Clock, Millis};

/// Milliseconds since the SysTick started, wrapping after 49.7 days
/// ([`MsClock`] extends it to 64 bits).
static TICKS: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    TICKS.fetch_add(1, Ordering::Relaxed);
}

/// The millisecond clock. Extends the 32-bit interrupt counter to 64 bits,
/// so it must be read at least once every 49 days (the main loop reads it
/// every millisecond).
#[derive(Debug)]
pub struct MsClock {
    last: u32,
    high: u64,
}

impl MsClock {
    /// Starts SysTick at 1 kHz from the core clock `hclk_hz`, and the DWT
    /// cycle counter ([`cycles`]).
    pub fn start(mut syst: SYST, dcb: &mut DCB, dwt: &mut DWT, hclk_hz: u32) -> Self {
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(hclk_hz / 1000 - 1);
        syst.clear_current();
        syst.enable_interrupt();
        syst.enable_counter();
        dcb.enable_trace();
        dwt.enable_cycle_counter();
        MsClock { last: 0, high: 0 }
    }
}

impl Clock for MsClock {
    fn now(&mut self) -> Millis {
        let ticks = TICKS.load(Ordering::Relaxed);
        if ticks < self.last {
            self.high += 1 << 32;
        }
        self.last = ticks;
        Millis(self.high | u64::from(ticks))
    }
}

/// The core's cycle counter (wraps every 43 s at 100 MHz; only differences
/// of a few milliseconds are taken).
pub fn cycles() -> u32 {
    DWT::cycle_count()
}
