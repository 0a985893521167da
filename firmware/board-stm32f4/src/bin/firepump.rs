//! The fire pump room node: eight contacts (IN1–IN8), three 4–20 mA
//! transducers on one MCP3208 (CS0), and the test output (OUT1) to the
//! cabinet's remote-test input.
#![no_std]
#![no_main]

use board_stm32f4::analog::{SoloAdc, VREF, volts};
use board_stm32f4::board::{In, Out};
use board_stm32f4::{Board, ClassIo, DEBOUNCE_MS, node_info, run};
use cortex_m_rt::entry;
use embedded_hal_bus::spi::ExclusiveDevice;
use firmware::drivers::input::DebouncedInput;
use firmware::drivers::mcp3208::Mcp3208;
use firmware::drivers::relay::Relay;
use firmware::firepump::{FirepumpConfig, FirepumpInputs, FirepumpNode};
use firmware::hal::Millis;
use firmware::node::Node;
use firmware::sensors::LoopTransducer;
use static_cell::StaticCell;

/// Channel 0: pump outlet pressure, 0–1.6 MPa over 4–20 mA, 150 Ω shunt.
const OUTLET: LoopTransducer = LoopTransducer {
    shunt_ohms: 150.0,
    at_4ma: 0.0,
    at_20ma: 1.6,
};
/// Channel 1: network pressure at the most unfavourable point, 0–1.6 MPa.
const NETWORK: LoopTransducer = OUTLET;
/// Channel 2: tank level, 0–5 m.
const TANK: LoopTransducer = LoopTransducer {
    shunt_ohms: 150.0,
    at_4ma: 0.0,
    at_20ma: 5.0,
};

static NODE: StaticCell<Node<FirepumpNode>> = StaticCell::new();

/// IN1–IN8 in order: pump running, pump fault, auto mode, start signal, jockey
/// running, main power, backup power, cabinet self-test.
struct Firepump {
    contacts: [DebouncedInput<In>; 8],
    adc: SoloAdc,
    test_output: Relay<Out>,
}

impl Firepump {
    fn transducer(&mut self, channel: u8, t: LoopTransducer) -> Option<f32> {
        volts(&mut self.adc, channel).and_then(|v| t.convert(v).ok())
    }
}

impl ClassIo for Firepump {
    type Logic = FirepumpNode;

    fn tick(&mut self, now: Millis) {
        for contact in &mut self.contacts {
            // GPIO reads cannot fail on this chip (`Infallible`).
            let _ = contact.sample(now);
        }
    }

    fn inputs(&mut self, _now: Millis) -> FirepumpInputs {
        let [
            pump_running,
            pump_fault,
            auto_mode,
            start_signal,
            jockey_running,
            main_power_ok,
            backup_power_ok,
            cabinet_self_test,
        ] = self.contacts.each_ref().map(DebouncedInput::state);
        FirepumpInputs {
            pump_running,
            pump_fault,
            auto_mode,
            start_signal,
            jockey_running,
            main_power_ok,
            backup_power_ok,
            cabinet_self_test,
            outlet_pressure_mpa: self.transducer(0, OUTLET),
            network_pressure_mpa: self.transducer(1, NETWORK),
            tank_level_m: self.transducer(2, TANK),
        }
    }

    fn apply(&mut self, logic: &FirepumpNode) {
        // GPIO writes cannot fail on this chip (`Infallible`).
        let _ = self.test_output.set(logic.test_output());
    }
}

#[entry]
fn main() -> ! {
    let (board, mut parts) = Board::take();
    let (spi, [cs0, ..]) = parts.spi.start(&mut parts.rcc);
    let Ok(device) = ExclusiveDevice::new_no_delay(spi, cs0);
    let [out1, ..] = parts.outputs;
    let Ok(test_output) = Relay::new(out1, true);
    let io = Firepump {
        contacts: parts.inputs.map(|pin| DebouncedInput::new(pin, true, DEBOUNCE_MS)),
        adc: Mcp3208::new(device, VREF),
        test_output,
    };
    let logic = FirepumpNode::new(FirepumpConfig::default());
    let node = NODE.init(Node::new(logic, node_info("FM-FP-F411")));
    run(board, node, io)
}
