//! The elevator plant: a traction car in a hoistway, its doors, a simple
//! collective controller and the faults a node must detect.
//!
//! The model reports what the node's eight contacts and its governor-sheave
//! angle sensor would see (see `docs/firmware.md`, "Sensors and contacts per
//! class"): [`ElevatorSim::contacts`] gives the logical contacts and
//! [`ElevatorSim::rope_travel_m`] the signed rope travel the sheave turns by.
//! Some faults only the car's controller can know (its safety chain, its
//! drive, its floor count, its service mode), so [`ElevatorSim::controller`]
//! gives what a vendor controller reports, in the contract's canonical
//! metrics: the source for the four GB/T 24476 codes a contact node cannot
//! raise (01 safety circuit, 06 run-time limiter, 07 position lost, 08
//! restart prevented).
//! Everything is pure and deterministic: time only advances through
//! [`ElevatorSim::step`], and the only randomness ([`ElevatorSim::traffic`])
//! comes from a generator seeded in [`ElevatorSim::new`].
//!
//! ```text
//!   idle ──call──► travelling ──level reached──► doors opening ──► open (dwell)
//!    ▲                 (trapezoidal profile,                          │
//!    │                  exact levelling stop)                         ▼
//!    └───────────────────── doors closed ◄──────────────────────── closing
//! ```

use serde::{Deserialize, Serialize};

/// The longest integration sub-step while the car moves, so the kinematics
/// (and the sheave a speed sensor sees) stay smooth whatever `dt` the caller
/// steps by.
const SUBSTEP_MS: u32 = 10;
/// How close to a goal counts as there: far below anything a sensor resolves,
/// far above `f64` rounding over a building's height.
const EPS_M: f64 = 1e-6;
/// Unintended movement (brake failure) creeps at this speed.
const CREEP_MPS: f64 = 0.3;
/// Unintended movement stops this far from where it started.
const CREEP_LIMIT_M: f64 = 1.0;
/// Overspeed drives the car to this multiple of rated speed.
const OVERSPEED_RATIO: f64 = 1.4;
/// Passengers [`ElevatorSim::traffic`] lets into the car at once.
const TRAFFIC_CAPACITY: usize = 8;
/// Passengers [`ElevatorSim::traffic`] lets wait in the building at once.
const TRAFFIC_MAX_WAITING: usize = 16;
/// Mean time between new passengers in [`ElevatorSim::traffic`]: a modest,
/// ordinary day.
const TRAFFIC_MEAN_ARRIVAL_MS: f64 = 45_000.0;
/// Deceleration of an emergency stop (the safety chain opened and the brake
/// dropped on a moving car): about a quarter of g, three times the normal
/// profile's 0.8 m/s², so a car at rated speed stops within about 0.6 m —
/// while staying well under the 1 g a brake stop may put on passengers.
const ESTOP_DECEL_MPS2: f64 = 2.5;
/// What one passenger weighs, for the controller's load reading.
const PASSENGER_KG: f32 = 75.0;
/// The car's rated load: a 1000 kg (13-person) residential car.
const RATED_LOAD_KG: f32 = 1000.0;

/// The controller's run-time limiter (GB 7588 §12.10): the drive may run at
/// most this long without the floor count changing before the controller
/// stops it and takes the car out of service. Public because a test or a
/// scenario that waits for it should name the figure, not repeat it; the
/// limiter trips on the first sub-step *after* the run reached it, so the
/// controller still reports the drive running at exactly 45 s.
pub const RUN_TIME_LIMIT_MS: u32 = 45_000;

/// The building and the machine: what the plant needs to know to move the car
/// like the real one (defaults: a 12-floor residential lift).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ElevatorConfig {
    /// Floors served, numbered `1..=floors` (at least one is always assumed).
    pub floors: u8,
    /// Distance between two floor levels, metres.
    pub floor_height_m: f32,
    /// Contract speed: the normal profile never exceeds it.
    pub rated_speed_mps: f32,
    /// Acceleration and deceleration of the normal profile, m/s².
    pub accel_mps2: f32,
    /// Half-width of the door (levelling) zone around each level: the magnet
    /// vane's reach, and the only place doors may open.
    pub zone_m: f32,
    /// Time for the doors to open fully, or to close fully.
    pub door_move_ms: u32,
    /// Time the doors stay open before closing (restarted by boarding).
    pub dwell_ms: u32,
    /// Distance past an end floor's level at which its final limit trips.
    pub overtravel_m: f32,
}

impl Default for ElevatorConfig {
    fn default() -> Self {
        ElevatorConfig {
            floors: 12,
            floor_height_m: 3.0,
            rated_speed_mps: 1.75,
            accel_mps2: 0.8,
            zone_m: 0.075,
            door_move_ms: 2500,
            dwell_ms: 4000,
            overtravel_m: 0.3,
        }
    }
}

/// Where the car doors are in their cycle: only `Closed` makes the door
/// contact (关门到位), so a door that is moving counts as open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Door {
    /// Closed and locked: the car may move.
    Closed,
    /// Opening (takes `door_move_ms`).
    Opening,
    /// Fully open, counting down the dwell.
    Open,
    /// Closing (takes `door_move_ms`); reopens on a call at this floor.
    Closing,
}

/// A fault to inject: each gives the plant the signature a node must detect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ElevatorFault {
    /// The car stops between floors (mid-way, outside any door zone) with the
    /// doors closed and ignores calls: with people inside, they are trapped.
    StuckBetweenFloors,
    /// The doors stay closed on arrival: the car waits in the zone.
    DoorWontOpen,
    /// The doors stay open: the car cannot depart.
    DoorWontClose,
    /// The car runs up to 1.4 × rated speed while travelling.
    Overspeed,
    /// The next trip to the top floor runs past it to the final limit (冲顶).
    OvertravelTop,
    /// The next trip to the bottom floor runs past it to the final limit (蹲底).
    OvertravelBottom,
    /// Stopped at a floor with the doors open, the car creeps away (开门走车).
    UnintendedMovement,
    /// Main power lost: the car stops where it is, the doors freeze.
    PowerCut,
    /// An e-bike comes into the car at the next door opening.
    EbikeBoarding,
    /// Someone holds the alarm button.
    AlarmPressed,
    /// The safety chain opens (a landing-door contact, the governor switch):
    /// the drive stops and the brake drops at once wherever the car is (an
    /// emergency stop at 2.5 m/s²), and the car stays out of service — calls
    /// ignored, doors as they are — until cleared.
    SafetyCircuitBreak,
    /// On the next trip the ropes slip on the sheave: the drive runs while
    /// the car (and so the governor rope) stands still, until the run-time
    /// limiter trips after 45 s and holds the car out of service until
    /// cleared.
    TractionLoss,
    /// The controller's floor count freezes at its present value while the
    /// car keeps serving calls normally: only what the controller reports is
    /// wrong.
    PositionLost,
    /// Once the car next stands at a floor with its doors closed (after its
    /// door cycle, if it is arriving), the controller will not start it
    /// again: out of service, calls ignored, doors closed, until cleared.
    RestartPrevented,
    /// The doors close but their lock does not confirm: the controller will
    /// not start, reopens them after a second and tries again, for as long
    /// as the car has a call to serve (the door contact makes and breaks
    /// every cycle: a door-close fault, GB/T 24476 02).
    DoorLockFault,
}

/// How long a door whose lock does not confirm stays closed before the
/// controller reopens it (`DoorLockFault`).
pub const DOOR_LOCK_RETRY_MS: u32 = 1000;

impl ElevatorFault {
    /// Every fault, so a scenario or test can sweep them.
    pub const ALL: [ElevatorFault; 15] = [
        ElevatorFault::StuckBetweenFloors,
        ElevatorFault::DoorWontOpen,
        ElevatorFault::DoorWontClose,
        ElevatorFault::Overspeed,
        ElevatorFault::OvertravelTop,
        ElevatorFault::OvertravelBottom,
        ElevatorFault::UnintendedMovement,
        ElevatorFault::PowerCut,
        ElevatorFault::EbikeBoarding,
        ElevatorFault::AlarmPressed,
        ElevatorFault::SafetyCircuitBreak,
        ElevatorFault::TractionLoss,
        ElevatorFault::PositionLost,
        ElevatorFault::RestartPrevented,
        ElevatorFault::DoorLockFault,
    ];

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

// The injected faults are one bit each of a `u16`: a seventeenth fault must
// widen the set before `bit` overflows.
const _: () = assert!(ElevatorFault::ALL.len() <= u16::BITS as usize);

/// The car as physics sees it, for assertions and for the peripherals that
/// need more than contacts.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ElevatorState {
    /// Car height above floor 1's level, metres (negative below it).
    pub position_m: f32,
    /// Car speed, m/s, positive up.
    pub speed_mps: f32,
    /// The nearest floor, `1..=floors`.
    pub floor: u8,
    /// The doors.
    pub door: Door,
    /// People in the car.
    pub passengers: u8,
    /// The car is not at rest (any speed at all, however small).
    pub moving: bool,
}

/// The logical state of the node's eight contacts (true = the condition
/// holds): no electrical inversion, the wiring layer adds that.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElevatorContacts {
    /// Doors closed and locked.
    pub door_closed: bool,
    /// Car within `zone_m` of a floor level.
    pub door_zone: bool,
    /// Someone in the car.
    pub occupied: bool,
    /// The alarm button is pressed.
    pub alarm_button: bool,
    /// The e-bike detector sees a bike in the car.
    pub ebike: bool,
    /// Main power present.
    pub power_ok: bool,
    /// The top final limit switch is tripped.
    pub top_limit: bool,
    /// The bottom final limit switch is tripped.
    pub bottom_limit: bool,
}

/// What the car's controller knows, in the contract's canonical metrics: what
/// a vendor controller reports over its monitoring port, and what a plain
/// sensor node wired to it would send. It differs from the contacts where
/// the controller's own belief differs from the car's physics: its drive
/// runs while the ropes slip, its floor count can freeze, and it decides the
/// service mode.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ControllerView {
    /// The drive is running, or the car moves without it (a brake that lets
    /// go, a car braking to a stop): the controller's run signal and its
    /// encoder together. True while the ropes slip (`TractionLoss`) though
    /// the car stands.
    pub running: bool,
    /// Direction of travel: 0 none, 1 up, 2 down; the drive's direction
    /// while the ropes slip.
    pub direction: u8,
    /// The controller's floor count: the nearest floor, `floors + 1` above
    /// the top landing's door zone and 0 below the bottom one's (so an
    /// overtravel leaves the range), frozen under `PositionLost`.
    pub floor: u8,
    /// Doors closed and locked.
    pub door_closed: bool,
    /// Car inside a landing's door (unlocking) zone.
    pub door_zone: bool,
    /// Someone in the car.
    pub occupied: bool,
    /// GB/T 24476 service mode: 0 out of service (no power, safety chain
    /// open, run-time limiter tripped, restart prevented), 1 normal; any
    /// other only as set at the switch (`ElevatorSim::set_service_mode`). A car stuck between floors stays 1: the
    /// controller has not decided to stop it (that is what
    /// `RestartPrevented` models), so the stuck car shows only as trapped
    /// and stopped outside the door zone.
    pub service_mode: u8,
    /// Car speed, absolute, m/s: 0 while the ropes slip.
    pub speed_mps: f32,
    /// Contract speed, m/s.
    pub rated_speed_mps: f32,
    /// Load as a share of the rated 1000 kg, at 75 kg a passenger: 0 to 100
    /// and beyond (the car does not refuse an overload).
    pub load_pct: f32,
    /// Main power present.
    pub power_ok: bool,
    /// The safety chain is closed: false under `SafetyCircuitBreak` and
    /// while a final limit switch (part of the chain) is tripped.
    pub safety_circuit_ok: bool,
    /// The alarm button is pressed.
    pub alarm_button: bool,
    /// The e-bike detector sees a bike in the car.
    pub ebike_detected: bool,
}

/// What the drive does during one sub-step.
#[derive(Clone, Copy, Debug)]
enum Drive {
    /// Decelerate at the normal rate to rest, wherever that is.
    Brake,
    /// Travel to `goal` (metres) no faster than `vmax`, braking at `decel`
    /// so the car comes to rest exactly there.
    Toward { goal: f64, vmax: f64, decel: f64 },
    /// The brake dropped on a running car: decelerate at `decel` (harder
    /// than the profile) to rest, wherever that is.
    Stop { decel: f64 },
    /// The drive turns the sheave but the ropes slip: the car stays put.
    Slip,
}

/// A trip whose ropes slip on the sheave (`TractionLoss`): the direction the
/// controller drives in (1 up, -1 down) and how long its drive has run with
/// the floor count standing still, for the run-time limiter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slip {
    dir: i8,
    run_ms: u32,
}

/// An unintended movement in progress: the brake lets the car drift towards
/// `goal`, 1 m from the level it stood at, where it comes to rest.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Creep {
    goal: f64,
}

/// A passenger [`ElevatorSim::traffic`] created: waiting at `from` or riding
/// to `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Trip {
    from: u8,
    to: u8,
}

/// The elevator plant: the car, its doors and controller, injected faults,
/// and a seeded generator for [`ElevatorSim::traffic`].
#[derive(Clone, Debug)]
pub struct ElevatorSim {
    config: ElevatorConfig,
    rng: fastrand::Rng,
    elapsed_ms: u64,
    /// Car position, metres above floor 1's level.
    pos: f64,
    /// Car speed, m/s, positive up.
    speed: f64,
    /// Signed rope travel since the start.
    travel: f64,
    door: Door,
    /// Progress of an opening or closing door, ms.
    door_ms: u32,
    /// Dwell left while the doors are open, ms.
    dwell_left_ms: u32,
    /// Someone wants the doors open here (arrival, or a call at this floor).
    open_request: bool,
    passengers: u8,
    /// Registered calls, indexed by floor number (index 0 unused).
    calls: Vec<bool>,
    /// Direction of travel of the collective: 1 up, -1 down, 0 none.
    dir: i8,
    /// The floor the car is travelling to.
    target: Option<u8>,
    /// A call came in (or the car set off) since the last look for a nearer
    /// stop on the way: a call the car could not brake for stays so.
    recheck: bool,
    /// Injected faults, one bit each.
    faults: u16,
    /// Where a stuck car comes to rest, and how hard it brakes to get there.
    stuck_goal: Option<(f64, f64)>,
    creep: Option<Creep>,
    ebike_inside: bool,
    waiting: Vec<Trip>,
    riders: Vec<Trip>,
    /// The drive runs while the ropes slip (`TractionLoss`).
    slip: Option<Slip>,
    /// The run-time limiter tripped: out of service until `TractionLoss` is
    /// cleared (the limiter's manual reset).
    limited: bool,
    /// `RestartPrevented` took hold at a floor: out of service until cleared.
    held: bool,
    /// The controller's floor count while `PositionLost` freezes it.
    frozen_floor: Option<u8>,
    /// How long the doors have stood closed since they closed without
    /// their lock confirming (`DoorLockFault`); `None` when locked.
    unlocked_ms: Option<u32>,
    /// The controller's door-open-hold input (the node's door-hold relay).
    door_hold: bool,
    /// A service mode set at the controller's switch (a technician's
    /// inspection key, a fire-return key); `None`: the plant's own 0 or 1.
    mode_switch: Option<u8>,
}

impl ElevatorSim {
    /// A car at rest at floor 1's level, doors closed, empty, no calls and no
    /// faults; `seed` makes [`ElevatorSim::traffic`] reproducible.
    #[must_use]
    pub fn new(config: ElevatorConfig, seed: u64) -> Self {
        let config = ElevatorConfig {
            floors: config.floors.max(1),
            ..config
        };
        ElevatorSim {
            config,
            rng: fastrand::Rng::with_seed(seed),
            elapsed_ms: 0,
            pos: 0.0,
            speed: 0.0,
            travel: 0.0,
            door: Door::Closed,
            door_ms: 0,
            dwell_left_ms: 0,
            open_request: false,
            passengers: 0,
            calls: vec![false; usize::from(config.floors) + 1],
            dir: 0,
            target: None,
            recheck: false,
            faults: 0,
            stuck_goal: None,
            creep: None,
            ebike_inside: false,
            waiting: Vec::new(),
            riders: Vec::new(),
            slip: None,
            limited: false,
            held: false,
            frozen_floor: None,
            unlocked_ms: None,
            door_hold: false,
            mode_switch: None,
        }
    }

    /// Sets the service mode the controller reports (GB/T 24476: 2
    /// inspection, 3 fire return, ...), as a key switch in the machine room
    /// or on the car top does; `None` hands it back to the plant's own
    /// judgement (0 or 1). Only the report changes: the car still goes where
    /// it is called, which is how a technician drives it in inspection.
    pub fn set_service_mode(&mut self, mode: Option<u8>) {
        self.mode_switch = mode;
    }

    /// The controller's door-open-hold input, driven by a node's door-hold
    /// output (`hold_doors`). While it is on, a car standing at a landing
    /// opens its doors and keeps them open (the dwell stops), so it does not
    /// leave; a car on its way opens them when it arrives. Off, the dwell
    /// runs out as usual and the car serves its calls.
    pub fn set_door_hold(&mut self, on: bool) {
        self.door_hold = on;
    }

    /// Whether the door-open-hold input is on.
    #[must_use]
    pub fn door_hold(&self) -> bool {
        self.door_hold
    }

    /// The configuration in force (floors at least 1).
    #[must_use]
    pub fn config(&self) -> &ElevatorConfig {
        &self.config
    }

    /// Virtual time stepped so far, ms: the only clock the plant has.
    #[must_use]
    pub fn elapsed_ms(&self) -> u64 {
        self.elapsed_ms
    }

    /// A car or hall call to `floor` (ignored outside `1..=floors`, while
    /// stuck, without power and while the controller holds the car out of
    /// service). Calls are served in collective order: the nearest ahead in
    /// the direction of travel, then the other way. A call at the floor the
    /// car stands at opens (or reopens) the doors.
    pub fn call(&mut self, floor: u8) {
        if floor == 0 || floor > self.config.floors {
            return;
        }
        if self.active(ElevatorFault::StuckBetweenFloors) || self.active(ElevatorFault::PowerCut) || self.halted() {
            return;
        }
        // A slipping car stands at its floor, but its controller believes it
        // is under way: the call waits like any other.
        if self.at_rest() && self.level_floor() == Some(floor) && self.creep.is_none() && self.slip.is_none() {
            self.open_request = true;
        } else {
            self.calls[usize::from(floor)] = true;
            self.recheck = true;
        }
    }

    /// `n` people step in; only through open doors (else ignored). Restarts
    /// the dwell, as people in the doorway do.
    pub fn board(&mut self, n: u8) {
        if self.door == Door::Open && n > 0 {
            self.passengers = self.passengers.saturating_add(n);
            self.dwell_left_ms = self.config.dwell_ms;
        }
    }

    /// `n` people step out; only through open doors (else ignored). Restarts
    /// the dwell.
    pub fn alight(&mut self, n: u8) {
        if self.door == Door::Open && n > 0 {
            self.passengers = self.passengers.saturating_sub(n);
            self.dwell_left_ms = self.config.dwell_ms;
        }
    }

    /// Injects a fault; it stays until [`ElevatorSim::clear`].
    pub fn inject(&mut self, f: ElevatorFault) {
        if f == ElevatorFault::PositionLost && !self.active(f) {
            self.frozen_floor = Some(self.counted_floor());
        }
        self.faults |= f.bit();
    }

    /// Clears a fault; the car recovers on its own (re-levels, resumes its
    /// calls, lets the bike out, returns to service with its count right).
    pub fn clear(&mut self, f: ElevatorFault) {
        self.faults &= !f.bit();
        match f {
            ElevatorFault::StuckBetweenFloors => self.stuck_goal = None,
            ElevatorFault::UnintendedMovement => self.creep = None,
            ElevatorFault::EbikeBoarding => self.ebike_inside = false,
            ElevatorFault::TractionLoss => {
                // Grip restored and the limiter reset: the trip goes ahead.
                self.slip = None;
                self.limited = false;
            }
            ElevatorFault::PositionLost => self.frozen_floor = None,
            ElevatorFault::RestartPrevented => self.held = false,
            _ => {}
        }
    }

    /// Whether a fault is injected.
    #[must_use]
    pub fn active(&self, f: ElevatorFault) -> bool {
        self.faults & f.bit() != 0
    }

    /// Advances virtual time by `dt_ms`: kinematics, doors and controller, in
    /// sub-steps of at most 10 ms while the car moves (or may start to) and
    /// up to the doors' next transition otherwise, so the outcome barely
    /// depends on how the caller slices time.
    pub fn step(&mut self, dt_ms: u32) {
        let mut left = dt_ms;
        while left > 0 {
            self.sense();
            let h = left.min(self.horizon_ms());
            self.tick(h);
            left -= h;
        }
    }

    /// The car now.
    #[must_use]
    pub fn state(&self) -> ElevatorState {
        let (position_m, speed_mps) = self.pos_speed_f32();
        ElevatorState {
            position_m,
            speed_mps,
            floor: self.nearest_floor(),
            door: self.door,
            passengers: self.passengers,
            moving: self.speed != 0.0,
        }
    }

    /// What the node's contacts see now.
    #[must_use]
    pub fn contacts(&self) -> ElevatorContacts {
        ElevatorContacts {
            door_closed: self.door == Door::Closed,
            door_zone: (self.pos - self.level(self.nearest_floor())).abs() <= f64::from(self.config.zone_m),
            occupied: self.passengers > 0,
            alarm_button: self.active(ElevatorFault::AlarmPressed),
            ebike: self.active(ElevatorFault::EbikeBoarding) && self.ebike_inside,
            power_ok: !self.active(ElevatorFault::PowerCut),
            top_limit: self.top_limit(),
            bottom_limit: self.bottom_limit(),
        }
    }

    /// What the car's controller reports now (see [`ControllerView`]).
    #[must_use]
    pub fn controller(&self) -> ControllerView {
        let k = self.contacts();
        let dir = match self.slip {
            Some(s) => s.dir,
            None if self.speed > 0.0 => 1,
            None if self.speed < 0.0 => -1,
            None => 0,
        };
        let out_of_service = self.active(ElevatorFault::PowerCut) || self.halted() || !self.safety_chain_ok();
        ControllerView {
            running: self.slip.is_some() || self.speed != 0.0,
            direction: match dir {
                1 => 1,
                -1 => 2,
                _ => 0,
            },
            floor: self.frozen_floor.unwrap_or_else(|| self.counted_floor()),
            door_closed: k.door_closed,
            door_zone: k.door_zone,
            occupied: k.occupied,
            service_mode: self.mode_switch.unwrap_or(u8::from(!out_of_service)),
            speed_mps: self.state().speed_mps.abs(),
            rated_speed_mps: self.config.rated_speed_mps,
            load_pct: f32::from(self.passengers) * PASSENGER_KG / RATED_LOAD_KG * 100.0,
            power_ok: k.power_ok,
            safety_circuit_ok: self.safety_chain_ok(),
            alarm_button: k.alarm_button,
            ebike_detected: k.ebike,
        }
    }

    /// Cumulative signed rope travel since the start, metres (positive up):
    /// what the governor sheave turns by, so an angle sensor reads
    /// `travel / (π · 0.3 m)` turns.
    #[must_use]
    pub fn rope_travel_m(&self) -> f64 {
        self.travel
    }

    /// An ordinary day's passengers for the next `dt_ms` (call it before each
    /// [`ElevatorSim::step`] of the same `dt_ms`; it does not advance time).
    /// At a modest rate (one newcomer every 45 s on average, at most one per
    /// call, many to or from floor 1) people appear at a floor and press the
    /// hall call; when the doors are open at their floor they board and press
    /// their destination, and they alight there. Calls that a fault dropped
    /// are pressed again. With no fault injected it never produces a fault
    /// signature: the car only stops at levels, doors only open at rest at a
    /// level, nobody stays shut in a standing car, speed never exceeds rated
    /// and the car never passes an end floor; the controller stays in
    /// service with its chain closed and its count right.
    pub fn traffic(&mut self, dt_ms: u32) {
        let floors = self.config.floors;
        if let (Door::Open, Some(here)) = (self.door, self.level_floor().filter(|_| self.at_rest())) {
            let before = self.riders.len();
            self.riders.retain(|t| t.to != here);
            let out = before - self.riders.len();
            if out > 0 {
                self.alight(u8::try_from(out).unwrap_or(u8::MAX));
            }
            let mut i = 0;
            while i < self.waiting.len() {
                if self.waiting[i].from == here && self.riders.len() < TRAFFIC_CAPACITY {
                    let t = self.waiting.remove(i);
                    self.board(1);
                    self.riders.push(t);
                    self.call(t.to);
                } else {
                    i += 1;
                }
            }
        }
        // Press again what is not registered (a call a fault dropped), except
        // at the floor the car stands at: there the doors have just served it
        // (or the car was full), and pressing would hold the car forever.
        let standing_at = self.level_floor().filter(|_| self.at_rest());
        let pending: Vec<u8> = self
            .waiting
            .iter()
            .map(|t| t.from)
            .chain(self.riders.iter().map(|t| t.to))
            .collect();
        for f in pending {
            if !self.calls[usize::from(f)] && standing_at != Some(f) {
                self.call(f);
            }
        }
        if floors < 2 || self.waiting.len() >= TRAFFIC_MAX_WAITING {
            return;
        }
        let p = (f64::from(dt_ms) / TRAFFIC_MEAN_ARRIVAL_MS).min(1.0);
        if self.rng.f64() >= p {
            return;
        }
        let from = if self.rng.f64() < 0.4 {
            1
        } else {
            self.rng.u8(1..=floors)
        };
        let to = if from != 1 && self.rng.f64() < 0.6 {
            1
        } else {
            // Any other floor.
            let t = self.rng.u8(1..floors);
            if t >= from { t + 1 } else { t }
        };
        self.waiting.push(Trip { from, to });
        self.call(from);
    }

    // ---- internals ----

    /// The level of `floor`, metres above floor 1's.
    fn level(&self, floor: u8) -> f64 {
        f64::from(floor.max(1) - 1) * f64::from(self.config.floor_height_m)
    }

    fn top(&self) -> f64 {
        self.level(self.config.floors)
    }

    fn top_limit(&self) -> bool {
        self.pos >= self.top() + f64::from(self.config.overtravel_m) - EPS_M
    }

    fn bottom_limit(&self) -> bool {
        self.pos <= -f64::from(self.config.overtravel_m) + EPS_M
    }

    /// The safety chain is closed: not broken on purpose, and no final limit
    /// (a switch in the chain) tripped.
    fn safety_chain_ok(&self) -> bool {
        !self.active(ElevatorFault::SafetyCircuitBreak) && !self.top_limit() && !self.bottom_limit()
    }

    /// The controller holds the car where it is: the drive off, calls
    /// ignored, the doors left as they are. (A power cut does the same but
    /// is not the controller's doing: it brakes at the normal rate.)
    fn halted(&self) -> bool {
        self.active(ElevatorFault::SafetyCircuitBreak) || self.limited || self.held
    }

    /// Deceleration of an emergency stop: never gentler than twice the
    /// configured profile's, should that already be steep.
    fn estop_decel(&self) -> f64 {
        ESTOP_DECEL_MPS2.max(2.0 * self.accel())
    }

    /// The floor the controller counts the car at (before any freeze): the
    /// nearest, or one beyond the range once the car has left an end
    /// landing's door zone outwards, which only an overtravel does.
    fn counted_floor(&self) -> u8 {
        let zone = f64::from(self.config.zone_m);
        if self.pos > self.top() + zone {
            self.config.floors.saturating_add(1)
        } else if self.pos < -zone {
            0
        } else {
            self.nearest_floor()
        }
    }

    fn accel(&self) -> f64 {
        f64::from(self.config.accel_mps2)
    }

    #[allow(clippy::cast_possible_truncation)] // reported to sensors as f32 by design
    fn pos_speed_f32(&self) -> (f32, f32) {
        (self.pos as f32, self.speed as f32)
    }

    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // clamped to 0..=floors-1 first
    fn nearest_floor(&self) -> u8 {
        let h = f64::from(self.config.floor_height_m);
        let top_index = f64::from(self.config.floors - 1);
        let index = if h > 0.0 {
            (self.pos / h).round().clamp(0.0, top_index)
        } else {
            0.0
        };
        index as u8 + 1
    }

    /// The floor whose level the car is exactly at, if any.
    fn level_floor(&self) -> Option<u8> {
        let f = self.nearest_floor();
        ((self.pos - self.level(f)).abs() < EPS_M).then_some(f)
    }

    fn at_rest(&self) -> bool {
        self.speed == 0.0
    }

    /// How long the next tick may last: fine sub-steps while the car moves or
    /// may start to, otherwise up to the doors' next transition (so their
    /// timing is exact), or any length for a car with nothing to do.
    fn horizon_ms(&self) -> u32 {
        let c = &self.config;
        if !self.at_rest() {
            return SUBSTEP_MS;
        }
        if self.active(ElevatorFault::PowerCut) || self.halted() {
            // A standing car without power, or held by its controller, does
            // nothing until a fault clears: the whole step at once.
            return u32::MAX;
        }
        if let Some(s) = self.slip {
            // Nothing moves while the ropes slip: only the limiter's time.
            return RUN_TIME_LIMIT_MS.saturating_sub(s.run_ms).max(1);
        }
        if self.target.is_some() || self.creep.is_some() || self.stuck_goal.is_some() {
            return SUBSTEP_MS;
        }
        // A parked car starts to open its doors or to travel (to a call, or
        // back to a level it was pushed off).
        let may_start = self.open_request || self.calls.iter().any(|&c| c) || self.level_floor().is_none();
        let door = match self.door {
            Door::Closed if self.unlocked_ms.is_some() => {
                DOOR_LOCK_RETRY_MS.saturating_sub(self.unlocked_ms.unwrap_or(0)).max(1)
            }
            Door::Closed => u32::MAX,
            Door::Opening | Door::Closing => c.door_move_ms.saturating_sub(self.door_ms),
            Door::Open if self.active(ElevatorFault::DoorWontClose) || self.door_hold => u32::MAX,
            Door::Open => self.dwell_left_ms,
        };
        let door = door.max(1);
        if may_start && self.door == Door::Closed {
            SUBSTEP_MS
        } else {
            door
        }
    }

    fn vmax(&self) -> f64 {
        let rated = f64::from(self.config.rated_speed_mps);
        if self.active(ElevatorFault::Overspeed) {
            rated * OVERSPEED_RATIO
        } else {
            rated
        }
    }

    /// Where a trip to `floor` ends: its level, or past it to the final
    /// limit when an overtravel fault is injected.
    fn goal_of(&self, floor: u8) -> f64 {
        let ot = f64::from(self.config.overtravel_m);
        if floor == self.config.floors && self.active(ElevatorFault::OvertravelTop) {
            self.top() + ot
        } else if floor == 1 && self.active(ElevatorFault::OvertravelBottom) {
            -ot
        } else {
            self.level(floor)
        }
    }

    /// Braking distance from the current speed at the normal rate.
    fn braking_m(&self) -> f64 {
        self.speed * self.speed / (2.0 * self.accel())
    }

    /// What faults do on their own at a floor with the doors open (the
    /// e-bike rolls in, the brake lets go), and what the controller decides
    /// before it drives: the run-time limiter trips, a prevented restart
    /// takes hold once the car stands at a floor with its doors shut.
    fn sense(&mut self) {
        if let Some(s) = self.slip
            && s.run_ms >= RUN_TIME_LIMIT_MS
        {
            self.slip = None;
            self.limited = true;
        }
        let at_floor = self.at_rest() && self.level_floor().is_some();
        if self.active(ElevatorFault::RestartPrevented)
            && !self.held
            && at_floor
            && self.door == Door::Closed
            && !self.open_request
            && self.creep.is_none()
            && self.slip.is_none()
        {
            self.held = true;
        }
        if self.active(ElevatorFault::EbikeBoarding) && at_floor && self.door == Door::Open {
            self.ebike_inside = true;
        }
        if self.door_hold && at_floor && self.door == Door::Closed && self.creep.is_none() && self.slip.is_none() {
            self.open_request = true;
        }
        if self.active(ElevatorFault::UnintendedMovement)
            && self.creep.is_none()
            && at_floor
            && self.door != Door::Closed
        {
            self.start_creep();
        }
    }

    fn tick(&mut self, h_ms: u32) {
        self.elapsed_ms += u64::from(h_ms);
        let powered = !self.active(ElevatorFault::PowerCut);
        let drive = self.plan(powered);
        if self.integrate(drive, f64::from(h_ms) / 1000.0) {
            self.arrived();
        }
        if let (Drive::Slip, Some(s)) = (drive, self.slip.as_mut()) {
            s.run_ms = s.run_ms.saturating_add(h_ms);
        }
        if powered && !self.halted() {
            self.door_tick(h_ms);
        }
    }

    /// A brake failure: the car creeps away from the level it stands at,
    /// down when loaded (heavier than the counterweight), up when empty, and
    /// always into the hoistway at the end floors.
    fn start_creep(&mut self) {
        let up = if self.level_floor() == Some(1) {
            true
        } else if self.level_floor() == Some(self.config.floors) {
            false
        } else {
            self.passengers == 0
        };
        let dirn = if up { 1.0 } else { -1.0 };
        self.creep = Some(Creep {
            goal: self.pos + dirn * CREEP_LIMIT_M,
        });
        self.target = None;
    }

    fn plan(&mut self, powered: bool) -> Drive {
        let a = self.accel();
        // A drive that stops ends a slip with it: the limiter starts afresh
        // on the next attempt.
        if !powered {
            self.slip = None;
            return Drive::Brake;
        }
        if self.active(ElevatorFault::SafetyCircuitBreak) {
            // The open chain drops the brake on the moving car.
            self.slip = None;
            return Drive::Stop {
                decel: self.estop_decel(),
            };
        }
        if self.halted() {
            return Drive::Brake;
        }
        if let Some(c) = self.creep {
            return Drive::Toward {
                goal: c.goal,
                vmax: CREEP_MPS,
                decel: a,
            };
        }
        if (self.active(ElevatorFault::OvertravelTop) && self.top_limit())
            || (self.active(ElevatorFault::OvertravelBottom) && self.bottom_limit())
        {
            // The safety chain is open until the fault is cleared (reset).
            return Drive::Brake;
        }
        if self.active(ElevatorFault::StuckBetweenFloors) {
            self.target = None;
            self.slip = None;
            if self.stuck_goal.is_none() && !self.at_rest() {
                self.stuck_goal = Some(self.stuck_stop());
            }
            return match self.stuck_goal {
                Some((goal, decel)) => Drive::Toward {
                    goal,
                    vmax: self.vmax(),
                    decel,
                },
                None => Drive::Brake,
            };
        }
        if self.door != Door::Closed || self.open_request || self.unlocked_ms.is_some() {
            return Drive::Brake;
        }
        if self.slip.is_some() {
            return Drive::Slip;
        }
        if self.target.is_none() && self.at_rest() {
            self.choose_next();
            if self.open_request {
                return Drive::Brake;
            }
        } else if self.target.is_some() && self.at_rest() {
            // Setting off again (after a power cut): every call may be in reach.
            self.recheck = true;
        } else if self.target.is_some() && self.recheck {
            self.recheck = false;
            self.retarget();
        }
        match self.target {
            Some(f) if self.at_rest() && self.active(ElevatorFault::TractionLoss) => {
                // Setting off without grip: the drive runs, the car stays.
                let dir = if self.goal_of(f) > self.pos { 1 } else { -1 };
                self.slip = Some(Slip { dir, run_ms: 0 });
                Drive::Slip
            }
            Some(f) => Drive::Toward {
                goal: self.goal_of(f),
                vmax: self.vmax(),
                decel: a,
            },
            None => Drive::Brake,
        }
    }

    /// Where a car that sticks while moving comes to rest, and how hard it
    /// brakes: the first point mid-way between two floors ahead, so it halts
    /// outside any door zone, braking up to twice the normal rate (a brake
    /// drop) to make it; failing that, the next mid-point at the normal rate.
    /// Past the last mid-point before an end floor, it halts half-way to that
    /// floor's zone, braking as hard as that takes.
    fn stuck_stop(&self) -> (f64, f64) {
        let a = self.accel();
        let h = f64::from(self.config.floor_height_m);
        let dirn = self.speed.signum();
        let v2 = self.speed * self.speed;
        let mut ahead: Vec<f64> = (1..self.config.floors)
            .map(|f| self.level(f) + h / 2.0)
            .filter(|m| dirn * (m - self.pos) > 1e-3)
            .collect();
        if dirn < 0.0 {
            ahead.reverse();
        }
        let need = |m: f64| v2 / (2.0 * dirn * (m - self.pos));
        if let Some(&m) = ahead.first()
            && need(m) <= 2.0 * a
        {
            return (m, a.max(need(m)));
        }
        if let Some(&m) = ahead.iter().find(|&&m| need(m) <= a) {
            return (m, a);
        }
        let end = if dirn > 0.0 { self.top() } else { 0.0 };
        let room = (dirn * (end - self.pos) - f64::from(self.config.zone_m)) / 2.0;
        if room > 1e-3 {
            (self.pos + dirn * room, a.max(v2 / (2.0 * room)))
        } else {
            (self.pos + dirn * self.braking_m(), a)
        }
    }

    /// At rest with the doors closed: the next call in collective order, or
    /// re-levelling to the nearest floor when stopped between floors.
    fn choose_next(&mut self) {
        let here = self.level_floor();
        if let Some(f) = here
            && self.calls[usize::from(f)]
        {
            self.calls[usize::from(f)] = false;
            self.open_request = true;
            return;
        }
        if !self.calls.iter().any(|&c| c) {
            if here.is_some() {
                self.dir = 0;
                return;
            }
            // Stopped between floors after a fault: bring the people to the
            // nearest floor.
            let nearest = usize::from(self.nearest_floor());
            self.calls[nearest] = true;
        }
        let pos = self.pos;
        let called = (1..=self.config.floors).filter(|&f| self.calls[usize::from(f)]);
        let up = called.clone().find(|&f| self.level(f) > pos + EPS_M);
        let down = called.rev().find(|&f| self.level(f) < pos - EPS_M);
        let pick = match self.dir {
            1 => up.or(down),
            -1 => down.or(up),
            _ => match (up, down) {
                (Some(u), Some(d)) => {
                    if self.level(u) - pos <= pos - self.level(d) {
                        Some(u)
                    } else {
                        Some(d)
                    }
                }
                (u, d) => u.or(d),
            },
        };
        if let Some(f) = pick {
            self.target = Some(f);
            self.dir = if self.goal_of(f) > pos { 1 } else { -1 };
        }
    }

    /// While travelling: stop instead at a call that came in ahead, if the
    /// car can still brake for it at the normal rate.
    fn retarget(&mut self) {
        let Some(t) = self.target else { return };
        let dirn = self.speed.signum();
        let goal = self.goal_of(t);
        let brake = self.braking_m();
        let pos = self.pos;
        let better = (1..=self.config.floors).filter(|&f| {
            let d = dirn * (self.level(f) - pos);
            self.calls[usize::from(f)] && f != t && d >= brake + 1e-3 && d < dirn * (goal - pos)
        });
        let nearest = if dirn > 0.0 { better.min() } else { better.max() };
        if let Some(f) = nearest {
            self.target = Some(f);
        }
    }

    /// One sub-step of kinematics; true when the car came to rest at the
    /// drive's goal.
    fn integrate(&mut self, drive: Drive, dt: f64) -> bool {
        let a = self.accel();
        let before = self.pos;
        let arrived = match drive {
            Drive::Brake => {
                self.brake(a, dt);
                false
            }
            Drive::Stop { decel } => {
                self.brake(decel, dt);
                false
            }
            // The sheave turns under the ropes; car, ropes and governor stand.
            Drive::Slip => false,
            Drive::Toward { goal, vmax, decel } => {
                let d = goal - self.pos;
                let dist = d.abs();
                let s = d.signum();
                let u = self.speed * s;
                if dist < EPS_M && self.speed.abs() < 1e-3 {
                    self.pos = goal;
                    self.speed = 0.0;
                    true
                } else if u < 0.0 {
                    // Moving away from the goal: stop first.
                    self.brake(a, dt);
                    false
                } else {
                    let profile = (2.0 * decel * dist).sqrt();
                    let cruise = if u > vmax {
                        (u - a * dt).max(vmax)
                    } else {
                        (u + a * dt).min(vmax)
                    };
                    let next = cruise.min(profile);
                    let moved = u.midpoint(next) * dt;
                    if moved >= dist - EPS_M {
                        self.pos = goal;
                        self.speed = 0.0;
                        true
                    } else {
                        self.pos += s * moved;
                        self.speed = s * next;
                        false
                    }
                }
            }
        };
        self.travel += self.pos - before;
        arrived
    }

    /// Decelerates at `a` towards rest over `dt`.
    fn brake(&mut self, a: f64, dt: f64) {
        let u = self.speed.abs();
        if u == 0.0 {
            return;
        }
        let s = self.speed.signum();
        let next = (u - a * dt).max(0.0);
        let moved = if next == 0.0 && a > 0.0 {
            u * u / (2.0 * a)
        } else {
            u.midpoint(next) * dt
        };
        self.pos += s * moved;
        self.speed = s * next;
    }

    /// The car came to rest at its drive's goal.
    fn arrived(&mut self) {
        if self.creep.is_some() {
            return;
        }
        if self.stuck_goal.take().is_some() {
            return;
        }
        let Some(f) = self.target.take() else { return };
        if self.level_floor() == Some(f) {
            self.calls[usize::from(f)] = false;
            self.open_request = true;
        }
        // Otherwise it ran past an end floor: the call stays for the
        // recovery trip once the fault is cleared.
    }

    fn door_tick(&mut self, h_ms: u32) {
        let c = self.config;
        let held_open = self.active(ElevatorFault::DoorWontClose) || self.creep.is_some() || self.door_hold;
        match self.door {
            Door::Closed => {
                // A lock that did not confirm: the controller reopens after
                // a second and tries again. Off a level (the brake let the
                // car creep before the doors shut) it cannot open them, and
                // an open request it can never serve would hold the car for
                // good once the lock is mended: it keeps waiting instead, and
                // re-levels as soon as the lock confirms.
                if let Some(ms) = self.unlocked_ms {
                    let ms = ms.saturating_add(h_ms);
                    self.unlocked_ms = Some(ms);
                    if !self.active(ElevatorFault::DoorLockFault) {
                        self.unlocked_ms = None;
                    } else if ms >= DOOR_LOCK_RETRY_MS {
                        if self.level_floor().is_some() {
                            self.unlocked_ms = None;
                            self.open_request = true;
                        } else {
                            self.unlocked_ms = Some(0);
                        }
                    }
                }
                let may_open = self.at_rest()
                    && self.slip.is_none()
                    && self.level_floor().is_some()
                    && !self.active(ElevatorFault::StuckBetweenFloors)
                    && !self.active(ElevatorFault::DoorWontOpen);
                if self.open_request && may_open {
                    self.door = Door::Opening;
                    self.door_ms = 0;
                }
            }
            Door::Opening => {
                self.door_ms = self.door_ms.saturating_add(h_ms);
                if self.door_ms >= c.door_move_ms {
                    self.door = Door::Open;
                    self.dwell_left_ms = c.dwell_ms;
                    self.open_request = false;
                }
            }
            Door::Open => {
                if self.open_request {
                    self.open_request = false;
                    self.dwell_left_ms = c.dwell_ms;
                }
                if !held_open {
                    self.dwell_left_ms = self.dwell_left_ms.saturating_sub(h_ms);
                    if self.dwell_left_ms == 0 {
                        self.door = Door::Closing;
                        self.door_ms = 0;
                    }
                }
            }
            Door::Closing => {
                if self.open_request || held_open {
                    // Reverse from where the panels are.
                    self.door = Door::Opening;
                    self.door_ms = c.door_move_ms.saturating_sub(self.door_ms);
                } else {
                    self.door_ms = self.door_ms.saturating_add(h_ms);
                    if self.door_ms >= c.door_move_ms {
                        self.door = Door::Closed;
                        if self.active(ElevatorFault::DoorLockFault) && self.calls.iter().any(|c| *c) {
                            self.unlocked_ms = Some(0);
                        }
                    }
                }
            }
        }
    }
}
