//! The sensor node on a real board: an STM32F411CEU6 "black pill" on a carrier
//! board with eight opto-isolated contact inputs, eight relay drivers, up to
//! three MCP3208 converters on SPI1, an AS5600 on I2C1 and an RS-485
//! transceiver on USART2 (pin table in `README.md`).
//!
//! This crate only wires pins, clocks and interrupts to the chip-independent
//! [`firmware`] core; every decision is made there. The three binaries
//! (`src/bin/`) hand their pins and buses to the class's `firmware::io`
//! glue (the same the HIL simulation drives with simulated peripherals); the
//! main loop ([`run`]) is shared:
//!
//! ```text
//! every 10 ms   ClassIo::tick     debounce contacts, sample fast sensors (AS5600)
//! every 100 ms  ClassIo::inputs → Node::step → ClassIo::apply (relays, test output, latches)
//! any time      RS-485 frame (t3.5 silence) → modbus::Slave::handle → ClassIo::apply → reply
//! ```
//!
//! The board has no network interface, so the MQTT uplink is not wired: the
//! node keeps queuing its payloads in its outbox (which keeps the newest and
//! counts what it drops) and Modbus RTU is the board's only uplink. Its
//! Modbus slave is read-only unless the image is built with the node's
//! command key (`FM_CMD_KEY`); then it takes signed writes only.
#![no_std]

pub mod analog;
pub mod board;
pub mod clock;
pub mod latches;
pub mod rs485;

use firmware::hal::Clock;
use firmware::io::{ClassIo, Schedule};
use firmware::modbus::{MAX_ADU_LEN, Slave, Transport};
use firmware::node::{Node, NodeInfo};
use protocol::{CommandKey, Format};

pub use board::Board;
pub use firmware::io::{DEBOUNCE_MS, STEP_MS, TICK_MS};

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

/// The node's command key: `FM_CMD_KEY` at build time, the 64 hex digits
/// provisioning printed as `cmd_key` (a key that is not fails the build).
/// Without it the Modbus slave is read-only: a node that cannot check who
/// writes takes no writes.
pub const CMD_KEY: Option<CommandKey> = match option_env!("FM_CMD_KEY") {
    None => None,
    Some(hex) => match CommandKey::from_hex(hex) {
        Ok(key) => Some(key),
        Err(_) => panic!("FM_CMD_KEY must be 64 hex digits"),
    },
};

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

/// The main loop, shared by every class. Never returns.
pub fn run<IO: ClassIo>(mut board: Board, node: &'static mut Node<IO::Logic>, mut io: IO) -> ! {
    let mut slave = match CMD_KEY {
        Some(key) => SLAVE.with_command_key(key, board.boot),
        None => SLAVE,
    };
    let mut request = [0u8; rs485::MAX_FRAME];
    let mut response = [0u8; MAX_ADU_LEN];
    let mut schedule = Schedule::new(board.clock.now());
    loop {
        board.watchdog.feed();
        let now = board.clock.now();
        schedule.poll(now, &mut io, node);
        if let Some(len) = board.modbus.take_request(&mut request) {
            let n = slave.handle(Transport::Rtu, &request[..len], node.logic_mut(), now, &mut response);
            // Before the first step the outputs stay off whatever a master
            // wrote; the step applies the result.
            if schedule.stepped() {
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
