//! The charging bay node, eight ports: three MCP3208s on SPI1 (CS0: port
//! currents, CS1: port temperatures, CS2: leakage, mains voltage, ambient
//! temperature), the smoke detector's contact (IN1) and the port relays
//! (OUT1–OUT8). Latched cut-offs survive resets in the RTC backup registers.
#![no_std]
#![no_main]

use core::cell::RefCell;

use board_stm32f4::analog::{SharedAdc, VREF, volts};
use board_stm32f4::board::{In, Out, Spi1};
use board_stm32f4::latches::{BackupLatches, Saved};
use board_stm32f4::{Board, ClassIo, DEBOUNCE_MS, node_info, run};
use cortex_m_rt::entry;
use embedded_hal_bus::spi::RefCellDevice;
use firmware::charger::{ChargerConfig, ChargerInputs, ChargerNode, MAX_PORTS, PortInputs};
use firmware::drivers::input::DebouncedInput;
use firmware::drivers::mcp3208::Mcp3208;
use firmware::drivers::relay::Relay;
use firmware::hal::Millis;
use firmware::node::Node;
use firmware::sensors::{Divider, LoopTransducer, Ntc, Shunt};
use static_cell::StaticCell;

/// Ports on this board: one relay output and two converter channels each.
const PORTS: u8 = 8;
/// Per-port current: 10 mΩ shunt, ×50 amplifier (5 A → 2.5 V).
const CURRENT: Shunt = Shunt { ohms: 0.01, gain: 50.0 };
/// Socket and ambient temperature: 10 kΩ NTC, β 3950, 10 kΩ pull-up to VREF.
const NTC: Ntc = Ntc {
    r25_ohms: 10_000.0,
    beta: 3950.0,
    pullup_ohms: 10_000.0,
    vref: VREF,
};
/// Residual current: a residual-current monitor with a 4–20 mA output for
/// 0–100 mA, across 150 Ω (a loop fault reads as no value, and the node then
/// refuses to clear a leakage cut-off).
const LEAKAGE: LoopTransducer = LoopTransducer {
    shunt_ohms: 150.0,
    at_4ma: 0.0,
    at_20ma: 100.0,
};
/// Mains: transformer, rectifier and divider scaled to 100 V RMS per volt.
const MAINS: Divider = Divider { ratio: 100.0 };
/// If the backup registers were torn by a reset mid-write, every port comes
/// up cut as if by command (code 7 in each nibble), until a `clear`.
const ALL_CUT_BY_COMMAND: u64 = 0x7777_7777_7777_7777;

static NODE: StaticCell<Node<ChargerNode>> = StaticCell::new();
static SPI_BUS: StaticCell<RefCell<Spi1>> = StaticCell::new();

struct Charger {
    smoke: DebouncedInput<In>,
    currents: SharedAdc,
    temps: SharedAdc,
    bay: SharedAdc,
    relays: [Relay<Out>; PORTS as usize],
    backup: BackupLatches,
}

impl ClassIo for Charger {
    type Logic = ChargerNode;

    fn tick(&mut self, now: Millis) {
        // GPIO reads cannot fail on this chip (`Infallible`).
        let _ = self.smoke.sample(now);
    }

    fn inputs(&mut self, _now: Millis) -> ChargerInputs {
        let mut ports = [PortInputs::default(); MAX_PORTS];
        for (channel, port) in (0u8..).zip(ports.iter_mut().take(usize::from(PORTS))) {
            *port = PortInputs {
                current_a: volts(&mut self.currents, channel).map(|v| CURRENT.convert(v)),
                temp_c: volts(&mut self.temps, channel).and_then(|v| NTC.convert(v).ok()),
            };
        }
        ChargerInputs {
            smoke: self.smoke.state(),
            leakage_ma: volts(&mut self.bay, 0).and_then(|v| LEAKAGE.convert(v).ok()),
            mains_voltage_v: volts(&mut self.bay, 1).map(|v| MAINS.convert(v)),
            ambient_temp_c: volts(&mut self.bay, 2).and_then(|v| NTC.convert(v).ok()),
            ports,
        }
    }

    fn apply(&mut self, logic: &ChargerNode) {
        for (port, relay) in (1u8..).zip(&mut self.relays) {
            // GPIO writes cannot fail on this chip (`Infallible`).
            let _ = relay.set(logic.relay_on(port));
        }
        self.backup.store(logic.latches());
    }
}

#[entry]
fn main() -> ! {
    let (board, mut parts) = Board::take();
    let (spi, [cs0, cs1, cs2]) = parts.spi.start(&mut parts.rcc);
    let bus: &'static RefCell<Spi1> = SPI_BUS.init(RefCell::new(spi));
    let Ok(currents) = RefCellDevice::new_no_delay(bus, cs0);
    let Ok(temps) = RefCellDevice::new_no_delay(bus, cs1);
    let Ok(bay) = RefCellDevice::new_no_delay(bus, cs2);
    let relays = parts.outputs.map(|pin| {
        let Ok(relay) = Relay::new(pin, true);
        relay
    });

    let mut backup = BackupLatches::new(parts.rtc, &parts.pwr, &mut parts.rcc);
    let mut logic = ChargerNode::new(ChargerConfig::default(), PORTS);
    match backup.load() {
        Saved::Nothing => {}
        Saved::Latches(latches) => logic.restore_latches(latches),
        Saved::Corrupt => logic.restore_latches(ALL_CUT_BY_COMMAND),
    }

    let io = Charger {
        smoke: DebouncedInput::new(smoke_pin(parts.inputs), true, DEBOUNCE_MS),
        currents: Mcp3208::new(currents, VREF),
        temps: Mcp3208::new(temps, VREF),
        bay: Mcp3208::new(bay, VREF),
        relays,
        backup,
    };
    let node = NODE.init(Node::new(logic, node_info("FM-CH8-F411")));
    run(board, node, io)
}

/// IN1 is the smoke detector's alarm contact; IN2–IN8 are unused.
fn smoke_pin(inputs: [In; 8]) -> In {
    let [in1, ..] = inputs;
    in1
}
