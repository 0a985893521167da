//! The board: clocks, the carrier's pins, and the peripherals every class
//! shares. Pin table (also in `README.md`):
//!
//! | signal | pin | notes |
//! |---|---|---|
//! | IN1–IN4 | PB12, PB13, PB14, PB15 | opto-isolated contacts, active low, internal pull-up |
//! | IN5–IN8 | PA15, PB3, PB4, PA12 | as IN1–IN4 (JTAG pins: the board is debugged over SWD) |
//! | OUT1–OUT4 | PA8, PA9, PA10, PA11 | relay drivers, active high, 10 kΩ pull-down on the board |
//! | OUT5–OUT8 | PB5, PB8, PB9, PB10 | as OUT1–OUT4 |
//! | RS-485 DE and /RE | PA1 | high while transmitting |
//! | USART2 TX / RX | PA2 / PA3 | Modbus RTU, 19200 baud, 8E1 |
//! | SPI1 SCK / MISO / MOSI | PA5 / PA6 / PA7 | MCP3208s, 1 MHz, mode 0 |
//! | CS0 / CS1 / CS2 | PA4 / PB0 / PB1 | one MCP3208 each, active low |
//! | I2C1 SCL / SDA | PB6 / PB7 | AS5600, 400 kHz |
//!
//! Outputs are on pins that float at reset (not the JTAG pins, which reset
//! with pull-ups or driven), so with the board's pull-downs no relay closes
//! while the MCU is in reset or before [`Board::take`] runs.

use cortex_m::peripheral::Peripherals as CorePeripherals;
use stm32f4xx_hal::gpio::{AnyPin, Input, Output, PinState, PushPull};
use stm32f4xx_hal::i2c::{self, I2c};
use stm32f4xx_hal::pac;
use stm32f4xx_hal::prelude::*;
use stm32f4xx_hal::rcc::{Config, Rcc};
use stm32f4xx_hal::serial::{self, Serial};
use stm32f4xx_hal::spi::Spi;
use stm32f4xx_hal::watchdog::IndependentWatchdog;

use crate::clock::MsClock;
use crate::rs485::ModbusPort;

/// A contact input.
pub type In = AnyPin<Input>;
/// A push-pull output (relay driver, chip select, RS-485 enable).
pub type Out = AnyPin<Output<PushPull>>;
/// SPI1, the MCP3208 bus.
pub type Spi1 = Spi<pac::SPI1>;
/// I2C1, the AS5600 bus.
pub type I2c1 = I2c<pac::I2C1>;

/// The black pill's crystal.
const HSE_HZ: u32 = 25_000_000;
/// Core clock (the F411 runs up to 100 MHz; 96 MHz is an exact PLL setting
/// from 25 MHz).
pub const SYSCLK_HZ: u32 = 96_000_000;
/// Modbus RTU line speed (the serial-line spec's default, with even parity).
pub const MODBUS_BAUD: u32 = 19_200;
/// The independent watchdog's period: the main loop feeds it every
/// millisecond; a hang or a panic resets the chip after this long.
pub const WATCHDOG_MS: u32 = 1_000;

/// What the main loop owns: time, the Modbus port and the watchdog.
#[derive(Debug)]
pub struct Board {
    /// The millisecond clock.
    pub clock: MsClock,
    /// The RS-485 Modbus RTU port.
    pub modbus: ModbusPort,
    /// Fed by the main loop.
    pub watchdog: IndependentWatchdog,
    /// This start's number, kept in the backup domain
    /// ([`crate::latches::next_boot`]).
    pub boot: u32,
}

/// What a class takes for its sensors and outputs; what it leaves unused is
/// dropped and stays as [`Board::take`] configured it (outputs low).
pub struct Parts {
    /// IN1–IN8.
    pub inputs: [In; 8],
    /// OUT1–OUT8, all low (off).
    pub outputs: [Out; 8],
    /// SPI1 and its chip selects.
    pub spi: SpiParts,
    /// I2C1.
    pub i2c: I2cParts,
    /// The clocks, for peripherals a class sets up.
    pub rcc: Rcc,
    /// For the backup-domain write enable.
    pub pwr: pac::PWR,
    /// The RTC block, for its backup registers.
    pub rtc: pac::RTC,
}

/// SPI1, not yet started.
pub struct SpiParts {
    spi1: pac::SPI1,
    sck: stm32f4xx_hal::gpio::PA5,
    miso: stm32f4xx_hal::gpio::PA6,
    mosi: stm32f4xx_hal::gpio::PA7,
    /// CS0–CS2, high (deselected).
    pub cs: [Out; 3],
}

impl SpiParts {
    /// Starts SPI1 at 1 MHz, mode 0 (the MCP3208's limit at 3.3 V). Returns
    /// the bus and the chip selects.
    pub fn start(self, rcc: &mut Rcc) -> (Spi1, [Out; 3]) {
        let spi = self.spi1.spi(
            (Some(self.sck), Some(self.miso), Some(self.mosi)),
            embedded_hal::spi::MODE_0,
            1.MHz(),
            rcc,
        );
        (spi, self.cs)
    }
}

/// I2C1, not yet started.
pub struct I2cParts {
    i2c1: pac::I2C1,
    scl: stm32f4xx_hal::gpio::PB6,
    sda: stm32f4xx_hal::gpio::PB7,
}

impl I2cParts {
    /// Starts I2C1 in fast mode (400 kHz).
    pub fn start(self, rcc: &mut Rcc) -> I2c1 {
        I2c::new(
            self.i2c1,
            (self.scl, self.sda),
            i2c::Mode::fast(400.kHz(), i2c::DutyCycle::Ratio2to1),
            rcc,
        )
    }
}

impl Board {
    /// Sets up clocks, SysTick, the watchdog, every pin of the carrier board
    /// and the Modbus port.
    ///
    /// # Panics
    /// If called twice (the peripherals are taken once).
    pub fn take() -> (Board, Parts) {
        let (Some(dp), Some(mut cp)) = (pac::Peripherals::take(), CorePeripherals::take()) else {
            panic!("Board::take called twice")
        };
        let mut rcc = dp.RCC.freeze(Config::hse(HSE_HZ.Hz()).sysclk(SYSCLK_HZ.Hz()));
        let pa = dp.GPIOA.split(&mut rcc);
        let pb = dp.GPIOB.split(&mut rcc);

        // Outputs first, so they are driven off as early as possible.
        let outputs = [
            pa.pa8.into_push_pull_output_in_state(PinState::Low).erase(),
            pa.pa9.into_push_pull_output_in_state(PinState::Low).erase(),
            pa.pa10.into_push_pull_output_in_state(PinState::Low).erase(),
            pa.pa11.into_push_pull_output_in_state(PinState::Low).erase(),
            pb.pb5.into_push_pull_output_in_state(PinState::Low).erase(),
            pb.pb8.into_push_pull_output_in_state(PinState::Low).erase(),
            pb.pb9.into_push_pull_output_in_state(PinState::Low).erase(),
            pb.pb10.into_push_pull_output_in_state(PinState::Low).erase(),
        ];
        let de = pa.pa1.into_push_pull_output_in_state(PinState::Low).erase();
        let inputs = [
            pb.pb12.into_pull_up_input().erase(),
            pb.pb13.into_pull_up_input().erase(),
            pb.pb14.into_pull_up_input().erase(),
            pb.pb15.into_pull_up_input().erase(),
            pa.pa15.into_pull_up_input().erase(),
            pb.pb3.into_pull_up_input().erase(),
            pb.pb4.into_pull_up_input().erase(),
            pa.pa12.into_pull_up_input().erase(),
        ];
        let cs = [
            pa.pa4.into_push_pull_output_in_state(PinState::High).erase(),
            pb.pb0.into_push_pull_output_in_state(PinState::High).erase(),
            pb.pb1.into_push_pull_output_in_state(PinState::High).erase(),
        ];

        let mut watchdog = IndependentWatchdog::new(dp.IWDG);
        watchdog.stop_on_debug(&dp.DBGMCU, true);
        watchdog.start(WATCHDOG_MS.millis());

        let hclk = rcc.clocks.hclk().raw();
        let clock = MsClock::start(cp.SYST, &mut cp.DCB, &mut cp.DWT, hclk);

        // 8 data bits plus even parity: the USART counts the parity bit in
        // its word length.
        let config = serial::Config::default()
            .baudrate(MODBUS_BAUD.bps())
            .wordlength_9()
            .parity_even();
        let Ok(usart): Result<Serial<pac::USART2>, _> = dp.USART2.serial((pa.pa2, pa.pa3), config, &mut rcc) else {
            panic!("USART2 cannot make MODBUS_BAUD")
        };
        let modbus = ModbusPort::start(usart, de, MODBUS_BAUD, hclk);

        let boot = crate::latches::next_boot(&dp.RTC, &dp.PWR, &mut rcc);
        let board = Board {
            clock,
            modbus,
            watchdog,
            boot,
        };
        let parts = Parts {
            inputs,
            outputs,
            spi: SpiParts {
                spi1: dp.SPI1,
                sck: pa.pa5,
                miso: pa.pa6,
                mosi: pa.pa7,
                cs,
            },
            i2c: I2cParts {
                i2c1: dp.I2C1,
                scl: pb.pb6,
                sda: pb.pb7,
            },
            rcc,
            pwr: dp.PWR,
            rtc: dp.RTC,
        };
        (board, parts)
    }
}

/// GPIOA pins driven low by the panic handler: RS-485 DE, OUT1–OUT4.
const PANIC_LOW_A: [u8; 5] = [1, 8, 9, 10, 11];
/// GPIOB pins driven low by the panic handler: OUT5–OUT8.
const PANIC_LOW_B: [u8; 4] = [5, 8, 9, 10];

/// Drives every relay output and the RS-485 driver enable low, whoever owns
/// them. For the panic handler only.
#[allow(unsafe_code)]
pub(crate) fn outputs_off_from_panic() {
    // SAFETY: only the panic handler calls this, with interrupts disabled, and
    // nothing runs after it but a halt loop, so the HAL handles that own these
    // blocks never run again and no read-modify-write of theirs can be torn.
    // BSRR writes are atomic: they reset exactly the named pins and leave
    // every other pin as it is. On a pin configured as an input (the elevator
    // leaves OUT pins as outputs too, but a class could change that) the write
    // only changes the output latch, which drives nothing.
    let dp = unsafe { pac::Peripherals::steal() };
    dp.GPIOA.bsrr().write(|w| {
        for n in PANIC_LOW_A {
            w.br(n).set_bit();
        }
        w
    });
    dp.GPIOB.bsrr().write(|w| {
        for n in PANIC_LOW_B {
            w.br(n).set_bit();
        }
        w
    });
}
