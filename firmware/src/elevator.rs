//! The elevator node: door, zone, occupancy, alarm button, e-bike detector and
//! power contacts, terminal limit switches, and car speed from the governor
//! sheave. It detects what a node can see of the contract's elevator codes.
//!
//! ```text
//!             occupied ∧ ¬running ∧ door closed
//!   idle ──────────────────────────────────────► holding ── 20 s outside zone ──► trapped
//!     ▲        (any of them stops)                   │      60 s inside zone
//!     └──────────────────────────────────────────────┘
//! ```
//!
//! A node fitted with a door-hold output (a relay to the controller's
//! door-open-hold input, `door_hold_output`) holds the car's doors open on a
//! `hold_doors` command, so the car cannot leave its landing while an e-bike
//! is in it (阻梯), until `hold_doors` with `hold: false` or, whatever
//! happens to the gateway or the link, `door_hold_max_s` (10 min) later.

use protocol::modbus::Point;
use protocol::{DeviceClass, EventCode, Metric, Op, Value};

use crate::alarm::{Alarm, Events, push};
use crate::config::{Threshold, ms, threshold};
use crate::hal::Millis;
use crate::registers::{CommandError, RegisterImage};

/// Thresholds, with the contract's defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ElevatorConfig {
    /// Rated (contract) speed of the car.
    pub rated_speed_mps: f32,
    /// Lowest floor number (negative for basements).
    pub lowest_floor: f32,
    /// Number of floors served.
    pub floors: f32,
    /// Speed above which the car counts as running.
    pub moving_mps: f32,
    /// Overspeed at this multiple of rated speed (contract: 1.2).
    pub overspeed_ratio: f32,
    /// Trapped after this long outside the door zone (contract: 20 s).
    pub trapped_outside_zone_s: f32,
    /// Trapped after this long inside the door zone (contract: 60 s).
    pub trapped_in_zone_s: f32,
    /// Stopped outside the door zone for this long (contract: 45 s).
    pub stopped_outside_zone_s: f32,
    /// Consecutive samples running with doors open (contract: 2).
    pub door_open_samples: f32,
    /// Power missing for this long before `power_cut` (debounce).
    pub power_cut_s: f32,
    /// The longest a `hold_doors` keeps the doors open: the hold then ends by
    /// itself, so a gateway that went away (or forgot) cannot take a lift
    /// out of service for good. Counted from the hold that started it.
    pub door_hold_max_s: f32,
    /// The node has a door-hold output wired (board configuration, not a
    /// threshold): without it `hold_doors` is refused (`no door-hold output`).
    pub door_hold_output: bool,
}

impl Default for ElevatorConfig {
    fn default() -> Self {
        ElevatorConfig {
            rated_speed_mps: 1.75,
            lowest_floor: 1.0,
            floors: 18.0,
            moving_mps: 0.05,
            overspeed_ratio: 1.2,
            trapped_outside_zone_s: 20.0,
            trapped_in_zone_s: 60.0,
            stopped_outside_zone_s: 45.0,
            door_open_samples: 2.0,
            power_cut_s: 1.0,
            door_hold_max_s: 600.0,
            door_hold_output: false,
        }
    }
}

/// The thresholds `set_threshold` may change.
pub static THRESHOLDS: &[Threshold<ElevatorConfig>] = &[
    threshold!(rated_speed_mps, 0.1, 10.0),
    threshold!(moving_mps, 0.01, 0.5),
    threshold!(overspeed_ratio, 1.05, 2.0),
    threshold!(trapped_outside_zone_s, 5.0, 600.0),
    threshold!(trapped_in_zone_s, 5.0, 600.0),
    threshold!(stopped_outside_zone_s, 5.0, 600.0),
    threshold!(door_open_samples, 1.0, 10.0),
    threshold!(power_cut_s, 0.0, 60.0),
    threshold!(door_hold_max_s, 10.0, 1800.0),
];

/// One sample of an elevator's sensors, already debounced and converted.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ElevatorInputs {
    /// Doors closed and locked (关门到位).
    pub door_closed: bool,
    /// Car inside the door (levelling) zone.
    pub door_zone: bool,
    /// Someone in the car.
    pub occupied: bool,
    /// Alarm button pressed.
    pub alarm_button: bool,
    /// E-bike detector contact.
    pub ebike: bool,
    /// Main power present.
    pub power_ok: bool,
    /// Top final limit switch tripped.
    pub top_limit: bool,
    /// Bottom final limit switch tripped.
    pub bottom_limit: bool,
    /// Car speed, positive up; `None` when the speed sensor failed.
    pub speed_mps: Option<f32>,
}

/// The elevator node's state.
#[derive(Clone, Debug)]
pub struct ElevatorNode {
    config: ElevatorConfig,
    last: ElevatorInputs,
    running: bool,
    direction: u8,
    floor: f32,
    was_running: bool,
    door_open_running: u32,
    run_count: u32,
    run_ms: u64,
    last_step: Option<Millis>,
    trapped: Alarm,
    stopped_outside: Alarm,
    door_open_while_running: Alarm,
    unintended_movement: Alarm,
    overspeed: Alarm,
    overtravel_top: Alarm,
    overtravel_bottom: Alarm,
    power_cut: Alarm,
    alarm_button: Alarm,
    ebike: Alarm,
    /// Since when the doors are held (`hold_doors`), while they are.
    held_since: Option<Millis>,
}

impl ElevatorNode {
    /// A node at the lowest floor, nothing detected yet.
    #[must_use]
    pub fn new(config: ElevatorConfig) -> Self {
        ElevatorNode {
            config,
            last: ElevatorInputs {
                door_closed: true,
                power_ok: true,
                ..ElevatorInputs::default()
            },
            running: false,
            direction: 0,
            floor: config.lowest_floor,
            was_running: false,
            door_open_running: 0,
            run_count: 0,
            run_ms: 0,
            last_step: None,
            trapped: Alarm::new(EventCode::Trapped),
            stopped_outside: Alarm::new(EventCode::StoppedOutsideDoorZone),
            door_open_while_running: Alarm::new(EventCode::DoorOpenWhileRunning),
            unintended_movement: Alarm::new(EventCode::UnintendedMovement),
            overspeed: Alarm::new(EventCode::Overspeed),
            overtravel_top: Alarm::new(EventCode::OvertravelTop),
            overtravel_bottom: Alarm::new(EventCode::OvertravelBottom),
            power_cut: Alarm::new(EventCode::PowerCut),
            alarm_button: Alarm::new(EventCode::AlarmButton),
            ebike: Alarm::new(EventCode::EbikeInCar),
            held_since: None,
        }
    }

    /// The configuration in force.
    #[must_use]
    pub fn config(&self) -> &ElevatorConfig {
        &self.config
    }

    /// Changes a threshold by name (`set_threshold`).
    ///
    /// # Errors
    /// [`CommandError::UnknownThreshold`] or [`CommandError::OutOfRange`].
    pub fn set_threshold(&mut self, name: &str, value: f64) -> Result<(), CommandError> {
        crate::config::set_threshold(THRESHOLDS, &mut self.config, name, value)
    }

    /// `hold_doors`: holds the doors open (`hold`) or releases them. A hold
    /// while already holding changes nothing, its time limit included (the
    /// limit bounds one continuous hold; to extend it the gateway releases
    /// and holds again, a decision it records). A release while not holding
    /// is done already.
    ///
    /// # Errors
    /// [`CommandError::NoDoorHold`] on a node without the output.
    pub fn hold_doors(&mut self, hold: bool, now: Millis) -> Result<(), CommandError> {
        if !self.config.door_hold_output {
            return Err(CommandError::NoDoorHold);
        }
        if !hold {
            self.held_since = None;
        } else if self.held_since.is_none() {
            self.held_since = Some(now);
        }
        Ok(())
    }

    /// Whether the door-hold output is on. Read it after every step and
    /// command (`ClassIo::apply` does).
    #[must_use]
    pub fn door_hold(&self) -> bool {
        self.held_since.is_some()
    }

    /// Feeds one sample; returns the events to send.
    pub fn step(&mut self, now: Millis, input: &ElevatorInputs) -> Events {
        let c = self.config;
        let mut events = Events::new();
        let dt = self.last_step.map_or(0, |t| now.since(t));
        self.last_step = Some(now);
        // The hold's safety limit, judged on the node's own clock.
        if self.held_since.is_some_and(|t| now.since(t) >= ms(c.door_hold_max_s)) {
            self.held_since = None;
        }
        // Without a speed reading, keep the last judgement of motion rather
        // than guess: a failed sensor must not raise `trapped`.
        if let Some(speed) = input.speed_mps {
            self.running = speed.abs() >= c.moving_mps;
            self.direction = match (self.running, speed > 0.0) {
                (false, _) => 0,
                (true, true) => 1,
                (true, false) => 2,
            };
        }
        if self.was_running {
            self.run_ms += dt;
        }
        if self.running && !self.was_running {
            self.run_count = self.run_count.wrapping_add(1);
        }
        // Floor tracking: one floor per entry into a door zone while moving,
        // clamped to the building (so driving to a terminal re-synchronises).
        if self.running && input.door_zone && !self.last.door_zone {
            let step = if self.direction == 1 { 1.0 } else { -1.0 };
            let top = c.lowest_floor + c.floors - 1.0;
            // max/min, not clamp: clamp can panic on a bad range, and pulls in float formatting.
            self.floor = (self.floor + step).min(top).max(c.lowest_floor);
        }
        self.was_running = self.running;

        let standing = !self.running;
        let trapped_hold = if input.door_zone {
            c.trapped_in_zone_s
        } else {
            c.trapped_outside_zone_s
        };
        let open_running = self.running && !input.door_closed;
        self.door_open_running = if open_running {
            self.door_open_running.saturating_add(1)
        } else {
            0
        };
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let open_samples = c.door_open_samples.max(1.0) as u32;
        let speed = input.speed_mps.unwrap_or(0.0).abs();
        let checks = [
            (
                &mut self.trapped,
                input.occupied && standing && input.door_closed,
                ms(trapped_hold),
                None,
            ),
            (
                &mut self.stopped_outside,
                standing && !input.door_zone,
                ms(c.stopped_outside_zone_s),
                None,
            ),
            (
                &mut self.door_open_while_running,
                self.door_open_running >= open_samples,
                0,
                None,
            ),
            (&mut self.unintended_movement, open_running && !input.door_zone, 0, None),
            (
                &mut self.overspeed,
                speed >= c.overspeed_ratio * c.rated_speed_mps,
                0,
                Some(speed),
            ),
            (&mut self.overtravel_top, input.top_limit, 0, None),
            (&mut self.overtravel_bottom, input.bottom_limit, 0, None),
            (&mut self.power_cut, !input.power_ok, ms(c.power_cut_s), None),
            (&mut self.alarm_button, input.alarm_button, 0, None),
            (&mut self.ebike, input.ebike, 0, None),
        ];
        for (alarm, cond, hold, value) in checks {
            if let Some(mut e) = alarm.update(cond, hold, now) {
                e.value = value;
                push(&mut events, e);
            }
        }
        self.last = *input;
        events
    }

    /// The current telemetry, for a `data` message.
    #[must_use]
    pub fn readings(&self) -> heapless::Vec<(Metric, Value), 12> {
        let i = &self.last;
        #[allow(clippy::cast_precision_loss)]
        let run_hours = self.run_ms as f64 / 3_600_000.0;
        let mut out = heapless::Vec::new();
        let all = [
            (Metric::Running, Value::Bool(self.running)),
            (Metric::Direction, Value::from(u32::from(self.direction))),
            (Metric::Floor, Value::from(self.floor)),
            (Metric::DoorZone, Value::Bool(i.door_zone)),
            (Metric::DoorClosed, Value::Bool(i.door_closed)),
            (Metric::Occupied, Value::Bool(i.occupied)),
            (Metric::RatedSpeedMps, Value::from(self.config.rated_speed_mps)),
            (Metric::PowerOk, Value::Bool(i.power_ok)),
            (Metric::RunCount, Value::from(self.run_count)),
            (Metric::RunHours, Value::Number(run_hours)),
        ];
        for r in all {
            let _ = out.push(r);
        }
        if let Some(speed) = i.speed_mps {
            let _ = out.push((Metric::SpeedMps, Value::from(speed)));
        }
        out
    }

    /// Whether a code is raised on the node.
    #[must_use]
    pub fn is_active(&self, code: EventCode) -> bool {
        self.alarms().iter().any(|a| a.code() == code && a.active())
    }

    fn alarms(&self) -> [&Alarm; 10] {
        [
            &self.trapped,
            &self.stopped_outside,
            &self.door_open_while_running,
            &self.unintended_movement,
            &self.overspeed,
            &self.overtravel_top,
            &self.overtravel_bottom,
            &self.power_cut,
            &self.alarm_button,
            &self.ebike,
        ]
    }

    /// Events to resend after a reconnect: every code still raised.
    #[must_use]
    pub fn active_events(&self) -> Events {
        crate::alarm::raised(self.alarms())
    }
}

impl RegisterImage for ElevatorNode {
    fn class(&self) -> DeviceClass {
        DeviceClass::Elevator
    }

    fn ports(&self) -> u8 {
        0
    }

    fn point(&self, point: Point, _port: Option<u8>) -> Option<f64> {
        device_point(&self.readings(), point, |code| self.is_active(code))
    }

    fn command(&mut self, _op: Op, _port: Option<u8>, _now: Millis) -> Result<(), CommandError> {
        Err(CommandError::Unsupported)
    }
}

/// A device-level point from a node's readings and raised codes.
pub(crate) fn device_point(
    readings: &[(Metric, Value)],
    point: Point,
    is_active: impl Fn(EventCode) -> bool,
) -> Option<f64> {
    match point {
        Point::Metric(m) => readings.iter().find(|(n, _)| *n == m).map(|(_, v)| v.to_number()),
        Point::Event(code) => Some(f64::from(u8::from(is_active(code)))),
        _ => None,
    }
}
