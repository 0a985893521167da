//! A node on the bench: a physics model wired to simulated peripherals, the
//! firmware's own class glue (`firmware::io`) over them, and the firmware
//! node, all stepped together in virtual time. Every 10 ms the plant takes
//! the node's outputs (relays, test output), advances its physics, and puts
//! what its sensors see on the wires; then the firmware's schedule ticks
//! (and every 100 ms steps) exactly as the board's main loop does.

use std::collections::VecDeque;

use firmware::charger::{ChargerConfig, ChargerNode};
use firmware::drivers::mcp3208::Mcp3208;
use firmware::elevator::{ElevatorConfig, ElevatorNode};
use firmware::firepump::{FirepumpConfig, FirepumpNode};
use firmware::hal::Millis;
use firmware::io::{
    ChargerIo, ChargerWiring, ClassIo, ElevatorIo, FirepumpIo, FirepumpWiring, LatchStore, Schedule, TICK_MS, VREF,
};
use firmware::node::{Node, NodeInfo};
use protocol::Format;

use crate::peripherals::{SimAs5600, SimInput, SimMcp3208, SimOutput, Wire};
use crate::physics::charger::ChargerSim;
use crate::physics::elevator::ElevatorSim;
use crate::physics::firewater::FireWaterSim;
use crate::wiring::{divider_volts, loop_volts, ntc_volts, shunt_volts};

/// Rope travel per governor sheave turn: a 300 mm sheave, as on the board.
pub const METRES_PER_TURN: f32 = std::f32::consts::PI * 0.3;

/// A physics model with its side of the wires.
pub trait Plant {
    /// Takes the node's outputs (relays, the test output) into the physics.
    fn actuate(&mut self);
    /// Advances the physics.
    fn step(&mut self, dt_ms: u32);
    /// Puts what the sensors see on the wires.
    fn wire(&mut self);
}

/// The identity a simulated node announces.
#[must_use]
pub fn node_info(model: &str, format: Format) -> NodeInfo {
    NodeInfo {
        fw: env!("CARGO_PKG_VERSION").try_into().unwrap_or_default(),
        model: model.try_into().unwrap_or_default(),
        cfg: "hil".try_into().unwrap_or_default(),
        interval_s: 10,
        format,
    }
}

/// A plant, the firmware glue over its wires, and the node.
pub struct Rig<P: Plant, IO: ClassIo> {
    /// The physics and its wires.
    pub plant: P,
    /// The firmware's class glue.
    pub io: IO,
    /// The firmware node.
    pub node: Node<IO::Logic>,
    /// Commands the simulated gateway has for the node, for its link to
    /// publish on its `cmd` topic.
    pub commands: VecDeque<Vec<u8>>,
    schedule: Schedule,
    now: u64,
}

impl<P: Plant, IO: ClassIo> Rig<P, IO> {
    /// A rig at virtual time 0; the wires are set before the first tick.
    pub fn new(mut plant: P, io: IO, node: Node<IO::Logic>) -> Self {
        plant.wire();
        Rig {
            plant,
            io,
            node,
            commands: VecDeque::new(),
            schedule: Schedule::new(Millis(0)),
            now: 0,
        }
    }

    /// Drives the outputs from the node's state now, as the board's main
    /// loop does after a command (a cut port's relay opens at once).
    pub fn apply(&mut self) {
        self.io.apply(self.node.logic());
    }

    /// Virtual milliseconds since the node started.
    #[must_use]
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Runs `ms` of virtual time in 10 ms ticks.
    pub fn advance(&mut self, ms: u64) {
        let end = self.now + ms;
        while self.now < end {
            self.plant.actuate();
            // TICK_MS is 10: it fits.
            #[allow(clippy::cast_possible_truncation)]
            self.plant.step(TICK_MS as u32);
            self.now += TICK_MS;
            self.plant.wire();
            self.schedule.poll(Millis(self.now), &mut self.io, &mut self.node);
        }
    }

    /// Runs until `pred` holds of the rig (checked every tick) or `max_ms`
    /// passed; returns the virtual time it took, or `None`.
    pub fn until(&mut self, max_ms: u64, mut pred: impl FnMut(&Self) -> bool) -> Option<u64> {
        let start = self.now;
        while self.now - start < max_ms {
            if pred(self) {
                return Some(self.now - start);
            }
            self.advance(TICK_MS);
        }
        pred(self).then_some(self.now - start)
    }
}

/// An elevator with its eight contacts, the sheave's angle sensor and the
/// door-hold output.
pub struct ElevatorPlant {
    /// The physics.
    pub sim: ElevatorSim,
    /// IN1–IN8, in the board's order.
    pub pins: [SimInput; 8],
    /// The AS5600.
    pub sheave: SimAs5600,
    /// OUT1, to the controller's door-open-hold input. Always wired on the
    /// bench; the node drives it only when its configuration says it has
    /// the output (`door_hold_output`).
    pub door_hold: SimOutput,
}

impl Plant for ElevatorPlant {
    fn actuate(&mut self) {
        self.sim.set_door_hold(self.door_hold.level.get());
    }

    fn step(&mut self, dt_ms: u32) {
        self.sim.step(dt_ms);
    }

    fn wire(&mut self) {
        let c = self.sim.contacts();
        let order = [
            c.door_closed,
            c.door_zone,
            c.occupied,
            c.alarm_button,
            c.ebike,
            c.power_ok,
            c.top_limit,
            c.bottom_limit,
        ];
        for (pin, closed) in self.pins.iter().zip(order) {
            pin.contact(closed);
        }
        self.sheave
            .set_turns(self.sim.rope_travel_m() / f64::from(METRES_PER_TURN));
    }
}

/// An elevator node on the bench.
pub type ElevatorRig = Rig<ElevatorPlant, ElevatorIo<SimInput, SimAs5600, SimOutput>>;

/// An elevator node over `sim`.
#[must_use]
pub fn elevator(sim: ElevatorSim, config: ElevatorConfig, format: Format) -> ElevatorRig {
    let pins: [SimInput; 8] = std::array::from_fn(|_| SimInput::new(true));
    let sheave = SimAs5600::new();
    let door_hold = SimOutput::new();
    let Ok(io) =
        ElevatorIo::new(pins.clone(), sheave.clone(), METRES_PER_TURN, false).with_door_hold(door_hold.clone());
    let node = Node::new(ElevatorNode::new(config), node_info("HIL-EL", format));
    Rig::new(
        ElevatorPlant {
            sim,
            pins,
            sheave,
            door_hold,
        },
        io,
        node,
    )
}

/// A fire water system with the pump room's contacts, transducers and the
/// test output.
pub struct FirepumpPlant {
    /// The physics.
    pub sim: FireWaterSim,
    /// IN1–IN8, in the board's order.
    pub pins: [SimInput; 8],
    /// The converter of the three transducers.
    pub adc: SimMcp3208,
    /// OUT1, to the cabinet's remote-test input.
    pub test_output: SimOutput,
    /// A transducer's loop cut: its channel reads 0 mA.
    pub cut_loops: [bool; 3],
}

impl Plant for FirepumpPlant {
    fn actuate(&mut self) {
        self.sim.set_test_input(self.test_output.level.get());
    }

    fn step(&mut self, dt_ms: u32) {
        self.sim.step(dt_ms);
    }

    fn wire(&mut self) {
        let s = self.sim.sensors();
        let order = [
            s.pump_running,
            s.pump_fault,
            s.auto_mode,
            s.start_signal,
            s.jockey_running,
            s.main_power_ok,
            s.backup_power_ok,
            s.cabinet_self_test,
        ];
        for (pin, closed) in self.pins.iter().zip(order) {
            pin.contact(closed);
        }
        let w = FirepumpWiring::REFERENCE;
        let values = [s.outlet_pressure_mpa, s.network_pressure_mpa, s.tank_level_m];
        for (ch, ((t, v), cut)) in (0u8..).zip([w.outlet, w.network, w.tank].iter().zip(values).zip(self.cut_loops)) {
            self.adc.set(ch, loop_volts(t, (!cut).then_some(v)));
        }
    }
}

/// A fire pump node on the bench.
pub type FirepumpRig = Rig<FirepumpPlant, FirepumpIo<SimInput, Mcp3208<SimMcp3208>, SimOutput>>;

/// A fire pump node over `sim`.
#[must_use]
pub fn firepump(sim: FireWaterSim, config: FirepumpConfig, format: Format) -> FirepumpRig {
    let pins: [SimInput; 8] = std::array::from_fn(|_| SimInput::new(true));
    let adc = SimMcp3208::new(VREF);
    let test_output = SimOutput::new();
    let Ok(io) = FirepumpIo::new(
        pins.clone(),
        Mcp3208::new(adc.clone(), VREF),
        FirepumpWiring::REFERENCE,
        test_output.clone(),
    );
    let node = Node::new(FirepumpNode::new(config), node_info("HIL-FP", format));
    let plant = FirepumpPlant {
        sim,
        pins,
        adc,
        test_output,
        cut_loops: [false; 3],
    };
    Rig::new(plant, io, node)
}

/// Latched cut-offs kept in (simulated) battery-backed RAM: they survive a
/// simulated reset of the node.
#[derive(Clone, Debug, Default)]
pub struct SimLatches(pub Wire<u64>);

impl LatchStore for SimLatches {
    fn store(&mut self, latches: u64) {
        self.0.set(latches);
    }
}

/// A charging bay with its smoke contact, three converters and the relays.
pub struct ChargerPlant {
    /// The physics.
    pub sim: ChargerSim,
    /// IN1, the smoke detector.
    pub smoke: SimInput,
    /// Port currents, port temperatures, bay (leakage, mains, ambient).
    pub adcs: [SimMcp3208; 3],
    /// OUT1.., the port relays.
    pub relays: Vec<SimOutput>,
}

impl Plant for ChargerPlant {
    fn actuate(&mut self) {
        for (port, relay) in (1u8..).zip(&self.relays) {
            self.sim.set_relay(port, relay.level.get());
        }
    }

    fn step(&mut self, dt_ms: u32) {
        self.sim.step(dt_ms);
    }

    fn wire(&mut self) {
        let s = self.sim.sensors();
        let w = ChargerWiring::REFERENCE;
        self.smoke.contact(s.smoke);
        for (ch, p) in (0u8..).zip(&s.ports) {
            self.adcs[0].set(ch, shunt_volts(&w.current, p.current_a));
            self.adcs[1].set(ch, ntc_volts(&w.ntc, p.temp_c));
        }
        self.adcs[2].set(0, loop_volts(&w.leakage, Some(s.leakage_ma)));
        self.adcs[2].set(1, divider_volts(&w.mains, s.mains_voltage_v));
        self.adcs[2].set(2, ntc_volts(&w.ntc, s.ambient_temp_c));
    }
}

/// A charging bay node on the bench.
pub type ChargerRig = Rig<ChargerPlant, ChargerIo<SimInput, Mcp3208<SimMcp3208>, SimOutput, SimLatches>>;

/// A charging bay node of `ports` ports over `sim`, with its latch store.
#[must_use]
pub fn charger(sim: ChargerSim, config: ChargerConfig, ports: u8, latches: SimLatches, format: Format) -> ChargerRig {
    let smoke = SimInput::new(true);
    let adcs: [SimMcp3208; 3] = std::array::from_fn(|_| SimMcp3208::new(VREF));
    let relays: Vec<SimOutput> = (0..ports).map(|_| SimOutput::new()).collect();
    let mut logic = ChargerNode::new(config, ports);
    logic.restore_latches(latches.0.get());
    let Ok(io) = ChargerIo::new(
        smoke.clone(),
        adcs.clone().map(|a| Mcp3208::new(a, VREF)),
        ChargerWiring::REFERENCE,
        relays.clone(),
        latches,
    );
    let node = Node::new(logic, node_info("HIL-CH", format));
    Rig::new(
        ChargerPlant {
            sim,
            smoke,
            adcs,
            relays,
        },
        io,
        node,
    )
}
