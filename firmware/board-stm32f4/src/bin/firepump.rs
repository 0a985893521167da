//! The fire pump room node: eight contacts (IN1–IN8), three 4–20 mA
//! transducers on one MCP3208 (CS0), and the test output (OUT1) to the
//! cabinet's remote-test input.
#![no_std]
#![no_main]

use board_stm32f4::analog::{Paced, VREF};
use board_stm32f4::{Board, node_info, run};
use cortex_m_rt::entry;
use embedded_hal_bus::spi::ExclusiveDevice;
use firmware::drivers::mcp3208::Mcp3208;
use firmware::firepump::{FirepumpConfig, FirepumpNode};
use firmware::io::{FirepumpIo, FirepumpWiring};
use firmware::node::Node;
use static_cell::StaticCell;

static NODE: StaticCell<Node<FirepumpNode>> = StaticCell::new();

#[entry]
fn main() -> ! {
    let (board, mut parts) = Board::take();
    let (spi, [cs0, ..]) = parts.spi.start(&mut parts.rcc);
    let Ok(device) = ExclusiveDevice::new_no_delay(spi, cs0);
    let [out1, ..] = parts.outputs;
    // IN1–IN8 in order: pump running, pump fault, auto mode, start signal,
    // jockey running, main power, backup power, cabinet self-test.
    // GPIO writes cannot fail on this chip (`Infallible`).
    let Ok(io) = FirepumpIo::new(
        parts.inputs,
        Paced(Mcp3208::new(device, VREF)),
        FirepumpWiring::REFERENCE,
        out1,
    );
    let logic = FirepumpNode::new(FirepumpConfig::default());
    let node = NODE.init(Node::new(logic, node_info("FM-FP-F411")));
    run(board, node, io)
}
