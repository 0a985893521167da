//! The charging bay node, eight ports: three MCP3208s on SPI1 (CS0: port
//! currents, CS1: port temperatures, CS2: leakage, mains voltage, ambient
//! temperature), the smoke detector's contact (IN1) and the port relays
//! (OUT1–OUT8). Latched cut-offs survive resets in the RTC backup registers.
#![no_std]
#![no_main]

use core::cell::RefCell;

use board_stm32f4::analog::{Paced, VREF};
use board_stm32f4::board::{In, Spi1};
use board_stm32f4::latches::{BackupLatches, Saved};
use board_stm32f4::{Board, node_info, run};
use cortex_m_rt::entry;
use embedded_hal_bus::spi::RefCellDevice;
use firmware::charger::{ChargerConfig, ChargerNode};
use firmware::drivers::mcp3208::Mcp3208;
use firmware::io::{ChargerIo, ChargerWiring};
use firmware::node::Node;
use static_cell::StaticCell;

/// Ports on this board: one relay output and two converter channels each.
const PORTS: u8 = 8;
/// If the backup registers were torn by a reset mid-write, every port comes
/// up cut as if by command (code 7 in each nibble), until a `clear`.
const ALL_CUT_BY_COMMAND: u64 = 0x7777_7777_7777_7777;

static NODE: StaticCell<Node<ChargerNode>> = StaticCell::new();
static SPI_BUS: StaticCell<RefCell<Spi1>> = StaticCell::new();

#[entry]
fn main() -> ! {
    let (board, mut parts) = Board::take();
    let (spi, [cs0, cs1, cs2]) = parts.spi.start(&mut parts.rcc);
    let bus: &'static RefCell<Spi1> = SPI_BUS.init(RefCell::new(spi));
    let Ok(currents) = RefCellDevice::new_no_delay(bus, cs0);
    let Ok(temps) = RefCellDevice::new_no_delay(bus, cs1);
    let Ok(bay) = RefCellDevice::new_no_delay(bus, cs2);

    let mut backup = BackupLatches::new(parts.rtc, &parts.pwr, &mut parts.rcc);
    let mut logic = ChargerNode::new(ChargerConfig::default(), PORTS);
    match backup.load() {
        Saved::Nothing => {}
        Saved::Latches(latches) => logic.restore_latches(latches),
        Saved::Corrupt => logic.restore_latches(ALL_CUT_BY_COMMAND),
    }

    // GPIO writes cannot fail on this chip (`Infallible`).
    let Ok(io) = ChargerIo::new(
        smoke_pin(parts.inputs),
        [currents, temps, bay].map(|d| Paced(Mcp3208::new(d, VREF))),
        ChargerWiring::REFERENCE,
        parts.outputs,
        backup,
    );
    let node = NODE.init(Node::new(logic, node_info("FM-CH8-F411")));
    run(board, node, io)
}

/// IN1 is the smoke detector's alarm contact; IN2–IN8 are unused.
fn smoke_pin(inputs: [In; 8]) -> In {
    let [in1, ..] = inputs;
    in1
}
