//! The sensor node on a real board: an STM32F411CEU6 "black pill" on a carrier
//! board with eight opto-isolated contact inputs, eight relay drivers, up to
//! three MCP3208 converters on SPI1, an AS5600 on I2C1 and an RS-485
//! transceiver on USART2 (pin table in `README.md`).
//!
//! This crate only wires pins, clocks and interrupts to the chip-independent
//! [`firmware`] core; every decision is made there. The three binaries
//! (`src/bin/`) differ only in which sensors they read and which outputs they
//! drive, through a [`ClassIo`]; the main loop ([`run`]) is shared:
//!
//! ```text
//! every 10 ms   ClassIo::tick     debounce contacts, sample fast sensors (AS5600)
//! every 100 ms  ClassIo::inputs → Node::step → ClassIo::apply (relays, test output, latches)
//! any time      RS-485 frame (t3.5 silence) → modbus::Slave::handle → ClassIo::apply → reply
//! ```
//!
//! The board has no network interface, so the MQTT uplink is not wired: the
//! node keeps queuing its payloads in its outbox (which keeps the newest and
//! counts what it drops) and Modbus RTU is the board's only uplink.
#![no_std]

pub mod analog;
pub mod board;
pub mod clock;
pub mod latches;
pub mod rs485;

use firmware::hal::{Clock, Millis};
use firmware::modbus::{MAX_ADU_LEN, Slave, Transport};
use firmware::node::{ClassLogic, Node, NodeInfo};
use protocol::Format;

pub use board::Board;

/// Contacts and fast sensors are sampled this often.
pub const TICK_MS: u64 = 10;
/// The node steps this often.
pub const STEP_MS: u64 = 100;
/// A contact must be stable this long to change state (less than
/// [`STEP_MS`], so the first step sees settled contacts).
pub const DEBOUNCE_MS: u32 = 50;
const _: () = assert!(DEBOUNCE_MS as u64 + TICK_MS < STEP_MS);
/// The Modbus unit id of every board (one node per RS-485 segment by default;
/// change it per site).
pub const MODBUS_UNIT_ID: u8 = 1;
/// Telemetry interval announced in the birth and used for queued samples.
pub const INTERVAL_S: u32 = 10;

/// The Modbus slave; an id outside 1..=247 fails the build here.
const SLAVE: Slave = match Slave::new(MODBUS_UNIT_ID) {
    Some(slave) => slave,
    None => panic!("MODBUS_UNIT_ID must be 1..=247"),
};

/// What one device class reads and drives.
pub trait ClassIo {
    /// The class's state machine.
    type Logic: ClassLogic;

    /// Called every [`TICK_MS`]: debounce the contacts, sample fast sensors.
    fn tick(&mut self, now: Millis);

    /// The inputs for one step, from what [`Self::tick`] gathered and the slow
    /// sensors read now.
    fn inputs(&mut self, now: Millis) -> <Self::Logic as ClassLogic>::Inputs;

    /// Drives the outputs from the logic's state. Called right after every
    /// `Node::step` and after every Modbus request (a command may have cut a
    /// port).
    fn apply(&mut self, logic: &Self::Logic);
}

/// The node's identity for its birth message.
pub fn node_info(model: &str) -> NodeInfo {
    NodeInfo {
        fw: env!("CARGO_PKG_VERSION").try_into().unwrap_or_default(),
        model: model.try_into().unwrap_or_default(),
        cfg: "default".try_into().unwrap_or_default(),
        interval_s: INTERVAL_S,
        format: Format::Binary,
    }
}

/// The next deadline after `due`: one period later, or one period from `now`
/// if the loop fell behind (a long Modbus reply), so it never bursts.
fn next_deadline(due: Millis, period: u64, now: Millis) -> Millis {
    let next = due.plus(period);
    if next > now { next } else { now.plus(period) }
}

/// The main loop, shared by every class. Never returns.
pub fn run<IO: ClassIo>(mut board: Board, node: &'static mut Node<IO::Logic>, mut io: IO) -> ! {
    let mut slave = SLAVE;
    let mut request = [0u8; rs485::MAX_FRAME];
    let mut response = [0u8; MAX_ADU_LEN];
    let start = board.clock.now();
    // The first step waits until every contact has been sampled for longer
    // than the debounce time: until then the outputs stay off (a charger
    // must not power its ports before it can see the smoke detector).
    let (mut next_tick, mut next_step) = (start, start.plus(STEP_MS));
    let mut stepped = false;
    loop {
        board.watchdog.feed();
        let now = board.clock.now();
        if now >= next_tick {
            io.tick(now);
            next_tick = next_deadline(next_tick, TICK_MS, now);
        }
        if now >= next_step {
            let inputs = io.inputs(now);
            node.step(now, &inputs);
            io.apply(node.logic());
            stepped = true;
            next_step = next_deadline(next_step, STEP_MS, now);
        }
        if let Some(len) = board.modbus.take_request(&mut request) {
            let n = slave.handle(Transport::Rtu, &request[..len], node.logic_mut(), now, &mut response);
            // Before the first step the outputs stay off whatever a master
            // wrote; the step applies the result.
            if stepped {
                io.apply(node.logic());
            }
            if n > 0 {
                board.modbus.send(&response[..n]);
            }
        }
        // SysTick wakes the core every millisecond, USART2 on every byte.
        cortex_m::asm::wfi();
    }
}

/// On panic: interrupts off, every relay driver and the RS-485 driver enable
/// to their off level, then halt. The independent watchdog (see [`Board`])
/// resets the chip within [`board::WATCHDOG_MS`]; the charger then restores
/// its latched cut-offs from the backup registers before powering any port.
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    cortex_m::interrupt::disable();
    board::outputs_off_from_panic();
    loop {
        core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
    }
}
