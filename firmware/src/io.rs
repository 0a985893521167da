//! What each device class reads and drives, generic over `embedded-hal` 1.0
//! pins and buses and our [`AnalogInput`], and the schedule that runs it:
//! the same code on the reference board (which only hands over its pins and
//! runs the loop) and in the HIL simulation (which hands over simulated
//! peripherals fed by physics), so the simulation tests the firmware a node
//! ships, not a copy of it.
//!
//! ```text
//! every 10 ms   ClassIo::tick     debounce contacts, sample fast sensors (AS5600)
//! every 100 ms  ClassIo::inputs → Node::step → ClassIo::apply (relays, test output, latches)
//! ```

use embedded_hal::digital::{InputPin, OutputPin};
use embedded_hal::i2c::I2c;

use crate::charger::{ChargerInputs, ChargerNode, MAX_PORTS, PortInputs};
use crate::drivers::as5600::{As5600, SpeedEstimator};
use crate::drivers::input::DebouncedInput;
use crate::drivers::relay::Relay;
use crate::elevator::{ElevatorInputs, ElevatorNode};
use crate::firepump::{FirepumpInputs, FirepumpNode};
use crate::hal::{AnalogInput, Millis};
use crate::node::{ClassLogic, Node};
use crate::sensors::{Divider, LoopTransducer, Ntc, Shunt};

/// Contacts and fast sensors are sampled this often.
pub const TICK_MS: u64 = 10;
/// The node steps this often.
pub const STEP_MS: u64 = 100;
/// A contact must be stable this long to change state (less than
/// [`STEP_MS`], so the first step sees settled contacts).
pub const DEBOUNCE_MS: u32 = 50;
const _: () = assert!(DEBOUNCE_MS as u64 + TICK_MS < STEP_MS);
/// The reference board's converter reference: the 3.3 V rail.
pub const VREF: f32 = 3.3;

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

/// The next deadline after `due`: one period later, or one period from `now`
/// if the loop fell behind (a long Modbus reply), so it never bursts.
fn next_deadline(due: Millis, period: u64, now: Millis) -> Millis {
    let next = due.plus(period);
    if next > now { next } else { now.plus(period) }
}

/// When to tick and when to step. The first step waits until every contact
/// has been sampled for longer than the debounce time: until then the
/// outputs stay off (a charger must not power its ports before it can see
/// the smoke detector).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    next_tick: Millis,
    next_step: Millis,
    stepped: bool,
}

impl Schedule {
    /// A schedule starting at `start`.
    #[must_use]
    pub const fn new(start: Millis) -> Self {
        Schedule {
            next_tick: start,
            next_step: start.plus(STEP_MS),
            stepped: false,
        }
    }

    /// Whether the node has stepped once (outputs follow the logic only from then).
    #[must_use]
    pub const fn stepped(&self) -> bool {
        self.stepped
    }

    /// Runs what is due at `now`: a tick, a step (inputs, `Node::step`,
    /// outputs). Returns whether it stepped.
    pub fn poll<IO: ClassIo>(&mut self, now: Millis, io: &mut IO, node: &mut Node<IO::Logic>) -> bool {
        if now >= self.next_tick {
            io.tick(now);
            self.next_tick = next_deadline(self.next_tick, TICK_MS, now);
        }
        if now < self.next_step {
            return false;
        }
        let inputs = io.inputs(now);
        node.step(now, &inputs);
        io.apply(node.logic());
        self.stepped = true;
        self.next_step = next_deadline(self.next_step, STEP_MS, now);
        true
    }
}

/// Converts one channel; `None` if the converter or its bus failed.
fn volts<A: AnalogInput>(adc: &mut A, channel: u8) -> Option<f32> {
    adc.read_volts(channel).ok()
}

/// The output type of a node without one: [`ElevatorIo::new`] gives an
/// elevator no door-hold output until [`ElevatorIo::with_door_hold`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoOutput;

impl embedded_hal::digital::ErrorType for NoOutput {
    type Error = core::convert::Infallible;
}

impl OutputPin for NoOutput {
    fn set_low(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }

    fn set_high(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// The elevator: eight contacts — door closed, door zone, occupied, alarm
/// button, e-bike detector, power present, top final limit, bottom final
/// limit — and an AS5600 on the governor sheave. It only watches, except
/// where a door-hold output is fitted ([`Self::with_door_hold`]): a relay
/// in parallel with the controller's door-open-hold input (the attendant's
/// or the door-open button's circuit), on while `hold_doors` holds the car.
pub struct ElevatorIo<P, I, O = NoOutput> {
    contacts: [DebouncedInput<P>; 8],
    sensor: As5600<I>,
    estimator: SpeedEstimator,
    metres_per_turn: f32,
    inverted: bool,
    /// Travel and time since the last step, from the 10 ms angle samples.
    travel_m: f32,
    window_ms: u64,
    last_angle_at: Option<Millis>,
    /// Whether every angle read since the last step succeeded.
    sensor_ok: bool,
    door_hold: Option<Relay<O>>,
}

impl<P: InputPin, I: I2c> ElevatorIo<P, I> {
    /// The contacts in the order above (active low, as opto inputs with
    /// pull-ups are), and the angle sensor's bus. `metres_per_turn` is the
    /// rope travel per sheave turn; `inverted` when the angle grows as the
    /// car goes down.
    pub fn new(contacts: [P; 8], i2c: I, metres_per_turn: f32, inverted: bool) -> Self {
        ElevatorIo {
            contacts: contacts.map(|pin| DebouncedInput::new(pin, true, DEBOUNCE_MS)),
            sensor: As5600::new(i2c),
            estimator: SpeedEstimator::new(metres_per_turn, inverted),
            metres_per_turn,
            inverted,
            travel_m: 0.0,
            window_ms: 0,
            last_angle_at: None,
            sensor_ok: true,
            door_hold: None,
        }
    }

    /// With a door-hold output (active high, switched off here). Set
    /// `door_hold_output` in the node's `ElevatorConfig` too: the logic
    /// refuses `hold_doors` without it.
    ///
    /// # Errors
    /// The output pin's, switching it off.
    pub fn with_door_hold<O: OutputPin>(self, pin: O) -> Result<ElevatorIo<P, I, O>, O::Error> {
        Ok(ElevatorIo {
            contacts: self.contacts,
            sensor: self.sensor,
            estimator: self.estimator,
            metres_per_turn: self.metres_per_turn,
            inverted: self.inverted,
            travel_m: self.travel_m,
            window_ms: self.window_ms,
            last_angle_at: self.last_angle_at,
            sensor_ok: self.sensor_ok,
            door_hold: Some(Relay::new(pin, true)?),
        })
    }
}

impl<P: InputPin, I: I2c, O: OutputPin> ClassIo for ElevatorIo<P, I, O> {
    type Logic = ElevatorNode;

    fn tick(&mut self, now: Millis) {
        for contact in &mut self.contacts {
            // A contact that cannot be read keeps its debounced state.
            let _ = contact.sample(now);
        }
        // The sheave must be sampled faster than half a turn: every 10 ms is
        // good to 47 m/s. Speed over the step is the travel summed here.
        if let Ok(angle) = self.sensor.raw_angle() {
            if let (Some(speed), Some(t0)) = (self.estimator.update(angle, now), self.last_angle_at) {
                let dt = now.since(t0);
                #[allow(clippy::cast_precision_loss)]
                let dt_s = dt as f32 / 1000.0;
                self.travel_m += speed * dt_s;
                self.window_ms += dt;
            }
            self.last_angle_at = Some(now);
        } else {
            // No magnet or a bus error: continuity is lost.
            self.sensor_ok = false;
            self.estimator = SpeedEstimator::new(self.metres_per_turn, self.inverted);
            self.last_angle_at = None;
        }
    }

    fn inputs(&mut self, _now: Millis) -> ElevatorInputs {
        #[allow(clippy::cast_precision_loss)]
        let speed_mps =
            (self.sensor_ok && self.window_ms > 0).then(|| self.travel_m / (self.window_ms as f32 / 1000.0));
        self.travel_m = 0.0;
        self.window_ms = 0;
        self.sensor_ok = true;
        let [
            door_closed,
            door_zone,
            occupied,
            alarm_button,
            ebike,
            power_ok,
            top_limit,
            bottom_limit,
        ] = self.contacts.each_ref().map(DebouncedInput::state);
        ElevatorInputs {
            door_closed,
            door_zone,
            occupied,
            alarm_button,
            ebike,
            power_ok,
            top_limit,
            bottom_limit,
            speed_mps,
        }
    }

    fn apply(&mut self, logic: &ElevatorNode) {
        if let Some(relay) = &mut self.door_hold {
            // A failed write is retried by the next step's apply.
            let _ = relay.set(logic.door_hold());
        }
    }
}

/// How a fire pump room's transducers are scaled.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FirepumpWiring {
    /// Channel 0: pump outlet pressure.
    pub outlet: LoopTransducer,
    /// Channel 1: network pressure at the most unfavourable point.
    pub network: LoopTransducer,
    /// Channel 2: tank level.
    pub tank: LoopTransducer,
}

/// A 0–1.6 MPa pressure transducer on 4–20 mA into 150 Ω.
const PRESSURE_1_6_MPA: LoopTransducer = LoopTransducer {
    shunt_ohms: 150.0,
    at_4ma: 0.0,
    at_20ma: 1.6,
};

impl FirepumpWiring {
    /// The reference board's: 0–1.6 MPa and 0–5 m over 4–20 mA, 150 Ω shunts.
    pub const REFERENCE: FirepumpWiring = FirepumpWiring {
        outlet: PRESSURE_1_6_MPA,
        network: PRESSURE_1_6_MPA,
        tank: LoopTransducer {
            shunt_ohms: 150.0,
            at_4ma: 0.0,
            at_20ma: 5.0,
        },
    };
}

/// The fire pump room: eight contacts — pump running, pump fault, auto mode,
/// start signal, jockey running, main power, backup power, cabinet
/// self-test — three 4–20 mA transducers on one converter, and the test
/// output to the cabinet's remote-test input.
pub struct FirepumpIo<P, A, O> {
    contacts: [DebouncedInput<P>; 8],
    adc: A,
    wiring: FirepumpWiring,
    test_output: Relay<O>,
}

impl<P: InputPin, A: AnalogInput, O: OutputPin> FirepumpIo<P, A, O> {
    /// The contacts in the order above (active low), the converter, its
    /// scaling, and the test output (active high).
    ///
    /// # Errors
    /// The output pin's, switching it off.
    pub fn new(contacts: [P; 8], adc: A, wiring: FirepumpWiring, test_output: O) -> Result<Self, O::Error> {
        Ok(FirepumpIo {
            contacts: contacts.map(|pin| DebouncedInput::new(pin, true, DEBOUNCE_MS)),
            adc,
            wiring,
            test_output: Relay::new(test_output, true)?,
        })
    }

    fn transducer(&mut self, channel: u8, t: LoopTransducer) -> Option<f32> {
        volts(&mut self.adc, channel).and_then(|v| t.convert(v).ok())
    }
}

impl<P: InputPin, A: AnalogInput, O: OutputPin> ClassIo for FirepumpIo<P, A, O> {
    type Logic = FirepumpNode;

    fn tick(&mut self, now: Millis) {
        for contact in &mut self.contacts {
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
        let w = self.wiring;
        FirepumpInputs {
            pump_running,
            pump_fault,
            auto_mode,
            start_signal,
            jockey_running,
            main_power_ok,
            backup_power_ok,
            cabinet_self_test,
            outlet_pressure_mpa: self.transducer(0, w.outlet),
            network_pressure_mpa: self.transducer(1, w.network),
            tank_level_m: self.transducer(2, w.tank),
        }
    }

    fn apply(&mut self, logic: &FirepumpNode) {
        // A failed write is retried by the next step's apply.
        let _ = self.test_output.set(logic.test_output());
    }
}

/// How a charging bay's converters are scaled.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChargerWiring {
    /// Per-port current (converter 0, one channel per port).
    pub current: Shunt,
    /// Socket temperature (converter 1, one channel per port) and the bay's
    /// ambient temperature (converter 2, channel 2).
    pub ntc: Ntc,
    /// Residual current (converter 2, channel 0).
    pub leakage: LoopTransducer,
    /// Mains voltage (converter 2, channel 1).
    pub mains: Divider,
}

impl ChargerWiring {
    /// The reference board's: 10 mΩ shunts ×50, 10 kΩ β 3950 NTCs with 10 kΩ
    /// pull-ups, a 0–100 mA residual-current monitor on 4–20 mA into 150 Ω,
    /// mains scaled to 100 V RMS per volt.
    pub const REFERENCE: ChargerWiring = ChargerWiring {
        current: Shunt { ohms: 0.01, gain: 50.0 },
        ntc: Ntc {
            r25_ohms: 10_000.0,
            beta: 3950.0,
            pullup_ohms: 10_000.0,
            vref: VREF,
        },
        leakage: LoopTransducer {
            shunt_ohms: 150.0,
            at_4ma: 0.0,
            at_20ma: 100.0,
        },
        mains: Divider { ratio: 100.0 },
    };
}

/// Where a charger keeps its latched cut-offs across resets (the reference
/// board: the RTC's backup registers).
pub trait LatchStore {
    /// Saves the latches (a no-op when unchanged).
    fn store(&mut self, latches: u64);
}

/// A charging bay: the smoke detector's contact, three converters (port
/// currents, port temperatures, the bay's leakage, mains and ambient), one
/// relay per port, and the store of latched cut-offs.
pub struct ChargerIo<P, A, O, L> {
    smoke: DebouncedInput<P>,
    currents: A,
    temps: A,
    bay: A,
    wiring: ChargerWiring,
    relays: heapless::Vec<Relay<O>, MAX_PORTS>,
    latches: L,
}

impl<P: InputPin, A: AnalogInput, O: OutputPin, L: LatchStore> ChargerIo<P, A, O, L> {
    /// The smoke contact (active low), the converters, their scaling, one
    /// relay output per port (active high, switched off here; at most
    /// [`MAX_PORTS`], the rest are dropped) and the latch store.
    ///
    /// # Errors
    /// An output pin's, switching it off.
    pub fn new(
        smoke: P,
        [currents, temps, bay]: [A; 3],
        wiring: ChargerWiring,
        relays: impl IntoIterator<Item = O>,
        latches: L,
    ) -> Result<Self, O::Error> {
        let mut out = heapless::Vec::new();
        for pin in relays.into_iter().take(MAX_PORTS) {
            // Room for MAX_PORTS: `take` bounds it.
            let _ = out.push(Relay::new(pin, true)?);
        }
        Ok(ChargerIo {
            smoke: DebouncedInput::new(smoke, true, DEBOUNCE_MS),
            currents,
            temps,
            bay,
            wiring,
            relays: out,
            latches,
        })
    }
}

impl<P: InputPin, A: AnalogInput, O: OutputPin, L: LatchStore> ClassIo for ChargerIo<P, A, O, L> {
    type Logic = ChargerNode;

    fn tick(&mut self, now: Millis) {
        let _ = self.smoke.sample(now);
    }

    fn inputs(&mut self, _now: Millis) -> ChargerInputs {
        let w = self.wiring;
        let mut ports = [PortInputs::default(); MAX_PORTS];
        for (channel, port) in (0u8..).zip(ports.iter_mut().take(self.relays.len())) {
            *port = PortInputs {
                current_a: volts(&mut self.currents, channel).map(|v| w.current.convert(v)),
                temp_c: volts(&mut self.temps, channel).and_then(|v| w.ntc.convert(v).ok()),
            };
        }
        ChargerInputs {
            smoke: self.smoke.state(),
            leakage_ma: volts(&mut self.bay, 0).and_then(|v| w.leakage.convert(v).ok()),
            mains_voltage_v: volts(&mut self.bay, 1).map(|v| w.mains.convert(v)),
            ambient_temp_c: volts(&mut self.bay, 2).and_then(|v| w.ntc.convert(v).ok()),
            ports,
        }
    }

    fn apply(&mut self, logic: &ChargerNode) {
        for (port, relay) in (1u8..).zip(&mut self.relays) {
            // A failed write is retried by the next step's apply.
            let _ = relay.set(logic.relay_on(port));
        }
        self.latches.store(logic.latches());
    }
}
