//! The e-bike charging bay: what a charger node's sensors see while batteries
//! charge, and while the bay's typical failures unfold.
//!
//! Per port the model keeps a battery (capacity, state of charge), the relay
//! the node drives ([`ChargerSim::set_relay`], from `ChargerNode::relay_on`)
//! and the socket temperature; for the bay, the smoke detector, the residual
//! (leakage) current, the mains voltage and the air temperature.
//!
//! # Normal charging
//!
//! Each plugged battery charges on a CC/CV curve: 4 A constant current (at
//! 48 V, ≈ 190 W into the pack) up to 80 % state of charge, then a constant
//! voltage taper down to 0.3 A as the pack fills, and the charger stops at
//! 100 %. A 960 Wh pack (48 V × 20 Ah) goes from 20 % to full in ≈ 4.7 h,
//! well inside the 8 h charge timeout. The socket is a first-order thermal
//! body heading for `ambient + 1 °C/A² · I²` with a 10-minute time constant:
//! at 4 A it settles ≈ 16 °C over ambient (41 °C in a 25 °C bay), under the
//! 65 °C over-temperature threshold, and it rises at most ≈ 0.03 °C/s, under
//! the 0.05 °C/s rate-of-rise warning.
//!
//! The current is the one the port's shunt measures, and the node multiplies
//! it by the mains voltage for `power_w`: the taper's 0.3 A reads ≈ 66 W, so
//! a charging battery never looks "full" (under 30 W) to the node, while an
//! abandoned full battery's 0.1 A trickle reads ≈ 22 W, under 30 W, yet above
//! the node's 0.05 A idle current, so it still counts as drawing.
//!
//! # Faults
//!
//! - [`ChargerFault::ThermalRunaway`] is modelled as a failing socket (a
//!   high-resistance contact): while current flows through the port, the
//!   socket heats at 0.2 °C/s, crossing 65 °C about two minutes after the
//!   fault and 80 °C a minute later; past 90 °C the smouldering plastic sets
//!   off the bay's smoke detector. Cutting the relay removes the heat source:
//!   the socket stops rising and cools back towards ambient — the interlock
//!   works when it acts early. At 100 °C the battery's own cells go into
//!   thermal runaway and keep heating (0.5 °C/s) whatever the relay does:
//!   cutting the port then is too late.
//! - [`ChargerFault::OverCurrent`]: a faulty charger draws 7 A (over the rated
//!   5 A) while its relay is on; the pack still charges on its normal curve,
//!   the excess heats the socket towards 74 °C (over minutes).
//! - [`ChargerFault::AbandonedFull`]: once the pack is full the charger keeps
//!   a 0.1 A trickle instead of stopping, for as long as the relay stays on.
//! - [`ChargerFault::Leakage`]: the residual-current sensor reads the injected
//!   value instead of the 0–2 mA of the chargers' filters.
//! - [`ChargerFault::Smoke`]: the smoke detector in alarm.
//! - [`ChargerFault::MainsLoss`]: no mains: 0 V, no current anywhere, no
//!   leakage; sockets cool. The smoke detector keeps working (it has its own
//!   battery).
//!
//! Noise is seeded and drawn once per step: ±0.05 A on the constant current
//! (proportional to the current, so a trickle stays a trickle), ±0.2 °C on
//! every temperature, ±2 V on the mains, ±0.1 mA on the leakage. A port
//! carrying no current reads exactly 0 A.

use fastrand::Rng;

/// Most ports one bay serves (as `firmware::charger::MAX_PORTS`).
pub const MAX_PORTS: usize = 12;

/// Voltage at which the pack takes its charge (a 48 V e-bike pack).
const CHARGE_VOLTAGE_V: f32 = 48.0;
/// Constant-current phase.
const CC_CURRENT_A: f32 = 4.0;
/// The constant-voltage taper starts here.
const CV_FROM_SOC: f32 = 0.8;
/// The taper ends here, at 100 % (the charger's termination current).
const TERMINAL_CURRENT_A: f32 = 0.3;
/// A full battery left on a charger that does not stop: ≈ 22 W at 220 V.
const TRICKLE_CURRENT_A: f32 = 0.1;
/// A faulty charger's draw, over the rated 5 A.
const OVER_CURRENT_A: f32 = 7.0;
/// Socket temperature rise over ambient per A² (steady state).
const HEAT_C_PER_A2: f32 = 1.0;
/// Socket thermal time constant.
const THERMAL_TAU_S: f32 = 600.0;
/// A failing socket heats this fast while current flows.
const RUNAWAY_RISE_C_PER_S: f32 = 0.2;
/// From here the cells are in runaway themselves: the relay no longer matters.
const SELF_SUSTAINING_C: f32 = 100.0;
/// How fast a battery in runaway heats.
const BATTERY_RUNAWAY_C_PER_S: f32 = 0.5;
/// Where a burning pack's temperature stops climbing.
const RUNAWAY_MAX_C: f32 = 300.0;
/// A runaway socket past this temperature sets off the smoke detector.
const SMOKE_FROM_C: f32 = 90.0;
/// Relative current noise: ±0.05 A at the constant 4 A.
const CURRENT_NOISE: f32 = 0.05 / CC_CURRENT_A;
/// Temperature noise.
const TEMP_NOISE_C: f32 = 0.2;
/// Mains voltage noise.
const MAINS_NOISE_V: f32 = 2.0;
/// Leakage of the bay's wiring with nothing charging.
const LEAKAGE_BASE_MA: f32 = 0.2;
/// Leakage of each charger drawing current (its EMI filter's capacitors).
const LEAKAGE_PER_PORT_MA: f32 = 0.15;
/// Leakage noise.
const LEAKAGE_NOISE_MA: f32 = 0.1;
/// Normal leakage never reads above this (well under the 30 mA threshold).
const LEAKAGE_NORMAL_MAX_MA: f32 = 2.0;
/// Smallest capacity a battery is given, so charging stays finite.
const MIN_CAPACITY_WH: f32 = 1.0;

/// The bay as built: how many ports, on what mains, in what air.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChargerSimConfig {
    /// Number of ports, clamped to 1–[`MAX_PORTS`] as the node does.
    pub ports: u8,
    /// Nominal mains voltage the sensors read when there is power.
    pub mains_v: f32,
    /// Air temperature in the bay, what idle sockets cool to.
    pub ambient_c: f32,
}

impl Default for ChargerSimConfig {
    /// An 8-port bay on 220 V mains at 25 °C: a typical residential bay.
    fn default() -> Self {
        ChargerSimConfig {
            ports: 8,
            mains_v: 220.0,
            ambient_c: 25.0,
        }
    }
}

/// An e-bike battery on a port: what the charge curve depends on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Battery {
    /// Energy when full, in Wh (a 48 V × 20 Ah pack is ≈ 960 Wh); at least 1 Wh.
    pub capacity_wh: f32,
    /// State of charge, 0 (empty) to 1 (full); it decides CC, CV or done.
    pub soc: f32,
}

/// What can go wrong in a bay, injected and cleared by the scenarios.
///
/// Faults are matched by kind and port: [`ChargerFault::Leakage`] is one
/// fault whatever its value (injecting it again replaces the value; `clear`
/// and `active` ignore `ma`). Faults on a port the bay does not have are
/// ignored.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ChargerFault {
    /// A failing socket heats ~0.2 °C/s while current flows, past 80 °C, then
    /// smoke at 90 °C; from 100 °C the battery burns whatever the relay does.
    ThermalRunaway {
        /// The port (1-based).
        port: u8,
    },
    /// The bay's smoke detector in alarm.
    Smoke,
    /// Residual current to earth (a damaged cable or charger).
    Leakage {
        /// What the residual-current sensor reads, in mA.
        ma: f32,
    },
    /// A faulty charger draws 7 A (rated 5 A) while its relay is on.
    OverCurrent {
        /// The port (1-based).
        port: u8,
    },
    /// A full battery left plugged: the charger keeps a 0.1 A trickle
    /// (≈ 22 W, under the 30 W full threshold) instead of stopping.
    AbandonedFull {
        /// The port (1-based).
        port: u8,
    },
    /// The bay has no mains: no voltage, no current.
    MainsLoss,
}

/// One port's sensors, as the node would read them after conversion.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PortSensors {
    /// Current through the port's shunt, A (exactly 0 when none flows).
    pub current_a: f32,
    /// Socket temperature, °C.
    pub temp_c: f32,
    /// Whether a battery is plugged in (for the scenarios; the node has no
    /// plug sensor and sees only current).
    pub plugged: bool,
}

/// One sample of the bay's sensors.
#[derive(Clone, Debug, PartialEq)]
pub struct ChargerSensors {
    /// Smoke detector in alarm.
    pub smoke: bool,
    /// Residual current, mA.
    pub leakage_ma: f32,
    /// Mains voltage, V.
    pub mains_voltage_v: f32,
    /// Air temperature in the bay, °C.
    pub ambient_temp_c: f32,
    /// Per port, index 0 is port 1; as many as the bay has.
    pub ports: Vec<PortSensors>,
}

/// One port's state.
#[derive(Clone, Debug)]
struct Port {
    battery: Option<Battery>,
    relay: bool,
    temp_c: f32,
    runaway: bool,
    smouldering: bool,
    over_current: bool,
    abandoned: bool,
    /// This step's relative current noise.
    current_noise: f32,
    /// This step's temperature noise.
    temp_noise: f32,
}

impl Port {
    fn new(ambient_c: f32) -> Self {
        Port {
            battery: None,
            relay: false,
            temp_c: ambient_c,
            runaway: false,
            smouldering: false,
            over_current: false,
            abandoned: false,
            current_noise: 0.0,
            temp_noise: 0.0,
        }
    }

    /// What the charger would put into the battery, given it is powered.
    fn curve_current(&self) -> f32 {
        let Some(b) = self.battery else { return 0.0 };
        if b.soc >= 1.0 {
            if self.abandoned { TRICKLE_CURRENT_A } else { 0.0 }
        } else if b.soc < CV_FROM_SOC {
            CC_CURRENT_A
        } else {
            let left = ((1.0 - b.soc) / (1.0 - CV_FROM_SOC)).clamp(0.0, 1.0);
            TERMINAL_CURRENT_A + (CC_CURRENT_A - TERMINAL_CURRENT_A) * left.sqrt()
        }
    }

    /// The current through the port (noiseless), with mains present or not.
    fn current(&self, mains: bool) -> f32 {
        if !mains || !self.relay || self.battery.is_none() {
            0.0
        } else if self.over_current {
            OVER_CURRENT_A
        } else {
            self.curve_current()
        }
    }
}

/// The charging bay plant: stepped on a virtual clock, seeded for its noise.
#[derive(Clone, Debug)]
pub struct ChargerSim {
    config: ChargerSimConfig,
    rng: Rng,
    ports: Vec<Port>,
    smoke: bool,
    leakage_ma: Option<f32>,
    mains_loss: bool,
    mains_noise: f32,
    leakage_noise: f32,
    ambient_noise: f32,
}

impl ChargerSim {
    /// A bay with every port empty and every relay off (the node has not
    /// spoken yet); the same `seed` gives the same noise, run after run.
    #[must_use]
    pub fn new(config: ChargerSimConfig, seed: u64) -> Self {
        #[allow(clippy::cast_possible_truncation)] // MAX_PORTS is 12
        let ports = config.ports.clamp(1, MAX_PORTS as u8);
        let config = ChargerSimConfig { ports, ..config };
        ChargerSim {
            config,
            rng: Rng::with_seed(seed),
            ports: (0..ports).map(|_| Port::new(config.ambient_c)).collect(),
            smoke: false,
            leakage_ma: None,
            mains_loss: false,
            mains_noise: 0.0,
            leakage_noise: 0.0,
            ambient_noise: 0.0,
        }
    }

    /// The configuration in force (ports clamped to 1–[`MAX_PORTS`]).
    #[must_use]
    pub fn config(&self) -> &ChargerSimConfig {
        &self.config
    }

    fn port_mut(&mut self, port: u8) -> Option<&mut Port> {
        let i = usize::from(port.checked_sub(1)?);
        self.ports.get_mut(i)
    }

    fn port(&self, port: u8) -> Option<&Port> {
        let i = usize::from(port.checked_sub(1)?);
        self.ports.get(i)
    }

    /// Plugs `battery` into `port` (1-based; replacing what was there), as a
    /// rider would; state of charge clamped to 0–1. No such port: ignored.
    pub fn plug(&mut self, port: u8, battery: Battery) {
        let soc = if battery.soc.is_nan() {
            0.0
        } else {
            battery.soc.clamp(0.0, 1.0)
        };
        let battery = Battery {
            capacity_wh: battery.capacity_wh.max(MIN_CAPACITY_WH),
            soc,
        };
        if let Some(p) = self.port_mut(port) {
            p.battery = Some(battery);
        }
    }

    /// Takes the battery off `port`; the socket then cools to ambient.
    pub fn unplug(&mut self, port: u8) {
        if let Some(p) = self.port_mut(port) {
            p.battery = None;
        }
    }

    /// Drives a port's relay, as the board does from `ChargerNode::relay_on`:
    /// with the relay off no current flows, whatever is plugged or failing.
    pub fn set_relay(&mut self, port: u8, on: bool) {
        if let Some(p) = self.port_mut(port) {
            p.relay = on;
        }
    }

    /// Whether `port`'s relay is on (what the node last drove).
    #[must_use]
    pub fn relay(&self, port: u8) -> bool {
        self.port(port).is_some_and(|p| p.relay)
    }

    /// Starts a fault; it lasts until [`Self::clear`].
    pub fn inject(&mut self, f: ChargerFault) {
        self.set_fault(f, true);
    }

    /// Ends a fault. Clearing a runaway puts the socket back on its normal
    /// thermal model (it cools from wherever it is) and clears its smoke.
    pub fn clear(&mut self, f: ChargerFault) {
        self.set_fault(f, false);
    }

    fn set_fault(&mut self, f: ChargerFault, on: bool) {
        match f {
            ChargerFault::ThermalRunaway { port } => {
                if let Some(p) = self.port_mut(port) {
                    p.runaway = on;
                    p.smouldering &= on;
                }
            }
            ChargerFault::Smoke => self.smoke = on,
            ChargerFault::Leakage { ma } => self.leakage_ma = on.then_some(ma.max(0.0)),
            ChargerFault::OverCurrent { port } => {
                if let Some(p) = self.port_mut(port) {
                    p.over_current = on;
                }
            }
            ChargerFault::AbandonedFull { port } => {
                if let Some(p) = self.port_mut(port) {
                    p.abandoned = on;
                }
            }
            ChargerFault::MainsLoss => self.mains_loss = on,
        }
    }

    /// Whether a fault is injected (matched by kind and port, not by `ma`).
    #[must_use]
    pub fn active(&self, f: ChargerFault) -> bool {
        match f {
            ChargerFault::ThermalRunaway { port } => self.port(port).is_some_and(|p| p.runaway),
            ChargerFault::Smoke => self.smoke,
            ChargerFault::Leakage { .. } => self.leakage_ma.is_some(),
            ChargerFault::OverCurrent { port } => self.port(port).is_some_and(|p| p.over_current),
            ChargerFault::AbandonedFull { port } => self.port(port).is_some_and(|p| p.abandoned),
            ChargerFault::MainsLoss => self.mains_loss,
        }
    }

    /// A uniform sample in ±`amplitude`.
    fn noise(rng: &mut Rng, amplitude: f32) -> f32 {
        (rng.f32() * 2.0 - 1.0) * amplitude
    }

    /// Advances the bay by `dt_ms` of virtual time: charges the batteries on
    /// their curve, moves the socket temperatures, runs the faults, and draws
    /// the next sample's noise. The current over the step is the one at its
    /// start, so steps of a second or so are accurate; the thermal model is
    /// integrated exactly, so long steps stay stable.
    pub fn step(&mut self, dt_ms: u32) {
        #[allow(clippy::cast_precision_loss)] // a step is far below 2^24 ms
        let secs = dt_ms as f32 / 1000.0;
        let mains = !self.mains_loss;
        let ambient = self.config.ambient_c;
        let decay = 1.0 - (-secs / THERMAL_TAU_S).exp();
        for p in &mut self.ports {
            let current = p.current(mains);
            // Charge on the curve (an over-current charger's excess is heat).
            let charging = if current > 0.0 { p.curve_current() } else { 0.0 };
            if let Some(b) = p.battery.as_mut() {
                let wh = charging * CHARGE_VOLTAGE_V * secs / 3600.0;
                b.soc = (b.soc + wh / b.capacity_wh).min(1.0);
            }
            // Socket temperature.
            if p.runaway && p.temp_c >= SELF_SUSTAINING_C {
                p.temp_c = (p.temp_c + BATTERY_RUNAWAY_C_PER_S * secs).min(RUNAWAY_MAX_C);
            } else if p.runaway && current > 0.0 {
                p.temp_c += RUNAWAY_RISE_C_PER_S * secs;
            } else {
                let target = ambient + HEAT_C_PER_A2 * current * current;
                p.temp_c += (target - p.temp_c) * decay;
            }
            if p.runaway && p.temp_c >= SMOKE_FROM_C {
                p.smouldering = true;
            }
            p.current_noise = Self::noise(&mut self.rng, CURRENT_NOISE);
            p.temp_noise = Self::noise(&mut self.rng, TEMP_NOISE_C);
        }
        self.mains_noise = Self::noise(&mut self.rng, MAINS_NOISE_V);
        self.leakage_noise = Self::noise(&mut self.rng, LEAKAGE_NOISE_MA);
        self.ambient_noise = Self::noise(&mut self.rng, TEMP_NOISE_C);
    }

    /// What the node's sensors read now: the state after the last step, with
    /// that step's noise. Relay and plug changes show at once.
    #[must_use]
    pub fn sensors(&self) -> ChargerSensors {
        let mains = !self.mains_loss;
        let ports: Vec<PortSensors> = self
            .ports
            .iter()
            .map(|p| {
                let current = p.current(mains);
                PortSensors {
                    current_a: if current > 0.0 {
                        current * (1.0 + p.current_noise)
                    } else {
                        0.0
                    },
                    temp_c: p.temp_c + p.temp_noise,
                    plugged: p.battery.is_some(),
                }
            })
            .collect();
        let leakage_ma = if !mains {
            0.0
        } else if let Some(ma) = self.leakage_ma {
            ma
        } else {
            let drawing = ports.iter().filter(|p| p.current_a > 0.0).count();
            #[allow(clippy::cast_precision_loss)] // at most 12 ports
            let filters = LEAKAGE_PER_PORT_MA * drawing as f32;
            (LEAKAGE_BASE_MA + filters + self.leakage_noise).clamp(0.0, LEAKAGE_NORMAL_MAX_MA)
        };
        ChargerSensors {
            smoke: self.smoke || self.ports.iter().any(|p| p.smouldering),
            leakage_ma,
            mains_voltage_v: if mains {
                self.config.mains_v + self.mains_noise
            } else {
                0.0
            },
            ambient_temp_c: self.config.ambient_c + self.ambient_noise,
            ports,
        }
    }

    /// The battery on `port` (1-based), with its state of charge now.
    #[must_use]
    pub fn battery(&self, port: u8) -> Option<Battery> {
        self.port(port).and_then(|p| p.battery)
    }
}
