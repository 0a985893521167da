//! The fire water system: tank, jockey pump, main fire pump and its cabinet,
//! and the hydrant/sprinkler network, as the fire pump node's sensors see them
//! (run, fault, auto, start, jockey, power and 巡检 contacts; outlet and
//! network pressure and tank level transducers).
//!
//! ```text
//!  tank ──► jockey pump ───────────────────────┐
//!   ▲ │                                        ▼
//!   │ └──► main pump ──► outlet valve ──► network (pressure vessel) ──► leak, demand
//!   │         │ (outlet transducer)            (network transducer)
//!   └─────────┴── 巡检 test return line
//! ```
//!
//! The network is one lumped compliance (pipes plus the jockey's pressure
//! vessel): its pressure is a first-order system, raised by pump flow and
//! lowered by the leak and any demand, each flow a function of pressure. The
//! model is pure and deterministic: time passes only through
//! [`FireWaterSim::step`], and the only randomness (sensor noise) comes from an
//! RNG seeded in [`FireWaterSim::new`].
//!
//! With the defaults, the plant's normal operation stays well clear of the
//! thresholds the gateway judges with (`gateway/alerting/packs/firepump.toml`:
//! low pressure 0.07 MPa, fail-to-start 120 s, low tank 1.0 m), and every fault
//! crosses its threshold: a demand collapses the network below the main pump's
//! start pressure in about 4 s and, without the main pump, below 0.07 MPa in
//! about 15 s (settling near 0.015 MPa); with it, the network settles near
//! 0.59 MPa. A draining tank falls below 1.0 m in about 56 min.

use serde::{Deserialize, Serialize};

/// Network compliance, L per MPa: pipes plus the jockey's pressure vessel.
/// Sized so that the default leak takes the network from the jockey's stop
/// to its start pressure in about 15 min (four jockey starts an hour).
const COMPLIANCE_L_PER_MPA: f32 = 150.0;
/// Jockey pump flow at zero pressure, L/s; its curve falls to nothing at its
/// shut-off head.
const JOCKEY_MAX_LPS: f32 = 1.0;
/// The jockey's shut-off head above its stop pressure, MPa: it can always reach
/// its stop pressure, and never more than this above it.
const JOCKEY_HEAD_MARGIN_MPA: f32 = 0.1;
/// Main pump flow at zero pressure, L/s; its curve falls to nothing at
/// [`FireWaterConfig::main_head_mpa`].
const MAIN_MAX_LPS: f32 = 40.0;
/// A demand's flow at the static pressure, L/s (one hydrant or a few sprinkler
/// heads); it goes as the square root of pressure, as through an orifice.
const DEMAND_LPS: f32 = 5.0;
/// Tank plan area, m² (a 150 m³ reserve at the default 3 m).
const TANK_AREA_M2: f32 = 50.0;
/// The tank's float-valve make-up from the mains, L/s, while below full.
const MAKEUP_LPS: f32 = 2.0;
/// [`FireWaterFault::TankDraining`]: the outflow (an open drain or a split
/// tank), L/s, with the make-up shut. 30 L/s over 50 m² is 0.6 mm/s: from full
/// (3.0 m) to a third (1.0 m) in about 56 min.
const DRAIN_LPS: f32 = 30.0;
/// A cabinet self-test (巡检) run, ms from the rising edge of its remote-test
/// input: the start delay, then the pump runs for the rest.
const SELF_TEST_RUN_MS: u32 = 60_000;
/// Pressure transducer noise, ± MPa.
const NOISE_MPA: f32 = 0.005;
/// Level transducer noise, ± m.
const NOISE_M: f32 = 0.005;
/// Suction head per metre of tank level, MPa: what the outlet transducer reads
/// with the main pump stopped and its check valve shut.
const SUCTION_MPA_PER_M: f32 = 0.0098;
/// The longest integration step, ms: longer `step`s are split so the pressure
/// integration stays stable whatever the caller's step.
const MAX_SUBSTEP_MS: u8 = 100;

/// The plant's set points: what a commissioning engineer would set on the
/// jockey's and the cabinet's pressure switches, and the tank's size.
///
/// The defaults are a typical indoor hydrant system whose normal operation
/// stays clear of every threshold in `gateway/alerting/packs/firepump.toml`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct FireWaterConfig {
    /// Network pressure at rest, held by the jockey, MPa: the starting
    /// pressure, and the pressure at which a demand flows its nominal 5 L/s.
    pub static_pressure_mpa: f32,
    /// The jockey starts below this network pressure, MPa.
    pub jockey_on_mpa: f32,
    /// The jockey stops above this network pressure, MPa.
    pub jockey_off_mpa: f32,
    /// The cabinet's pressure switch: network pressure below this starts the
    /// main pump (and latches the start), MPa.
    pub main_start_mpa: f32,
    /// The star-delta start: from the start signal to run feedback, ms.
    pub main_start_delay_ms: u32,
    /// The main pump's shut-off head, MPa: its outlet pressure running against
    /// a closed valve or the throttled test line, and the most it can give the
    /// network.
    pub main_head_mpa: f32,
    /// The tank's level when full, m.
    pub tank_capacity_m: f32,
    /// The network's leak at the static pressure, L/s: small, so the jockey
    /// cycles a few times an hour.
    pub leak_lps: f32,
}

impl Default for FireWaterConfig {
    /// A typical system: jockey 0.30–0.36 MPa, main pump start at 0.25 MPa
    /// after a 5 s star-delta, 0.65 MPa head, a 3 m tank, a leak of 0.01 L/s.
    fn default() -> Self {
        FireWaterConfig {
            static_pressure_mpa: 0.35,
            jockey_on_mpa: 0.30,
            jockey_off_mpa: 0.36,
            main_start_mpa: 0.25,
            main_start_delay_ms: 5000,
            main_head_mpa: 0.65,
            tank_capacity_m: 3.0,
            leak_lps: 0.01,
        }
    }
}

/// What can go wrong (or happen) in the pump room, one per fire-pump code the
/// node and the gateway must detect, plus the events that call for the pump.
/// Each can be injected and cleared independently.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FireWaterFault {
    /// The starter never pulls in: the start signal is there, the pump never
    /// runs, and the cabinet shows no fault (a running pump keeps running).
    PumpFailToStart,
    /// The cabinet trips the pump (overload, phase loss) and shows its fault
    /// contact: the pump stops and cannot run.
    PumpFault,
    /// The main pump's outlet valve is shut: the pump runs and its outlet
    /// pressure builds to its head, but nothing reaches the network.
    ClosedValve,
    /// The tank drains (an open drain, a split) with its make-up shut: the
    /// level falls steadily, below a third of capacity in about 56 min.
    TankDraining,
    /// The main supply is lost; the cabinet's transfer switch runs everything
    /// from the backup.
    MainPowerFault,
    /// The backup supply is lost.
    BackupPowerFault,
    /// The cabinet is switched out of auto: nothing starts the main pump (the
    /// jockey has its own controller and keeps running).
    NotInAuto,
    /// A hydrant or sprinklers flow 5 L/s (at the static pressure): more than
    /// the jockey gives, so the pressure collapses and the main pump must start.
    Demand,
    /// The fire alarm panel's start signal to the cabinet.
    FireAlarm,
}

impl FireWaterFault {
    /// Every fault, so scenarios and tests can iterate over them.
    pub const ALL: [FireWaterFault; 9] = [
        FireWaterFault::PumpFailToStart,
        FireWaterFault::PumpFault,
        FireWaterFault::ClosedValve,
        FireWaterFault::TankDraining,
        FireWaterFault::MainPowerFault,
        FireWaterFault::BackupPowerFault,
        FireWaterFault::NotInAuto,
        FireWaterFault::Demand,
        FireWaterFault::FireAlarm,
    ];

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// One sample of what the pump room's contacts and transducers show, in the
/// units the node converts to ([`firmware::firepump::FirepumpInputs`] without
/// loop faults): the simulated peripherals turn it into pins and loop currents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FireWaterSensors {
    /// The main pump's run feedback: on once the star-delta start completes.
    pub pump_running: bool,
    /// The cabinet's fault contact.
    pub pump_fault: bool,
    /// The cabinet is in auto-start.
    pub auto_mode: bool,
    /// A start signal is present: a latched fire start (pressure switch or fire
    /// alarm) or a self-test run.
    pub start_signal: bool,
    /// The jockey pump runs.
    pub jockey_running: bool,
    /// The main supply is present.
    pub main_power_ok: bool,
    /// The backup supply is present.
    pub backup_power_ok: bool,
    /// The cabinet runs a self-test (巡检).
    pub cabinet_self_test: bool,
    /// The main pump's outlet pressure, MPa: the network's while it feeds it,
    /// its head against a closed valve or the test line, the tank's suction
    /// head when stopped.
    pub outlet_pressure_mpa: f32,
    /// The network pressure at the most unfavourable point, MPa.
    pub network_pressure_mpa: f32,
    /// The tank level, m.
    pub tank_level_m: f32,
}

/// The main pump's starter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Main {
    Off,
    /// Star-delta start in progress for this long, ms.
    Starting(u32),
    Running,
}

/// The fire water plant: set up at rest with [`FireWaterSim::new`], faults
/// injected and cleared, stepped on a virtual clock, read with
/// [`FireWaterSim::sensors`].
///
/// The main pump starts (after the star-delta delay) when the network falls
/// below [`FireWaterConfig::main_start_mpa`], on [`FireWaterFault::FireAlarm`],
/// or for a self-test, if the cabinet is in auto, has a supply and is not
/// tripped. A fire start latches, as GB 50974 wants (a fire pump is stopped by
/// hand, never automatically): it holds until a `clear` leaves neither
/// [`FireWaterFault::Demand`] nor [`FireWaterFault::FireAlarm`] active, which
/// stands for the operator's manual stop. A self-test's start ends with the
/// test.
#[derive(Clone, Debug)]
pub struct FireWaterSim {
    config: FireWaterConfig,
    rng: fastrand::Rng,
    faults: u16,
    /// True network pressure, MPa.
    network_mpa: f32,
    /// True main pump outlet pressure, MPa.
    outlet_mpa: f32,
    /// True tank level, m.
    level_m: f32,
    jockey: bool,
    main: Main,
    /// A fire start (pressure switch or fire alarm), latched.
    fire_start: bool,
    /// A self-test run, ms since it began.
    self_test: Option<u32>,
    test_input: bool,
    noise: [f32; 3],
}

impl FireWaterSim {
    /// A plant at rest: the jockey holding the static pressure (and stopped),
    /// main pump off, cabinet in auto, both supplies present, tank full. The
    /// seed drives the sensor noise only, so a run is reproducible.
    #[must_use]
    pub fn new(config: FireWaterConfig, seed: u64) -> Self {
        let mut sim = FireWaterSim {
            config,
            rng: fastrand::Rng::with_seed(seed),
            faults: 0,
            network_mpa: config.static_pressure_mpa.max(0.0),
            outlet_mpa: 0.0,
            level_m: config.tank_capacity_m.max(0.0),
            jockey: false,
            main: Main::Off,
            fire_start: false,
            self_test: None,
            test_input: false,
            noise: [0.0; 3],
        };
        sim.outlet_mpa = sim.suction_mpa();
        sim.sample_noise();
        sim
    }

    /// The set points in force, for tests and scenarios that judge against them.
    #[must_use]
    pub fn config(&self) -> &FireWaterConfig {
        &self.config
    }

    /// Starts a fault (or a demand, or a fire alarm); it acts from the next
    /// `step` and holds until cleared.
    pub fn inject(&mut self, f: FireWaterFault) {
        self.faults |= f.bit();
    }

    /// Ends a fault. Clearing is the operator restoring the system, so when
    /// neither a demand nor a fire alarm remains it also resets the cabinet's
    /// latched fire start (the manual stop); a cause still present (the
    /// network still below the start pressure) latches it again at the next
    /// `step`.
    pub fn clear(&mut self, f: FireWaterFault) {
        self.faults &= !f.bit();
        if !self.active(FireWaterFault::Demand) && !self.active(FireWaterFault::FireAlarm) {
            self.fire_start = false;
        }
    }

    /// Whether a fault is injected, so scenarios can report what they did.
    #[must_use]
    pub fn active(&self, f: FireWaterFault) -> bool {
        self.faults & f.bit() != 0
    }

    /// The node's test output, wired to the cabinet's remote-test input. A
    /// rising edge, with the cabinet in auto and no run going, starts a
    /// self-test (巡检) run of 60 s: the self-test contact and the start signal
    /// on, the main pump started (after its start delay, unless it fails to
    /// start) against the throttled test line back to the tank, so the network
    /// is undisturbed, then everything off. The cabinet latches the run: the
    /// input falling early does not end it.
    pub fn set_test_input(&mut self, on: bool) {
        if on && !self.test_input && self.self_test.is_none() && !self.active(FireWaterFault::NotInAuto) {
            self.self_test = Some(0);
        }
        self.test_input = on;
    }

    /// Advances the plant by `dt_ms` of virtual time (split into steps of at
    /// most 100 ms), then samples the sensor noise once.
    pub fn step(&mut self, dt_ms: u32) {
        let mut left = dt_ms;
        while left > 0 {
            let chunk = u8::try_from(left.min(u32::from(MAX_SUBSTEP_MS))).unwrap_or(MAX_SUBSTEP_MS);
            self.substep(chunk);
            left -= u32::from(chunk);
        }
        self.sample_noise();
    }

    /// What the node's inputs would show now (with the noise of the last step).
    #[must_use]
    pub fn sensors(&self) -> FireWaterSensors {
        FireWaterSensors {
            pump_running: self.main == Main::Running,
            pump_fault: self.active(FireWaterFault::PumpFault),
            auto_mode: !self.active(FireWaterFault::NotInAuto),
            start_signal: self.start_signal(),
            jockey_running: self.jockey,
            main_power_ok: !self.active(FireWaterFault::MainPowerFault),
            backup_power_ok: !self.active(FireWaterFault::BackupPowerFault),
            cabinet_self_test: self.self_test.is_some(),
            outlet_pressure_mpa: (self.outlet_mpa + self.noise[0]).max(0.0),
            network_pressure_mpa: (self.network_mpa + self.noise[1]).max(0.0),
            tank_level_m: (self.level_m + self.noise[2]).max(0.0),
        }
    }

    fn start_signal(&self) -> bool {
        self.fire_start || self.self_test.is_some()
    }

    fn powered(&self) -> bool {
        !self.active(FireWaterFault::MainPowerFault) || !self.active(FireWaterFault::BackupPowerFault)
    }

    fn suction_mpa(&self) -> f32 {
        self.level_m * SUCTION_MPA_PER_M
    }

    fn sample_noise(&mut self) {
        let mut n = || self.rng.f32().mul_add(2.0, -1.0);
        self.noise = [n() * NOISE_MPA, n() * NOISE_MPA, n() * NOISE_M];
    }

    fn substep(&mut self, ms: u8) {
        use FireWaterFault as F;
        let c = self.config;
        let secs = f32::from(ms) / 1000.0;
        let ms = u32::from(ms);
        let p = self.network_mpa;

        // The start: the pressure switch and the fire alarm latch it; a
        // self-test holds it for its run.
        if p < c.main_start_mpa || self.active(F::FireAlarm) {
            self.fire_start = true;
        }
        if let Some(t) = self.self_test {
            let t = t.saturating_add(ms);
            self.self_test = (t < SELF_TEST_RUN_MS).then_some(t);
        }
        let can_run = !self.active(F::NotInAuto) && self.powered() && !self.active(F::PumpFault);
        self.main = if !self.start_signal() || !can_run {
            Main::Off
        } else {
            match self.main {
                Main::Running => Main::Running,
                Main::Starting(_) | Main::Off if self.active(F::PumpFailToStart) => Main::Starting(0),
                Main::Off => Main::Starting(ms).promoted(c.main_start_delay_ms),
                Main::Starting(t) => Main::Starting(t.saturating_add(ms)).promoted(c.main_start_delay_ms),
            }
        };

        // The jockey, on its own pressure switch, from either supply.
        if !self.powered() {
            self.jockey = false;
        } else if p < c.jockey_on_mpa {
            self.jockey = true;
        } else if p > c.jockey_off_mpa {
            self.jockey = false;
        }

        // Flows, L/s, each a function of the network pressure.
        let water = self.level_m > 0.0;
        let curve = |max: f32, head: f32| {
            if head > 0.0 {
                max * (1.0 - (p / head).powi(2)).max(0.0)
            } else {
                0.0
            }
        };
        let q_jockey = if self.jockey && water {
            curve(JOCKEY_MAX_LPS, c.jockey_off_mpa + JOCKEY_HEAD_MARGIN_MPA)
        } else {
            0.0
        };
        let running = self.main == Main::Running && water;
        // A running pump without a fire start is on a self-test, on the test line.
        let feeding = running && self.fire_start && !self.active(F::ClosedValve);
        let q_main = if feeding {
            curve(MAIN_MAX_LPS, c.main_head_mpa)
        } else {
            0.0
        };
        let orifice = (p / c.static_pressure_mpa.max(0.01)).max(0.0).sqrt();
        let q_leak = c.leak_lps * orifice;
        let q_demand = if self.active(F::Demand) {
            DEMAND_LPS * orifice
        } else {
            0.0
        };

        self.network_mpa = (p + (q_jockey + q_main - q_leak - q_demand) * secs / COMPLIANCE_L_PER_MPA).max(0.0);

        // The tank: the pumps draw from it (the test line returns to it), the
        // float valve tops it up, unless it is draining.
        let (q_in, q_drain) = if self.active(F::TankDraining) {
            (0.0, DRAIN_LPS)
        } else if self.level_m < c.tank_capacity_m {
            (MAKEUP_LPS, 0.0)
        } else {
            (0.0, 0.0)
        };
        let dl = (q_in - q_jockey - q_main - q_drain) / 1000.0 / TANK_AREA_M2 * secs;
        self.level_m = (self.level_m + dl).clamp(0.0, c.tank_capacity_m.max(0.0));

        self.outlet_mpa = if feeding {
            self.network_mpa
        } else if running {
            c.main_head_mpa
        } else {
            self.suction_mpa()
        };
    }
}

impl Main {
    /// A start in progress becomes a run once the star-delta delay is over.
    fn promoted(self, delay_ms: u32) -> Main {
        match self {
            Main::Starting(t) if t >= delay_ms => Main::Running,
            other => other,
        }
    }
}
