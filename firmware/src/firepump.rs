//! The fire pump room node: pump run feedback, fault and auto-mode contacts,
//! start signal, outlet and network pressure (4–20 mA), tank level, main and
//! backup power, jockey pump. It detects fail-to-start, low pressure, low tank,
//! not in auto and power faults, and runs and records weekly self-tests (巡检).
//!
//! ```text
//!  self_test cmd ──► test output on ──► pump runs? ──► pressure ≥ min? ──► record ok
//!        │              (run_s)            │ no, within start_s          │ no
//!        └── cabinet's own 巡检 input ──────┴─────────────────────────────┴──► record failed
//! ```

use protocol::modbus::Point;
use protocol::{DeviceClass, EventCode, Metric, Op, Value};

use crate::alarm::{Alarm, Events, NodeEvent, push};
use crate::config::{Threshold, ms, threshold};
use crate::elevator::device_point;
use crate::hal::Millis;
use crate::registers::{CommandError, RegisterImage};

/// Thresholds, with the contract's defaults where it has them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FirepumpConfig {
    /// Start signal without the pump running for this long (GB 50974: 2 min).
    pub fail_to_start_s: f32,
    /// Network pressure below this is low (contract: 0.07 MPa; 0.10 for
    /// sprinklers and class-1 high-rise).
    pub low_pressure_mpa: f32,
    /// ... for this long (contract: 30 s).
    pub low_pressure_s: f32,
    /// Tank below this level is low (site-specific; default 1.0 m).
    pub low_tank_m: f32,
    /// ... for this long.
    pub low_tank_s: f32,
    /// Out of auto-start for this long (contract: 60 s).
    pub not_in_auto_s: f32,
    /// A supply missing for this long is a power fault.
    pub power_fault_s: f32,
    /// A self-test holds the test output for this long.
    pub self_test_run_s: f32,
    /// During a self-test the pump must run within this long.
    pub self_test_start_s: f32,
    /// ... and build at least this outlet pressure.
    pub self_test_min_mpa: f32,
}

impl Default for FirepumpConfig {
    fn default() -> Self {
        FirepumpConfig {
            fail_to_start_s: 120.0,
            low_pressure_mpa: 0.07,
            low_pressure_s: 30.0,
            low_tank_m: 1.0,
            low_tank_s: 30.0,
            not_in_auto_s: 60.0,
            power_fault_s: 5.0,
            self_test_run_s: 120.0,
            self_test_start_s: 30.0,
            self_test_min_mpa: 0.1,
        }
    }
}

/// The thresholds `set_threshold` may change.
pub static THRESHOLDS: &[Threshold<FirepumpConfig>] = &[
    threshold!(fail_to_start_s, 10.0, 600.0),
    threshold!(low_pressure_mpa, 0.01, 2.0),
    threshold!(low_pressure_s, 1.0, 600.0),
    threshold!(low_tank_m, 0.05, 50.0),
    threshold!(low_tank_s, 1.0, 600.0),
    threshold!(not_in_auto_s, 1.0, 3600.0),
    threshold!(power_fault_s, 0.0, 600.0),
    threshold!(self_test_run_s, 10.0, 1800.0),
    threshold!(self_test_start_s, 5.0, 300.0),
    threshold!(self_test_min_mpa, 0.01, 2.0),
];

/// One sample of the pump room's sensors, debounced and converted.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FirepumpInputs {
    /// Main pump run feedback.
    pub pump_running: bool,
    /// Cabinet fault contact.
    pub pump_fault: bool,
    /// Cabinet in auto-start.
    pub auto_mode: bool,
    /// Start signal present.
    pub start_signal: bool,
    /// Jockey pump running.
    pub jockey_running: bool,
    /// Main supply present.
    pub main_power_ok: bool,
    /// Backup supply present.
    pub backup_power_ok: bool,
    /// The cabinet runs its own self-test (巡检).
    pub cabinet_self_test: bool,
    /// Outlet pressure; `None` on a loop fault.
    pub outlet_pressure_mpa: Option<f32>,
    /// Network pressure at the most unfavourable point; `None` on a loop fault.
    pub network_pressure_mpa: Option<f32>,
    /// Tank level; `None` on a loop fault.
    pub tank_level_m: Option<f32>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct SelfTestRun {
    started: Millis,
    by_node: bool,
    pump_started: bool,
    max_outlet_mpa: f32,
}

/// The fire pump node's state.
#[derive(Clone, Debug)]
pub struct FirepumpNode {
    config: FirepumpConfig,
    last: FirepumpInputs,
    run: Option<SelfTestRun>,
    self_tests: u32,
    last_self_test_ok: Option<bool>,
    fail_to_start: Alarm,
    pump_fault: Alarm,
    low_pressure: Alarm,
    low_tank: Alarm,
    not_in_auto: Alarm,
    main_power: Alarm,
    backup_power: Alarm,
}

impl FirepumpNode {
    /// A node with nothing detected yet.
    #[must_use]
    pub fn new(config: FirepumpConfig) -> Self {
        FirepumpNode {
            config,
            last: FirepumpInputs {
                auto_mode: true,
                main_power_ok: true,
                backup_power_ok: true,
                ..Default::default()
            },
            run: None,
            self_tests: 0,
            last_self_test_ok: None,
            fail_to_start: Alarm::new(EventCode::PumpFailToStart),
            pump_fault: Alarm::new(EventCode::PumpFault),
            low_pressure: Alarm::new(EventCode::LowPressure),
            low_tank: Alarm::new(EventCode::LowTankLevel),
            not_in_auto: Alarm::new(EventCode::NotInAuto),
            main_power: Alarm::new(EventCode::MainPowerFault),
            backup_power: Alarm::new(EventCode::BackupPowerFault),
        }
    }

    /// The configuration in force.
    #[must_use]
    pub fn config(&self) -> &FirepumpConfig {
        &self.config
    }

    /// Changes a threshold by name (`set_threshold`).
    ///
    /// # Errors
    /// [`CommandError::UnknownThreshold`] or [`CommandError::OutOfRange`].
    pub fn set_threshold(&mut self, name: &str, value: f64) -> Result<(), CommandError> {
        crate::config::set_threshold(THRESHOLDS, &mut self.config, name, value)
    }

    /// Starts a self-test run (the `self_test` command): the node drives its
    /// test output for `self_test_run_s` and records the outcome.
    ///
    /// # Errors
    /// [`CommandError::SelfTestRunning`] if a run is already going,
    /// [`CommandError::NotInAuto`] if the cabinet is not in auto (a test
    /// would not prove anything).
    pub fn start_self_test(&mut self, now: Millis) -> Result<(), CommandError> {
        if self.run.is_some() {
            return Err(CommandError::SelfTestRunning);
        }
        if !self.last.auto_mode {
            return Err(CommandError::NotInAuto);
        }
        self.run = Some(SelfTestRun {
            started: now,
            by_node: true,
            pump_started: false,
            max_outlet_mpa: 0.0,
        });
        Ok(())
    }

    /// Whether the node's test output (to the cabinet's remote-test input) is on.
    #[must_use]
    pub fn test_output(&self) -> bool {
        self.run.is_some_and(|r| r.by_node)
    }

    /// Feeds one sample; returns the events to send.
    pub fn step(&mut self, now: Millis, input: &FirepumpInputs) -> Events {
        let c = self.config;
        let mut events = Events::new();
        let low_pressure = input.network_pressure_mpa.is_some_and(|p| p < c.low_pressure_mpa);
        let low_tank = input.tank_level_m.is_some_and(|l| l < c.low_tank_m);
        let checks = [
            (
                &mut self.fail_to_start,
                input.start_signal && !input.pump_running,
                ms(c.fail_to_start_s),
                None,
            ),
            (&mut self.pump_fault, input.pump_fault, 0, None),
            (
                &mut self.low_pressure,
                low_pressure,
                ms(c.low_pressure_s),
                input.network_pressure_mpa,
            ),
            (&mut self.low_tank, low_tank, ms(c.low_tank_s), input.tank_level_m),
            (&mut self.not_in_auto, !input.auto_mode, ms(c.not_in_auto_s), None),
            (&mut self.main_power, !input.main_power_ok, ms(c.power_fault_s), None),
            (
                &mut self.backup_power,
                !input.backup_power_ok,
                ms(c.power_fault_s),
                None,
            ),
        ];
        for (alarm, cond, hold, value) in checks {
            if let Some(mut e) = alarm.update(cond, hold, now) {
                e.value = value;
                push(&mut events, e);
            }
        }
        self.step_self_test(now, input, &mut events);
        self.last = *input;
        events
    }

    fn step_self_test(&mut self, now: Millis, input: &FirepumpInputs, events: &mut Events) {
        let c = self.config;
        if self.run.is_none() && input.cabinet_self_test && !self.last.cabinet_self_test {
            self.run = Some(SelfTestRun {
                started: now,
                by_node: false,
                pump_started: false,
                max_outlet_mpa: 0.0,
            });
        }
        let Some(run) = self.run.as_mut() else { return };
        let elapsed = now.since(run.started);
        if input.pump_running && elapsed <= ms(c.self_test_start_s) {
            run.pump_started = true;
        }
        if let Some(p) = input.outlet_pressure_mpa {
            run.max_outlet_mpa = run.max_outlet_mpa.max(p);
        }
        let over = if run.by_node {
            elapsed >= ms(c.self_test_run_s)
        } else {
            !input.cabinet_self_test
        };
        if over {
            let ok = run.pump_started && run.max_outlet_mpa >= c.self_test_min_mpa;
            let mut e = NodeEvent::new(EventCode::SelfTest, true);
            e.ok = Some(ok);
            e.value = Some(run.max_outlet_mpa);
            e.duration_s = Some(u32::try_from(elapsed / 1000).unwrap_or(u32::MAX));
            push(events, e);
            self.self_tests = self.self_tests.wrapping_add(1);
            self.last_self_test_ok = Some(ok);
            self.run = None;
        }
    }

    /// Runs recorded since boot, and whether the last one passed.
    #[must_use]
    pub fn self_tests(&self) -> (u32, Option<bool>) {
        (self.self_tests, self.last_self_test_ok)
    }

    /// The current telemetry, for a `data` message.
    #[must_use]
    pub fn readings(&self) -> heapless::Vec<(Metric, Value), 12> {
        let i = &self.last;
        let mut out = heapless::Vec::new();
        let flags = [
            (Metric::PumpRunning, i.pump_running),
            (Metric::PumpFault, i.pump_fault),
            (Metric::AutoMode, i.auto_mode),
            (Metric::StartSignal, i.start_signal),
            (Metric::JockeyRunning, i.jockey_running),
            (Metric::MainPowerOk, i.main_power_ok),
            (Metric::BackupPowerOk, i.backup_power_ok),
            (Metric::SelfTestRunning, self.run.is_some() || i.cabinet_self_test),
        ];
        for (m, b) in flags {
            let _ = out.push((m, Value::Bool(b)));
        }
        let analog = [
            (Metric::OutletPressureMpa, i.outlet_pressure_mpa),
            (Metric::NetworkPressureMpa, i.network_pressure_mpa),
            (Metric::TankLevelM, i.tank_level_m),
        ];
        for (m, v) in analog {
            if let Some(v) = v {
                let _ = out.push((m, Value::from(v)));
            }
        }
        out
    }

    fn alarms(&self) -> [&Alarm; 7] {
        [
            &self.fail_to_start,
            &self.pump_fault,
            &self.low_pressure,
            &self.low_tank,
            &self.not_in_auto,
            &self.main_power,
            &self.backup_power,
        ]
    }

    /// Whether a code is raised on the node.
    #[must_use]
    pub fn is_active(&self, code: EventCode) -> bool {
        self.alarms().iter().any(|a| a.code() == code && a.active())
    }

    /// Events to resend after a reconnect: every code still raised.
    #[must_use]
    pub fn active_events(&self) -> Events {
        crate::alarm::raised(self.alarms())
    }
}

impl RegisterImage for FirepumpNode {
    fn class(&self) -> DeviceClass {
        DeviceClass::Firepump
    }

    fn ports(&self) -> u8 {
        0
    }

    fn point(&self, point: Point, _port: Option<u8>) -> Option<f64> {
        device_point(&self.readings(), point, |code| self.is_active(code))
    }

    fn command(&mut self, op: Op, port: Option<u8>, now: Millis) -> Result<(), CommandError> {
        match (op, port) {
            (Op::SelfTest, None) => self.start_self_test(now),
            (Op::SelfTest, Some(_)) => Err(CommandError::NoSuchPort),
            _ => Err(CommandError::Unsupported),
        }
    }
}
