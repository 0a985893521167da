//! Canonical metrics, their units and value kinds, and the [`Value`] of a sample.
//!
//! Units live in the metric names (`speed_mps`, `temp_c`) as the contract says,
//! and again in [`Unit`] so consoles and dashboards can label axes without a
//! second table.

use core::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use crate::class::DeviceClass;
use crate::names::wire_names;

wire_names! {
    /// Device-level metrics of all three classes (one namespace: names are unique).
    ///
    /// Ids leave room per class: elevator 0–31, fire pump 32–63, charging bay 64–95,
    /// node health of any class 96–127.
    pub enum Metric ("metric") {
        /// The car is moving.
        Running = 0 => "running",
        /// 0 none, 1 up, 2 down ([`Direction`]).
        Direction = 1 => "direction",
        /// Current floor (negative below ground).
        Floor = 2 => "floor",
        /// The car is inside the unlocking (door) zone.
        DoorZone = 3 => "door_zone",
        /// The doors are closed and locked (关门到位).
        DoorClosed = 4 => "door_closed",
        /// Someone is in the car.
        Occupied = 5 => "occupied",
        /// GB/T 24476 service mode ([`ServiceMode`]).
        ServiceMode = 6 => "service_mode",
        /// Car speed.
        SpeedMps = 7 => "speed_mps",
        /// Rated (contract) speed.
        RatedSpeedMps = 8 => "rated_speed_mps",
        /// Load as a share of rated load.
        LoadPct = 9 => "load_pct",
        /// Main power is present.
        PowerOk = 10 => "power_ok",
        /// Runs since commissioning.
        RunCount = 11 => "run_count",
        /// Running hours since commissioning.
        RunHours = 12 => "run_hours",
        /// The safety circuit is closed (our addition: lets a plain sensor node
        /// report the contact the gateway judges `safety_circuit_break` from).
        SafetyCircuitOk = 13 => "safety_circuit_ok",
        /// The in-car alarm button is pressed (our addition, for `alarm_button`).
        AlarmButton = 14 => "alarm_button",
        /// An e-bike detector (camera or tag reader) sees an e-bike in the car
        /// (our addition, for `ebike_in_car`).
        EbikeDetected = 15 => "ebike_detected",
        /// The main fire pump runs (run feedback).
        PumpRunning = 32 => "pump_running",
        /// The pump cabinet reports a fault.
        PumpFault = 33 => "pump_fault",
        /// The cabinet is in auto-start.
        AutoMode = 34 => "auto_mode",
        /// A start signal is present (fire alarm, pressure switch, manual).
        StartSignal = 35 => "start_signal",
        /// Pump outlet pressure.
        OutletPressureMpa = 36 => "outlet_pressure_mpa",
        /// Pressure at the network's most unfavourable point.
        NetworkPressureMpa = 37 => "network_pressure_mpa",
        /// Fire water tank level.
        TankLevelM = 38 => "tank_level_m",
        /// The jockey (pressure maintenance) pump runs.
        JockeyRunning = 39 => "jockey_running",
        /// Main supply present.
        MainPowerOk = 40 => "main_power_ok",
        /// Backup supply present.
        BackupPowerOk = 41 => "backup_power_ok",
        /// A weekly self-test (巡检) is running.
        SelfTestRunning = 42 => "self_test_running",
        /// The building's fire alarm panel is in alarm (its output contact to
        /// the pump cabinet; our addition, for `fire_alarm`).
        FireAlarm = 43 => "fire_alarm",
        /// The bay's smoke detector is in alarm.
        Smoke = 64 => "smoke",
        /// Air temperature in the bay.
        AmbientTempC = 65 => "ambient_temp_c",
        /// Mains voltage at the bay.
        MainsVoltageV = 66 => "mains_voltage_v",
        /// Residual (leakage) current.
        LeakageMa = 67 => "leakage_ma",
        /// Node health, any class: telemetry messages the node's store-and-forward
        /// buffer dropped since boot (it drops telemetry before events).
        DroppedTelemetry = 96 => "dropped_telemetry",
        /// Node health, any class: events the buffer dropped since boot (only when
        /// it holds nothing but events).
        DroppedEvents = 97 => "dropped_events",
    }
}

wire_names! {
    /// Per-port metrics of a charging bay, carried in `data.ports[]`.
    pub enum PortMetric ("port metric") {
        /// 0 idle, 1 charging, 2 full/float, 3 fault, 4 cut off ([`PortState`]).
        State = 0 => "state",
        /// Power drawn by the port.
        PowerW = 1 => "power_w",
        /// Current drawn by the port.
        CurrentA = 2 => "current_a",
        /// Temperature at the port's socket.
        TempC = 3 => "temp_c",
        /// Energy delivered in the current session.
        EnergyWh = 4 => "energy_wh",
        /// Length of the current session.
        SessionS = 5 => "session_s",
    }
}

/// The physical unit of a metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// A flag or an enumeration: no unit.
    None,
    /// A count of events.
    Count,
    /// A floor number.
    Floor,
    /// Metres per second.
    MetresPerSecond,
    /// Per cent.
    Percent,
    /// Hours.
    Hours,
    /// Megapascal.
    Megapascal,
    /// Metres.
    Metres,
    /// Degrees Celsius.
    Celsius,
    /// Volts.
    Volts,
    /// Milliamperes.
    Milliamperes,
    /// Watts.
    Watts,
    /// Amperes.
    Amperes,
    /// Watt-hours.
    WattHours,
    /// Seconds.
    Seconds,
}

impl Unit {
    /// The symbol shown next to a value ("" for none).
    #[must_use]
    pub const fn symbol(self) -> &'static str {
        match self {
            Unit::None | Unit::Count | Unit::Floor => "",
            Unit::MetresPerSecond => "m/s",
            Unit::Percent => "%",
            Unit::Hours => "h",
            Unit::Megapascal => "MPa",
            Unit::Metres => "m",
            Unit::Celsius => "°C",
            Unit::Volts => "V",
            Unit::Milliamperes => "mA",
            Unit::Watts => "W",
            Unit::Amperes => "A",
            Unit::WattHours => "Wh",
            Unit::Seconds => "s",
        }
    }
}

/// What values a metric accepts. A value of the wrong kind is rejected on decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    /// `true` or `false`.
    Bool,
    /// Any finite number.
    Number,
    /// A whole number from 0 to `max`: an enumeration such as [`Direction`].
    Code {
        /// The largest allowed value.
        max: u8,
    },
}

impl ValueKind {
    /// Checks a value against this kind.
    ///
    /// # Errors
    /// A [`KindMismatch`] saying what was expected.
    pub fn check(self, value: Value) -> Result<Value, KindMismatch> {
        let ok = match (self, value) {
            (ValueKind::Bool, Value::Bool(_)) => true,
            (ValueKind::Number, Value::Number(n)) => n.is_finite(),
            (ValueKind::Code { max }, Value::Number(n)) => n >= 0.0 && n <= f64::from(max) && is_whole(n),
            _ => false,
        };
        if ok {
            Ok(value)
        } else {
            Err(KindMismatch {
                expected: self,
                got: value,
            })
        }
    }
}

impl fmt::Display for ValueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueKind::Bool => f.write_str("a boolean"),
            ValueKind::Number => f.write_str("a finite number"),
            ValueKind::Code { max } => write!(f, "a whole number from 0 to {max}"),
        }
    }
}

/// A value that does not fit its metric's [`ValueKind`].
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
#[error("expected {expected}, got {got}")]
pub struct KindMismatch {
    /// What the metric accepts.
    pub expected: ValueKind,
    /// What was sent.
    pub got: Value,
}

/// Facts about a metric that rules, stores and consoles need.
pub trait MetricInfo: crate::names::WireName {
    /// What values it accepts.
    fn kind(self) -> ValueKind;
    /// Its unit.
    fn unit(self) -> Unit;
}

impl Metric {
    /// The class whose nodes report this metric; `None` for node-health
    /// metrics every class reports.
    #[must_use]
    pub const fn class(self) -> Option<DeviceClass> {
        match self as u8 {
            0..=31 => Some(DeviceClass::Elevator),
            32..=63 => Some(DeviceClass::Firepump),
            64..=95 => Some(DeviceClass::Charger),
            _ => None,
        }
    }

    /// The canonical metrics specific to one class, in id order (without the
    /// node-health metrics of every class).
    pub fn of_class(class: DeviceClass) -> impl Iterator<Item = Metric> {
        Metric::ALL.iter().copied().filter(move |m| m.class() == Some(class))
    }
}

impl MetricInfo for Metric {
    fn kind(self) -> ValueKind {
        use Metric::{
            AlarmButton, AutoMode, BackupPowerOk, DoorClosed, DoorZone, EbikeDetected, FireAlarm, JockeyRunning,
            MainPowerOk, Occupied, PowerOk, PumpFault, PumpRunning, Running, SafetyCircuitOk, SelfTestRunning, Smoke,
            StartSignal,
        };
        match self {
            Running | DoorZone | DoorClosed | Occupied | PowerOk | PumpRunning | PumpFault | AutoMode | StartSignal
            | JockeyRunning | MainPowerOk | BackupPowerOk | SelfTestRunning | Smoke | SafetyCircuitOk | AlarmButton
            | EbikeDetected | FireAlarm => ValueKind::Bool,
            Metric::Direction => ValueKind::Code { max: 2 },
            Metric::ServiceMode => ValueKind::Code { max: 7 },
            _ => ValueKind::Number,
        }
    }

    fn unit(self) -> Unit {
        match self {
            Metric::Floor => Unit::Floor,
            Metric::SpeedMps | Metric::RatedSpeedMps => Unit::MetresPerSecond,
            Metric::LoadPct => Unit::Percent,
            Metric::RunCount | Metric::DroppedTelemetry | Metric::DroppedEvents => Unit::Count,
            Metric::RunHours => Unit::Hours,
            Metric::OutletPressureMpa | Metric::NetworkPressureMpa => Unit::Megapascal,
            Metric::TankLevelM => Unit::Metres,
            Metric::AmbientTempC => Unit::Celsius,
            Metric::MainsVoltageV => Unit::Volts,
            Metric::LeakageMa => Unit::Milliamperes,
            _ => Unit::None,
        }
    }
}

impl MetricInfo for PortMetric {
    fn kind(self) -> ValueKind {
        match self {
            PortMetric::State => ValueKind::Code { max: 4 },
            _ => ValueKind::Number,
        }
    }

    fn unit(self) -> Unit {
        match self {
            PortMetric::State => Unit::None,
            PortMetric::PowerW => Unit::Watts,
            PortMetric::CurrentA => Unit::Amperes,
            PortMetric::TempC => Unit::Celsius,
            PortMetric::EnergyWh => Unit::WattHours,
            PortMetric::SessionS => Unit::Seconds,
        }
    }
}

/// Declares a coded enumeration carried as a whole number.
macro_rules! coded {
    ($(#[$meta:meta])* pub enum $ty:ident { $($(#[$vmeta:meta])* $v:ident = $n:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum $ty { $($(#[$vmeta])* $v = $n,)+ }

        impl $ty {
            /// The value as sent on the wire.
            #[must_use]
            pub const fn code(self) -> u8 { self as u8 }

            /// The enumeration value of a wire number, if it is one.
            #[must_use]
            pub fn from_value(value: Value) -> Option<Self> {
                match value.as_f64()? {
                    $(n if n == f64::from($n) => Some($ty::$v),)+
                    _ => None,
                }
            }
        }

        impl From<$ty> for Value {
            fn from(v: $ty) -> Value { Value::Number(f64::from(v as u8)) }
        }
    };
}

coded! {
    /// Travel direction (`direction`).
    pub enum Direction { /** Standing. */ None = 0, /** Up. */ Up = 1, /** Down. */ Down = 2, }
}

coded! {
    /// GB/T 24476 service mode (`service_mode`).
    pub enum ServiceMode {
        /// Out of service.
        OutOfService = 0,
        /// Normal passenger service.
        Normal = 1,
        /// Inspection (检修): a technician drives the car.
        Inspection = 2,
        /// Fire return: the car homes to the main floor.
        FireReturn = 3,
        /// Firefighter operation.
        Firefighter = 4,
        /// Running on emergency power.
        EmergencyPower = 5,
        /// Earthquake operation.
        Earthquake = 6,
        /// The controller does not say.
        Unknown = 7,
    }
}

coded! {
    /// State of a charging port (`ports[].state`).
    pub enum PortState {
        /// Nothing plugged in.
        Idle = 0,
        /// Charging.
        Charging = 1,
        /// Battery full, float charging.
        Full = 2,
        /// The port reports a fault.
        Fault = 3,
        /// The node cut the port off (latched until cleared).
        CutOff = 4,
    }
}

/// One sample value: JSON numbers and booleans, as the contract allows.
///
/// Numbers are `f64` so a 32-bit counter or an energy total is exact; whole
/// numbers are written without a fraction in JSON, and the binary encoding
/// uses 4 bytes whenever `f32` holds the value exactly.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    /// A flag.
    Bool(bool),
    /// A number; must be finite to be encoded.
    Number(f64),
}

impl Value {
    /// The value as a number, flags as 0 and 1: how a time-series store, a
    /// register and a rule all see it.
    #[must_use]
    pub const fn to_number(self) -> f64 {
        match self {
            Value::Bool(true) => 1.0,
            Value::Bool(false) => 0.0,
            Value::Number(n) => n,
        }
    }

    /// The number, if it is one.
    #[must_use]
    pub const fn as_f64(self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(n),
            Value::Bool(_) => None,
        }
    }

    /// The flag, if it is one.
    #[must_use]
    pub const fn as_bool(self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(b),
            Value::Number(_) => None,
        }
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<f64> for Value {
    fn from(n: f64) -> Self {
        Value::Number(n)
    }
}

impl From<f32> for Value {
    fn from(n: f32) -> Self {
        Value::Number(f64::from(n))
    }
}

impl From<u32> for Value {
    fn from(n: u32) -> Self {
        Value::Number(f64::from(n))
    }
}

impl From<i32> for Value {
    fn from(n: i32) -> Self {
        Value::Number(f64::from(n))
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Number(n) => write!(f, "{n}"),
        }
    }
}

/// Whether a number is whole (`fract` is not in `core`).
#[must_use]
#[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
pub fn is_whole(n: f64) -> bool {
    // Every f64 of magnitude 2^52 or more is whole; below that, the i64 round trip is exact.
    n.is_finite() && (n.abs() >= 4_503_599_627_370_496.0 || (n as i64) as f64 == n)
}

/// Largest magnitude written as a JSON integer: every whole `f64` up to 2^53 is exact.
const MAX_EXACT_INT: f64 = 9_007_199_254_740_992.0;

/// Binary form of [`Value`].
#[derive(Serialize, Deserialize)]
enum WireValue {
    Bool(bool),
    F32(f32),
    F64(f64),
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let n = match *self {
            Value::Bool(b) => {
                return if s.is_human_readable() {
                    s.serialize_bool(b)
                } else {
                    WireValue::Bool(b).serialize(s)
                };
            }
            Value::Number(n) => n,
        };
        if !n.is_finite() {
            return Err(serde::ser::Error::custom("a number is NaN or infinite"));
        }
        if s.is_human_readable() {
            if is_whole(n) && n.abs() <= MAX_EXACT_INT {
                // Exact: |n| <= 2^53 and whole.
                #[allow(clippy::cast_possible_truncation)]
                return s.serialize_i64(n as i64);
            }
            s.serialize_f64(n)
        } else {
            #[allow(clippy::cast_possible_truncation)]
            let narrow = n as f32;
            if f64::from(narrow) == n {
                WireValue::F32(narrow).serialize(s)
            } else {
                WireValue::F64(n).serialize(s)
            }
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ValueSeed { expect: None }.deserialize(d)
    }
}

/// The metric a value belongs to, for checking and for error messages.
#[derive(Clone, Copy)]
pub(crate) struct Expect {
    pub(crate) kind: ValueKind,
    pub(crate) what: &'static str,
    pub(crate) name: &'static str,
}

impl Expect {
    pub(crate) fn of<M: MetricInfo>(m: M) -> Self {
        Expect {
            kind: m.kind(),
            what: M::WHAT,
            name: m.as_str(),
        }
    }
}

/// Deserializes a [`Value`], checking it against a metric's kind when the metric
/// is known. An unknown metric's value is accepted as any number or boolean.
pub(crate) struct ValueSeed {
    pub(crate) expect: Option<Expect>,
}

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        let visitor = ValueVisitor { expect: self.expect };
        let value = if d.is_human_readable() {
            match self.expect.map(|e| e.kind) {
                Some(ValueKind::Bool) => d.deserialize_bool(visitor)?,
                Some(ValueKind::Number | ValueKind::Code { .. }) => d.deserialize_f64(visitor)?,
                None => d.deserialize_any(visitor)?,
            }
        } else {
            match WireValue::deserialize(d)? {
                WireValue::Bool(b) => Value::Bool(b),
                WireValue::F32(n) => Value::Number(f64::from(n)),
                WireValue::F64(n) => Value::Number(n),
            }
        };
        match self.expect {
            Some(e) => e
                .kind
                .check(value)
                .map_err(|err| de::Error::custom(format_args!("{} `{}`: {err}", e.what, e.name))),
            None if matches!(value, Value::Number(n) if !n.is_finite()) => {
                Err(de::Error::custom("a number is NaN or infinite"))
            }
            None => Ok(value),
        }
    }
}

struct ValueVisitor {
    expect: Option<Expect>,
}

impl Visitor<'_> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.expect {
            Some(e) => write!(f, "{} for {} `{}`", e.kind, e.what, e.name),
            None => f.write_str("a number or a boolean"),
        }
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    #[allow(clippy::cast_precision_loss)]
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v as f64))
    }

    #[allow(clippy::cast_precision_loss)]
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v as f64))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Number(v))
    }
}
