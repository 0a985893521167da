//! The elevator node: eight contacts (IN1–IN8) and the AS5600 on the
//! governor sheave (I2C1). No outputs: an elevator node only watches.
#![no_std]
#![no_main]

use board_stm32f4::{Board, node_info, run};
use cortex_m_rt::entry;
use firmware::elevator::{ElevatorConfig, ElevatorNode};
use firmware::io::ElevatorIo;
use firmware::node::Node;
use static_cell::StaticCell;

/// Rope travel per sheave turn: a 300 mm governor sheave.
const METRES_PER_TURN: f32 = core::f32::consts::PI * 0.3;
/// Whether the angle increases when the car goes down (set per installation).
const INVERTED: bool = false;

static NODE: StaticCell<Node<ElevatorNode>> = StaticCell::new();

#[entry]
fn main() -> ! {
    let (board, mut parts) = Board::take();
    let i2c = parts.i2c.start(&mut parts.rcc);
    // IN1–IN8 in order: door closed, door zone, occupied, alarm button,
    // e-bike detector, power present, top final limit, bottom final limit.
    let io = ElevatorIo::new(parts.inputs, i2c, METRES_PER_TURN, INVERTED);
    let logic = ElevatorNode::new(ElevatorConfig::default());
    let node = NODE.init(Node::new(logic, node_info("FM-EL-F411")));
    run(board, node, io)
}
