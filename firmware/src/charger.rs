//! The charging bay node (8–12 ports): per-port current and temperature, port
//! relays, the bay's smoke detector, leakage current and mains voltage.
//!
//! Interlocks are local and act in the same step that detects them: no round
//! trip decides whether a hot port stays powered. Every cut-off is latched
//! until a `clear` (from the gateway or a person at the bay) finds its cause
//! gone, and is reported as an event.
//!
//! ```text
//!               ┌──────── clear (cause gone) ◄────────┐
//!               ▼                                      │
//!   [on] ── temp ≥ 65 °C 5 s │ temp ≥ 80 °C │ I > rated 5 s ──► [cut, latched]
//!          │ smoke │ leakage ≥ 30 mA (all ports) │ session > 8 h │ < 30 W for 120 min
//!          │ cut_off command
//! ```

use protocol::modbus::Point;
use protocol::{DeviceClass, EventCode, Metric, Op, PortMetric, PortState, Value};

use crate::alarm::{Alarm, Events, NodeEvent, push};
use crate::config::{Threshold, ms, threshold};
use crate::debounce::Held;
use crate::elevator::device_point;
use crate::hal::Millis;
use crate::registers::{CommandError, RegisterImage};

/// Most ports one node serves.
pub const MAX_PORTS: usize = 12;

/// Thresholds, with the contract's defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChargerConfig {
    /// Rated current per port (contract: 5 A).
    pub rated_current_a: f32,
    /// Over-current for this long cuts the port (contract: 5 s).
    pub over_current_s: f32,
    /// A port at or above this temperature ... (contract: 65 °C)
    pub over_temp_c: f32,
    /// ... for this long is cut off (contract: 5 s).
    pub over_temp_s: f32,
    /// At or above this temperature the port is cut in the same sample.
    pub cutoff_temp_c: f32,
    /// An over-temperature cut-off clears only below this temperature.
    pub clear_temp_c: f32,
    /// Leakage at or above this cuts every port (contract: 30 mA).
    pub leakage_ma: f32,
    /// A session longer than this is cut (contract: 8 h), charging or in
    /// float alike: what matters is how long a battery sits on a powered port.
    pub charge_timeout_s: f32,
    /// Below this power a battery counts as full (contract: 30 W) ...
    pub full_power_w: f32,
    /// ... and after this long full, the port is cut (contract: 120 min).
    pub full_s: f32,
    /// A session starts at this current; below it the port is idle, but a
    /// session already running goes on (a trickle counts as full) until
    /// `unplug_s` of it ends the session.
    pub idle_current_a: f32,
    /// Idle for this long ends a session.
    pub unplug_s: f32,
    /// Mains voltage assumed when the measurement fails.
    pub nominal_voltage_v: f32,
}

impl Default for ChargerConfig {
    fn default() -> Self {
        ChargerConfig {
            rated_current_a: 5.0,
            over_current_s: 5.0,
            over_temp_c: 65.0,
            over_temp_s: 5.0,
            cutoff_temp_c: 80.0,
            clear_temp_c: 55.0,
            leakage_ma: 30.0,
            charge_timeout_s: 8.0 * 3600.0,
            full_power_w: 30.0,
            full_s: 120.0 * 60.0,
            idle_current_a: 0.05,
            unplug_s: 60.0,
            nominal_voltage_v: 220.0,
        }
    }
}

/// The thresholds `set_threshold` may change.
pub static THRESHOLDS: &[Threshold<ChargerConfig>] = &[
    threshold!(rated_current_a, 0.5, 32.0),
    threshold!(over_current_s, 0.0, 60.0),
    threshold!(over_temp_c, 40.0, 90.0),
    threshold!(over_temp_s, 0.0, 60.0),
    threshold!(cutoff_temp_c, 50.0, 120.0),
    threshold!(clear_temp_c, 20.0, 80.0),
    threshold!(leakage_ma, 5.0, 300.0),
    threshold!(charge_timeout_s, 600.0, 86_400.0),
    threshold!(full_power_w, 1.0, 200.0),
    threshold!(full_s, 60.0, 86_400.0),
    threshold!(idle_current_a, 0.01, 1.0),
    threshold!(unplug_s, 1.0, 3600.0),
];

/// One port's sensors in a sample.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PortInputs {
    /// Current drawn; `None` when the sensor failed.
    pub current_a: Option<f32>,
    /// Socket temperature; `None` when the sensor failed.
    pub temp_c: Option<f32>,
}

/// One sample of the bay's sensors.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ChargerInputs {
    /// Smoke detector in alarm.
    pub smoke: bool,
    /// Residual current; `None` when the sensor failed.
    pub leakage_ma: Option<f32>,
    /// Mains voltage; `None` when the sensor failed.
    pub mains_voltage_v: Option<f32>,
    /// Air temperature in the bay.
    pub ambient_temp_c: Option<f32>,
    /// Per port, index 0 is port 1; ports beyond the node's count are ignored.
    pub ports: [PortInputs; MAX_PORTS],
}

/// Why a port is cut off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutReason {
    /// Too hot.
    OverTemperature,
    /// Drew more than its rated current.
    OverCurrent,
    /// Smoke in the bay.
    Smoke,
    /// Leakage current in the bay.
    Leakage,
    /// Session over the time limit.
    ChargeTimeout,
    /// Full battery left on the port.
    FullCutoff,
    /// A `cut_off` command.
    Command,
}

impl CutReason {
    /// The event code reported for the cut, if it has one of its own.
    #[must_use]
    pub const fn code(self) -> Option<EventCode> {
        match self {
            CutReason::OverTemperature => Some(EventCode::OverTemperature),
            CutReason::OverCurrent => Some(EventCode::OverCurrent),
            CutReason::Smoke => Some(EventCode::Smoke),
            CutReason::Leakage => Some(EventCode::Leakage),
            CutReason::ChargeTimeout => Some(EventCode::ChargeTimeout),
            CutReason::FullCutoff => Some(EventCode::FullCutoff),
            CutReason::Command => None,
        }
    }

    const fn bit(self) -> u8 {
        match self {
            CutReason::OverTemperature => 1,
            CutReason::OverCurrent => 2,
            CutReason::Smoke => 3,
            CutReason::Leakage => 4,
            CutReason::ChargeTimeout => 5,
            CutReason::FullCutoff => 6,
            CutReason::Command => 7,
        }
    }

    const fn from_bit(b: u8) -> Option<Self> {
        match b {
            1 => Some(CutReason::OverTemperature),
            2 => Some(CutReason::OverCurrent),
            3 => Some(CutReason::Smoke),
            4 => Some(CutReason::Leakage),
            5 => Some(CutReason::ChargeTimeout),
            6 => Some(CutReason::FullCutoff),
            7 => Some(CutReason::Command),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Session {
    started: Millis,
    energy_wh: f32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Port {
    cut: Option<CutReason>,
    over_temp: Held,
    over_current: Held,
    full: Held,
    idle: Held,
    session: Option<Session>,
    current_a: Option<f32>,
    temp_c: Option<f32>,
    power_w: f32,
}

impl Port {
    fn state(&self, c: &ChargerConfig) -> PortState {
        if self.cut.is_some() {
            PortState::CutOff
        } else if self.current_a.is_none() || self.temp_c.is_none() {
            PortState::Fault
        } else if self.session.is_none() {
            PortState::Idle
        } else if self.power_w < c.full_power_w {
            PortState::Full
        } else {
            PortState::Charging
        }
    }
}

/// The charging bay node's state.
#[derive(Clone, Debug)]
pub struct ChargerNode {
    config: ChargerConfig,
    ports: u8,
    port: [Port; MAX_PORTS],
    smoke: Alarm,
    leakage: Alarm,
    last: ChargerInputs,
    last_step: Option<Millis>,
}

impl ChargerNode {
    /// A bay of `ports` ports (clamped to 1–12), all ports allowed on.
    #[must_use]
    pub fn new(config: ChargerConfig, ports: u8) -> Self {
        #[allow(clippy::cast_possible_truncation)]
        let ports = ports.clamp(1, MAX_PORTS as u8);
        ChargerNode {
            config,
            ports,
            port: [Port::default(); MAX_PORTS],
            smoke: Alarm::new(EventCode::Smoke),
            leakage: Alarm::new(EventCode::Leakage),
            last: ChargerInputs::default(),
            last_step: None,
        }
    }

    /// The configuration in force.
    #[must_use]
    pub fn config(&self) -> &ChargerConfig {
        &self.config
    }

    /// Number of ports.
    #[must_use]
    pub fn port_count(&self) -> u8 {
        self.ports
    }

    /// Changes a threshold by name (`set_threshold`).
    ///
    /// # Errors
    /// [`CommandError::UnknownThreshold`] or [`CommandError::OutOfRange`].
    pub fn set_threshold(&mut self, name: &str, value: f64) -> Result<(), CommandError> {
        crate::config::set_threshold(THRESHOLDS, &mut self.config, name, value)
    }

    /// Whether port `p` (1-based) may be powered: what the board writes to its relay.
    #[must_use]
    pub fn relay_on(&self, p: u8) -> bool {
        self.index(p).is_some_and(|i| self.port[i].cut.is_none())
    }

    /// Why port `p` is cut off, if it is.
    #[must_use]
    pub fn cut_reason(&self, p: u8) -> Option<CutReason> {
        self.index(p).and_then(|i| self.port[i].cut)
    }

    fn index(&self, p: u8) -> Option<usize> {
        (1..=self.ports).contains(&p).then(|| usize::from(p - 1))
    }

    /// The latched cut-offs, 4 bits per port, for the board to keep in
    /// battery-backed RAM: a reset must not re-energise a port cut for heat.
    #[must_use]
    pub fn latches(&self) -> u64 {
        self.port.iter().enumerate().fold(0, |acc, (i, p)| {
            acc | (u64::from(p.cut.map_or(0, CutReason::bit)) << (4 * i))
        })
    }

    /// Restores latches saved with [`Self::latches`] at start-up.
    pub fn restore_latches(&mut self, latches: u64) {
        for (i, p) in self.port.iter_mut().enumerate().take(usize::from(self.ports)) {
            #[allow(clippy::cast_possible_truncation)]
            let bits = ((latches >> (4 * i)) & 0xF) as u8;
            p.cut = CutReason::from_bit(bits);
        }
    }

    /// Cuts a port off (or every port, with `None`) on command.
    ///
    /// # Errors
    /// [`CommandError::NoSuchPort`].
    pub fn cut_off(&mut self, port: Option<u8>) -> Result<(), CommandError> {
        for i in self.targets(port)? {
            let p = &mut self.port[i];
            if p.cut.is_none() {
                p.cut = Some(CutReason::Command);
                p.session = None;
            }
        }
        Ok(())
    }

    /// Clears latched cut-offs on a port (or every port) whose cause is gone.
    /// Returns the events the clears produce.
    ///
    /// # Errors
    /// [`CommandError::NoSuchPort`], or, if any targeted port's cause
    /// remains (those ports stay cut; the others clear), why:
    /// [`CommandError::StillHot`], [`CommandError::SmokePresent`] or
    /// [`CommandError::LeakagePresent`], the first such port's.
    pub fn clear(&mut self, port: Option<u8>) -> Result<Events, CommandError> {
        let (events, result) = self.clear_what_can_be(port);
        result.map(|()| events)
    }

    /// [`Self::clear`], with the events of the ports that did clear even
    /// when others were refused: the node sends those events and acks the
    /// refusal, so a port back in service is never left unreported.
    pub fn clear_what_can_be(&mut self, port: Option<u8>) -> (Events, Result<(), CommandError>) {
        let mut events = Events::new();
        let mut refused = None;
        let c = self.config;
        let smoke = self.last.smoke;
        let leaking = self.last.leakage_ma.is_none_or(|l| l >= c.leakage_ma);
        let targets = match self.targets(port) {
            Ok(t) => t,
            Err(e) => return (events, Err(e)),
        };
        for i in targets {
            let p = &mut self.port[i];
            let Some(reason) = p.cut else { continue };
            let gone = match reason {
                CutReason::OverTemperature => p.temp_c.is_some_and(|t| t < c.clear_temp_c),
                CutReason::Smoke => !smoke,
                CutReason::Leakage => !leaking,
                _ => true,
            };
            if !gone {
                refused = refused.or(Some(match reason {
                    CutReason::OverTemperature => CommandError::StillHot,
                    CutReason::Smoke => CommandError::SmokePresent,
                    CutReason::Leakage => CommandError::LeakagePresent,
                    _ => CommandError::CauseStillPresent,
                }));
                continue;
            }
            p.cut = None;
            p.over_temp = Held::new();
            p.over_current = Held::new();
            p.full = Held::new();
            if let Some(code) = reason.code().filter(|c| c.is_per_port()) {
                let mut e = NodeEvent::new(code, false);
                #[allow(clippy::cast_possible_truncation)]
                let n = i as u8 + 1;
                e.port = Some(n);
                push(&mut events, e);
            }
        }
        (events, refused.map_or(Ok(()), Err))
    }

    fn targets(&self, port: Option<u8>) -> Result<core::ops::Range<usize>, CommandError> {
        match port {
            None => Ok(0..usize::from(self.ports)),
            Some(p) => self.index(p).map(|i| i..i + 1).ok_or(CommandError::NoSuchPort),
        }
    }

    /// Feeds one sample; returns the events to send. Cut-offs decided here take
    /// effect at once: read [`Self::relay_on`] after every step.
    pub fn step(&mut self, now: Millis, input: &ChargerInputs) -> Events {
        let c = self.config;
        let mut events = Events::new();
        let dt_ms = self.last_step.map_or(0, |t| now.since(t));
        self.last_step = Some(now);
        let volts = input.mains_voltage_v.unwrap_or(c.nominal_voltage_v);

        // Bay-level interlocks: smoke and leakage cut every port at once.
        let leaking = input.leakage_ma.is_some_and(|l| l >= c.leakage_ma);
        for (alarm, cond, reason, value) in [
            (&mut self.smoke, input.smoke, CutReason::Smoke, None),
            (&mut self.leakage, leaking, CutReason::Leakage, input.leakage_ma),
        ] {
            if let Some(mut e) = alarm.update(cond, 0, now) {
                if e.active {
                    for p in self.port.iter_mut().take(usize::from(self.ports)) {
                        if p.cut.is_none() {
                            p.cut = Some(reason);
                            p.session = None;
                        }
                    }
                    e.cut_off = true;
                }
                e.value = value;
                push(&mut events, e);
            }
        }

        for (i, (p, inp)) in self
            .port
            .iter_mut()
            .zip(input.ports)
            .take(usize::from(self.ports))
            .enumerate()
        {
            #[allow(clippy::cast_possible_truncation)]
            let n = i as u8 + 1;
            p.current_a = inp.current_a;
            p.temp_c = inp.temp_c;
            let current = if p.cut.is_some() {
                0.0
            } else {
                inp.current_a.unwrap_or(0.0)
            };
            p.power_w = current * volts;
            if let Some(reason) = Self::port_interlocks(&c, p, inp, current, now, dt_ms) {
                p.cut = Some(reason);
                p.session = None;
                let mut e = NodeEvent::new(reason.code().unwrap_or(EventCode::OverTemperature), true);
                e.port = Some(n);
                e.cut_off = true;
                e.value = match reason {
                    CutReason::OverTemperature => inp.temp_c,
                    CutReason::OverCurrent => inp.current_a,
                    _ => Some(p.power_w),
                };
                push(&mut events, e);
            }
        }
        self.last = *input;
        events
    }

    /// One port's interlocks and session bookkeeping; returns a new cut-off.
    fn port_interlocks(
        c: &ChargerConfig,
        p: &mut Port,
        inp: PortInputs,
        current: f32,
        now: Millis,
        dt_ms: u64,
    ) -> Option<CutReason> {
        let temp = inp.temp_c.unwrap_or(f32::NEG_INFINITY);
        let hot = p.over_temp.update(temp >= c.over_temp_c, ms(c.over_temp_s), now);
        let over = p.over_current.update(
            inp.current_a.unwrap_or(0.0) > c.rated_current_a,
            ms(c.over_current_s),
            now,
        );
        if p.cut.is_some() {
            return None;
        }
        if temp >= c.cutoff_temp_c || hot {
            return Some(CutReason::OverTemperature);
        }
        if over {
            return Some(CutReason::OverCurrent);
        }
        // Sessions: start on current, end after `unplug_s` idle.
        let drawing = current >= c.idle_current_a;
        if p.idle.update(!drawing, ms(c.unplug_s), now) {
            p.session = None;
        }
        if drawing && p.session.is_none() {
            p.session = Some(Session {
                started: now,
                energy_wh: 0.0,
            });
            p.full = Held::new();
        }
        let session = p.session.as_mut()?;
        #[allow(clippy::cast_precision_loss)]
        let hours = dt_ms as f32 / 3_600_000.0;
        session.energy_wh += p.power_w * hours;
        if now.since(session.started) >= ms(c.charge_timeout_s) {
            return Some(CutReason::ChargeTimeout);
        }
        // Full is judged on the session, not on `drawing`: a float charger
        // whose trickle dips (or pulses) below `idle_current_a` is a full
        // battery still on a powered port, and such a dip must not restart
        // the 120 min. The gateway reads the same from the port's state 2
        // (`charger.full_cutoff`), so both sides count a trickle as full.
        if p.full.update(p.power_w < c.full_power_w, ms(c.full_s), now) {
            return Some(CutReason::FullCutoff);
        }
        None
    }

    /// Whether a code is raised: bay-level codes by their alarm, per-port codes
    /// while any port is cut for them.
    #[must_use]
    pub fn is_active(&self, code: EventCode) -> bool {
        match code {
            EventCode::Smoke => self.smoke.active(),
            EventCode::Leakage => self.leakage.active(),
            other => self.port.iter().any(|p| p.cut.and_then(CutReason::code) == Some(other)),
        }
    }

    /// Events to resend after a reconnect: raised bay codes and every port
    /// still cut for a per-port code.
    #[must_use]
    pub fn active_events(&self) -> Events {
        let mut events = Events::new();
        for a in [&self.smoke, &self.leakage].into_iter().filter(|a| a.active()) {
            push(&mut events, NodeEvent::new(a.code(), true));
        }
        for (i, p) in self.port.iter().enumerate().take(usize::from(self.ports)) {
            if let Some(code) = p.cut.and_then(CutReason::code).filter(|c| c.is_per_port()) {
                let mut e = NodeEvent::new(code, true);
                #[allow(clippy::cast_possible_truncation)]
                let n = i as u8 + 1;
                e.port = Some(n);
                e.cut_off = true;
                push(&mut events, e);
            }
        }
        events
    }

    /// The bay-level telemetry.
    #[must_use]
    pub fn readings(&self) -> heapless::Vec<(Metric, Value), 4> {
        let i = &self.last;
        let mut out = heapless::Vec::new();
        let _ = out.push((Metric::Smoke, Value::Bool(i.smoke)));
        for (m, v) in [
            (Metric::AmbientTempC, i.ambient_temp_c),
            (Metric::MainsVoltageV, i.mains_voltage_v),
            (Metric::LeakageMa, i.leakage_ma),
        ] {
            if let Some(v) = v {
                let _ = out.push((m, Value::from(v)));
            }
        }
        out
    }

    /// One port's telemetry (1-based `p`).
    #[must_use]
    pub fn port_readings(&self, now: Millis, p: u8) -> heapless::Vec<(PortMetric, Value), 6> {
        let mut out = heapless::Vec::new();
        let Some(i) = self.index(p) else { return out };
        let port = &self.port[i];
        let _ = out.push((PortMetric::State, Value::from(port.state(&self.config))));
        let _ = out.push((PortMetric::PowerW, Value::from(port.power_w)));
        if let Some(a) = port.current_a {
            let _ = out.push((PortMetric::CurrentA, Value::from(a)));
        }
        if let Some(t) = port.temp_c {
            let _ = out.push((PortMetric::TempC, Value::from(t)));
        }
        if let Some(s) = port.session {
            let _ = out.push((PortMetric::EnergyWh, Value::from(s.energy_wh)));
            let secs = u32::try_from(now.since(s.started) / 1000).unwrap_or(u32::MAX);
            let _ = out.push((PortMetric::SessionS, Value::from(secs)));
        }
        out
    }
}

impl RegisterImage for ChargerNode {
    fn class(&self) -> DeviceClass {
        DeviceClass::Charger
    }

    fn ports(&self) -> u8 {
        self.ports
    }

    fn point(&self, point: Point, port: Option<u8>) -> Option<f64> {
        match (point, port) {
            (Point::Metric(_) | Point::Event(_), _) => device_point(&self.readings(), point, |c| self.is_active(c)),
            (Point::PortMetric(m), Some(p)) => self
                .port_readings(self.last_step.unwrap_or_default(), p)
                .iter()
                .find(|(n, _)| *n == m)
                .map(|(_, v)| v.to_number()),
            (Point::Command(Op::CutOff), Some(p)) => Some(f64::from(u8::from(!self.relay_on(p)))),
            _ => None,
        }
    }

    fn command(&mut self, op: Op, port: Option<u8>, _now: Millis) -> Result<(), CommandError> {
        match op {
            Op::CutOff => self.cut_off(port),
            // Modbus has no event channel: the clear events go out with the next
            // MQTT step, or are simply the state change the poller sees.
            Op::Clear => self.clear(port).map(|_| ()),
            _ => Err(CommandError::Unsupported),
        }
    }
}
