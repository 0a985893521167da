//! The charger's latched cut-offs in the RTC backup registers, which keep
//! their contents through resets and, with a coin cell on VBAT, through power
//! loss: a reset must not re-energise a port cut for heat.
//!
//! Layout: BKP0R and BKP1R hold the low and high words of
//! `ChargerNode::latches()`, BKP2R a check word (`MAGIC ^ low ^ high`). Only
//! the PWR clock and `PWR_CR.DBP` are needed; the RTC itself is not started
//! (`stm32f4xx-hal`'s `Rtc::new` would reset the backup domain and lose them).

use stm32f4xx_hal::pac;
use stm32f4xx_hal::rcc::{Enable, Rcc};

const MAGIC: u32 = 0xFA11_5AFE;

/// What the backup registers held at start-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Saved {
    /// All zero: first power-up, or the backup domain lost power (no coin
    /// cell). Nothing is known to be cut.
    Nothing,
    /// Latches saved by a previous run.
    Latches(u64),
    /// The check word does not match (a reset between the three writes):
    /// the caller should assume the worst.
    Corrupt,
}

/// The backup registers, write-enabled.
#[derive(Debug)]
pub struct BackupLatches {
    rtc: pac::RTC,
    saved: Option<u64>,
}

impl BackupLatches {
    /// Enables writes to the backup domain (without resetting it).
    pub fn new(rtc: pac::RTC, pwr: &pac::PWR, rcc: &mut Rcc) -> Self {
        pac::PWR::enable(rcc);
        pwr.cr().modify(|_, w| w.dbp().set_bit());
        BackupLatches { rtc, saved: None }
    }

    /// What a previous run saved.
    pub fn load(&mut self) -> Saved {
        let [lo, hi, check] = [0, 1, 2].map(|i| self.rtc.bkpr(i).read().bkp().bits());
        let saved = if (lo, hi, check) == (0, 0, 0) {
            Saved::Nothing
        } else if check == MAGIC ^ lo ^ hi {
            Saved::Latches((u64::from(hi) << 32) | u64::from(lo))
        } else {
            Saved::Corrupt
        };
        if let Saved::Latches(l) = saved {
            self.saved = Some(l);
        }
        saved
    }

    /// Saves `latches` if they differ from what is stored.
    pub fn save(&mut self, latches: u64) {
        if self.saved == Some(latches) {
            return;
        }
        #[allow(clippy::cast_possible_truncation)]
        let (lo, hi) = (latches as u32, (latches >> 32) as u32);
        self.rtc.bkpr(0).write(|w| w.bkp().set(lo));
        self.rtc.bkpr(1).write(|w| w.bkp().set(hi));
        self.rtc.bkpr(2).write(|w| w.bkp().set(MAGIC ^ lo ^ hi));
        self.saved = Some(latches);
    }
}

impl firmware::io::LatchStore for BackupLatches {
    fn store(&mut self, latches: u64) {
        self.save(latches);
    }
}

/// The backup register counting starts: BKP19R, the last (the latches use
/// BKP0R–BKP2R).
const BOOT_REGISTER: usize = 19;

/// Counts this start in the backup domain and returns the count: the high
/// half of the Modbus slave's write challenge, so challenges never repeat
/// across resets and a signed write recorded before one is refused after it
/// (`firmware::modbus::Slave::with_command_key`). Without a coin cell on VBAT
/// a power loss clears it; the count then starts again from 1, and so would
/// the challenges: keep VBAT fitted where Modbus writes are enabled.
pub fn next_boot(rtc: &pac::RTC, pwr: &pac::PWR, rcc: &mut Rcc) -> u32 {
    pac::PWR::enable(rcc);
    pwr.cr().modify(|_, w| w.dbp().set_bit());
    let boot = rtc.bkpr(BOOT_REGISTER).read().bkp().bits().wrapping_add(1);
    rtc.bkpr(BOOT_REGISTER).write(|w| w.bkp().set(boot));
    boot
}
