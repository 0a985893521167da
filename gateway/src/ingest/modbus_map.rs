//! Vendor register maps: how one register of a third-party controller
//! becomes a stored value and the events it stands for.
//!
//! Controllers in the field do not speak our metrics. A fire-pump cabinet
//! packs sixteen contacts into one status word, a lift controller reports
//! its current fault as a number from the manufacturer's fault table, a
//! normally-closed contact reads 1 when all is well, and an analog input is
//! raw ADC counts of a 4–20 mA loop. [`RegisterConfig`] describes each of
//! these in the configuration (`[[modbus.devices.registers]]`), checked at
//! start with every problem named by its field; [`Decode::apply`] is the
//! pure function from a register's raw number to what is stored and raised,
//! and [`EventState`] turns the verdicts of every register of a device into
//! the protocol's `event` messages (raised and cleared on the edges), so a
//! vendor's fault reaches the alerting core as one of our codes, exactly as
//! a node's own event would.
//!
//! Decoding order for a word register (`docs/modbus.md`): the raw number
//! of its type; then a bit of it (`bit`) and inversion (`invert`) for a
//! boolean; or, for a number, the broken-loop check on the raw counts
//! (`fault_below`, `fault_above`: no value, a `sensor_fault` instead of a
//! negative pressure), the fault-code table (`faults`), and finally either
//! the enumeration (`values`) or the scaling (`scale`/`offset`, or the
//! two-point `raw_min`/`raw_max` → `min`/`max`).

use std::collections::BTreeMap;

use protocol::metric::{MetricInfo, Value, ValueKind};
use protocol::modbus::{DataType, Table, WordOrder};
use protocol::readings::{Detail, Scalar};
use protocol::{DeviceClass, EventCode, Metric, Named, PortMetric};
use serde::Deserialize;

use super::modbus::Target;

/// The event raised by default while an analog input's raw counts are out of
/// the loop's live band (a cut or shorted 4–20 mA loop). Not one of the
/// protocol's codes: the alerting core treats it as a vendor's own code
/// (`major`, dispatched), so a broken transducer is a fault to repair, never
/// a low pressure.
pub const SENSOR_FAULT: &str = "sensor_fault";

/// A table name in configuration.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TableName {
    /// Coils (FC 01).
    Coil,
    /// Discrete inputs (FC 02).
    Discrete,
    /// Input registers (FC 04).
    Input,
    /// Holding registers (FC 03).
    Holding,
}

impl TableName {
    /// The protocol's table.
    #[must_use]
    pub const fn table(self) -> Table {
        match self {
            TableName::Coil => Table::Coil,
            TableName::Discrete => Table::DiscreteInput,
            TableName::Input => Table::InputRegister,
            TableName::Holding => Table::HoldingRegister,
        }
    }
}

/// A value type in configuration.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TypeName {
    /// A bit, or a register that is 0/1.
    Bool,
    /// Unsigned 16-bit.
    U16,
    /// Signed 16-bit.
    I16,
    /// Unsigned 32-bit.
    U32,
    /// Signed 32-bit.
    I32,
    /// IEEE 754 single.
    F32,
}

/// A word order in configuration.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OrderName {
    /// High word first (default).
    #[default]
    Abcd,
    /// Word-swapped.
    Cdab,
    /// Byte-swapped.
    Badc,
    /// Little-endian.
    Dcba,
}

impl OrderName {
    const fn order(self) -> WordOrder {
        match self {
            OrderName::Abcd => WordOrder::Abcd,
            OrderName::Cdab => WordOrder::Cdab,
            OrderName::Badc => WordOrder::Badc,
            OrderName::Dcba => WordOrder::Dcba,
        }
    }
}

/// A value an enumeration maps a raw number to: `true`/`false` or a number.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Mapped {
    /// A flag.
    Bool(bool),
    /// A number (a code such as `service_mode`'s).
    Number(f64),
}

impl From<Mapped> for Value {
    fn from(m: Mapped) -> Value {
        match m {
            Mapped::Bool(b) => Value::Bool(b),
            Mapped::Number(n) => Value::Number(n),
        }
    }
}

/// One register of a vendor's map. Every key but `table` and `address` is
/// optional, and a map written before bits, tables and ranges existed
/// (`type`, `scale`, `metric`) reads as it did.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RegisterConfig {
    /// Table.
    pub table: TableName,
    /// PDU address (0-based).
    pub address: u16,
    /// Value type; may be left out with `bit` (a 16-bit word).
    #[serde(rename = "type")]
    pub data_type: Option<TypeName>,
    /// Word order of 32-bit types.
    #[serde(default)]
    pub word_order: OrderName,
    /// A bit of a packed status word (0 = least significant): a boolean.
    pub bit: Option<u8>,
    /// A normally-closed contact: the boolean is true when the bit reads 0.
    #[serde(default)]
    pub invert: bool,
    /// Engineering value = raw × scale + offset.
    pub scale: Option<f64>,
    /// See `scale`.
    pub offset: Option<f64>,
    /// Two-point scaling, with `raw_max`, `min` and `max`: `raw_min` reads as `min`.
    pub raw_min: Option<f64>,
    /// `raw_max` reads as `max`.
    pub raw_max: Option<f64>,
    /// The engineering value at `raw_min`.
    pub min: Option<f64>,
    /// The engineering value at `raw_max`.
    pub max: Option<f64>,
    /// Raw counts below this are a broken loop (e.g. 3.6 mA): no value, `fault_event`.
    pub fault_below: Option<f64>,
    /// Raw counts above this are a shorted loop (e.g. 21 mA): no value, `fault_event`.
    pub fault_above: Option<f64>,
    /// The event raised while the loop is broken; default `sensor_fault`.
    pub fault_event: Option<String>,
    /// An enumeration: raw value → the stored value; others give no value.
    pub values: Option<BTreeMap<String, Mapped>>,
    /// Metric name (canonical, or a vendor's own `[a-z][a-z0-9_]*`).
    pub metric: Option<String>,
    /// Charging port, for port metrics and per-port events.
    pub port: Option<u8>,
    /// An event code raised while the boolean is true.
    pub event: Option<String>,
    /// A fault-code register: raw value → the event code it raises.
    pub faults: Option<BTreeMap<String, String>>,
    /// The event raised for a non-zero fault code the table does not list.
    pub fault_other: Option<String>,
}

/// What a register of a vendor's map is read as, and where its value goes.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved {
    /// The table.
    pub table: Table,
    /// How its words are read into a raw number.
    pub data_type: DataType,
    /// Where its value goes, if it has one.
    pub target: Option<Target>,
    /// From the raw number to value and verdicts.
    pub decode: Decode,
}

/// A problem of one register: the key at fault and what is wrong.
pub type Problem = (&'static str, String);

impl RegisterConfig {
    /// The register resolved for a device of `class`, or every problem it has.
    ///
    /// # Errors
    /// Each problem with the key at fault, in the order of the keys.
    #[allow(clippy::too_many_lines)]
    pub fn resolve(&self, class: DeviceClass) -> Result<Resolved, Vec<Problem>> {
        let mut p: Vec<Problem> = Vec::new();
        let table = self.table.table();
        let order = self.word_order.order();
        let given = self.data_type;
        // A bit of a word: the word is read as its integer type (u16 unless said).
        let data_type = match (given, self.bit) {
            (Some(TypeName::Bool) | None, Some(_)) | (Some(TypeName::U16), _) => DataType::U16,
            (Some(TypeName::Bool), None) => DataType::Bool,
            (None, None) if table.is_bit() => DataType::Bool,
            (None, None) => {
                p.push(("type", "is required (bool, u16, i16, u32, i32 or f32)".into()));
                DataType::U16
            }
            (Some(TypeName::I16), _) => DataType::I16,
            (Some(TypeName::U32), _) => DataType::U32(order),
            (Some(TypeName::I32), _) => DataType::I32(order),
            (Some(TypeName::F32), _) => DataType::F32(order),
        };
        if table.is_bit() && data_type != DataType::Bool {
            if self.bit.is_some() {
                p.push(("bit", format!("a {:?} holds bits already: no `bit`", self.table)));
            } else {
                p.push(("type", format!("a {:?} holds bits; use type \"bool\"", self.table)));
            }
        }
        let width: u8 = match data_type {
            DataType::U16 | DataType::I16 => 16,
            DataType::U32(_) | DataType::I32(_) => 32,
            DataType::Bool | DataType::F32(_) => 0,
        };
        if let Some(b) = self.bit
            && !table.is_bit()
        {
            if width == 0 {
                p.push(("bit", "a bit of an f32 means nothing: use u16, i16, u32 or i32".into()));
            } else if b >= width {
                p.push((
                    "bit",
                    format!("{b} is not a bit of a {width}-bit word (0 to {})", width - 1),
                ));
            }
        }
        let boolean = data_type == DataType::Bool || self.bit.is_some();
        let integer = !boolean && width > 0;
        let numeric_only = |p: &mut Vec<Problem>, key: &'static str, set: bool| {
            if set && boolean {
                p.push((key, "applies to numbers, not to a bit or a boolean".into()));
            }
        };
        if self.invert && !boolean {
            p.push((
                "invert",
                "applies to a coil, a discrete input, a bool or a bit: a normally-closed contact".into(),
            ));
        }

        // Where the value goes.
        if let Some(0) = self.port {
            p.push(("port", "ports are 1-based".into()));
        }
        let target = match &self.metric {
            None => None,
            Some(m) => match (self.port, Named::<Metric>::parse(m), Named::<PortMetric>::parse(m)) {
                (Some(port), _, Ok(pm)) => Some(Target::Port(port, pm)),
                (None, Ok(dm), _) => Some(Target::Metric(dm)),
                _ => {
                    p.push(("metric", format!("`{m}` is not a valid name")));
                    None
                }
            },
        };
        let kind = match &target {
            Some(Target::Metric(Named::Known(m))) => Some(m.kind()),
            Some(Target::Port(_, Named::Known(m))) => Some(m.kind()),
            _ => None,
        };

        // Scaling.
        numeric_only(&mut p, "scale", self.scale.is_some());
        numeric_only(&mut p, "offset", self.offset.is_some());
        let range = [self.raw_min, self.raw_max, self.min, self.max];
        let scaling = match range {
            [None, None, None, None] => {
                let scale = self.scale.unwrap_or(1.0);
                let offset = self.offset.unwrap_or(0.0);
                if !scale.is_finite() || scale == 0.0 {
                    p.push(("scale", "must be a finite number other than 0".into()));
                }
                if !offset.is_finite() {
                    p.push(("offset", "must be finite".into()));
                }
                Scaling::Linear { scale, offset }
            }
            [Some(raw_min), Some(raw_max), Some(min), Some(max)] => {
                numeric_only(&mut p, "raw_min", true);
                if self.scale.is_some() || self.offset.is_some() {
                    p.push((
                        "raw_min",
                        "give `scale`/`offset` or `raw_min`/`raw_max`/`min`/`max`, not both".into(),
                    ));
                }
                if range.iter().any(|x| x.is_some_and(|x| !x.is_finite())) {
                    p.push(("raw_min", "`raw_min`, `raw_max`, `min` and `max` must be finite".into()));
                } else if raw_min >= raw_max {
                    p.push(("raw_max", format!("must be above raw_min ({raw_min})")));
                }
                Scaling::Range {
                    raw_min,
                    raw_max,
                    min,
                    max,
                }
            }
            _ => {
                let key = ["raw_min", "raw_max", "min", "max"]
                    .into_iter()
                    .zip(range)
                    .find_map(|(k, v)| v.is_none().then_some(k))
                    .unwrap_or("raw_min");
                p.push((key, "give all four of `raw_min`, `raw_max`, `min` and `max`".into()));
                Scaling::Linear {
                    scale: 1.0,
                    offset: 0.0,
                }
            }
        };

        // The loop's live band.
        numeric_only(&mut p, "fault_below", self.fault_below.is_some());
        numeric_only(&mut p, "fault_above", self.fault_above.is_some());
        let band = (self.fault_below.is_some() || self.fault_above.is_some()).then(|| {
            (
                self.fault_below.unwrap_or(f64::NEG_INFINITY),
                self.fault_above.unwrap_or(f64::INFINITY),
            )
        });
        if let Some((below, above)) = band
            && (below.is_nan() || above.is_nan() || below >= above)
        {
            p.push(("fault_above", "must be above fault_below".into()));
        }
        if band.is_some() && target.is_none() {
            p.push(("fault_below", "a loop check needs the `metric` it guards".into()));
        }
        let loop_event = match &self.fault_event {
            Some(_) if band.is_none() => {
                p.push(("fault_event", "needs `fault_below` or `fault_above`".into()));
                None
            }
            Some(code) => event_code(code, self.port, class)
                .map_err(|m| p.push(("fault_event", m)))
                .ok(),
            None => Named::parse(SENSOR_FAULT).ok(),
        };

        // The enumeration.
        let mut values = Vec::new();
        if let Some(table) = &self.values {
            if !integer {
                p.push(("values", "needs an integer type (u16, i16, u32 or i32)".into()));
            }
            if target.is_none() {
                p.push(("values", "needs the `metric` it feeds".into()));
            }
            if self.scale.is_some() || self.offset.is_some() || self.raw_min.is_some() {
                p.push((
                    "values",
                    "an enumeration is not scaled: no `scale`, `offset` or range".into(),
                ));
            }
            for (key, v) in table {
                match raw_key(key, data_type) {
                    Ok(raw) => {
                        let value = Value::from(*v);
                        match kind.map(|k| fits(k, value)) {
                            Some(Err(m)) => p.push(("values", format!("{key} = {}: {m}", shown(value)))),
                            _ => values.push((raw, value)),
                        }
                    }
                    Err(m) => p.push(("values", m)),
                }
            }
            if table.is_empty() {
                p.push(("values", "must list at least one value".into()));
            }
        }

        // Events.
        let event = match &self.event {
            Some(_) if !boolean => {
                p.push((
                    "event",
                    "needs a boolean (a coil, a discrete input, a bool or a bit); use `faults` for a number".into(),
                ));
                None
            }
            Some(code) => event_code(code, self.port, class)
                .map_err(|m| p.push(("event", m)))
                .ok(),
            None => None,
        };
        let mut faults = Vec::new();
        if let Some(table) = &self.faults {
            if !integer {
                p.push(("faults", "needs an integer type (u16, i16, u32 or i32)".into()));
            }
            for (key, code) in table {
                let raw = raw_key(key, data_type).map_err(|m| p.push(("faults", m)));
                let code = event_code(code, self.port, class).map_err(|m| p.push(("faults", format!("{key}: {m}"))));
                if let (Ok(raw), Ok(code)) = (raw, code) {
                    if raw == 0 {
                        p.push(("faults", "0 is \"no fault\": it cannot raise a code".into()));
                    }
                    faults.push((raw, code));
                }
            }
            if table.is_empty() {
                p.push(("faults", "must list at least one code".into()));
            }
        }
        let fault_other = match &self.fault_other {
            Some(_) if self.faults.is_none() => {
                p.push(("fault_other", "needs a `faults` table".into()));
                None
            }
            Some(code) => event_code(code, self.port, class)
                .map_err(|m| p.push(("fault_other", m)))
                .ok(),
            None => None,
        };
        if self.metric.is_none() && self.event.is_none() && self.faults.is_none() {
            p.push((
                "metric",
                "give `metric`, `event` or `faults`: the register feeds nothing".into(),
            ));
        }
        if !p.is_empty() {
            return Err(p);
        }
        Ok(Resolved {
            table,
            data_type,
            target,
            decode: Decode {
                address: self.address,
                metric: self.metric.clone(),
                port: self.port,
                bit: self.bit,
                boolean,
                invert: self.invert,
                scaling,
                band,
                loop_event: loop_event.unwrap_or_else(|| Named::Known(EventCode::ModbusException)),
                values,
                event,
                faults,
                fault_other,
            },
        })
    }
}

/// A value as written in the configuration.
fn shown(v: Value) -> String {
    match v {
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
    }
}

/// Whether `v` may be stored in a metric of `kind` (a number 0/1 may stand
/// for a flag, as on the wire).
fn fits(kind: ValueKind, v: Value) -> Result<(), String> {
    match (kind, v) {
        (ValueKind::Bool, Value::Number(n)) if n == 0.0 || n == 1.0 => Ok(()),
        _ => kind.check(v).map(drop).map_err(|_| format!("the metric takes {kind}")),
    }
}

/// A raw value as written as a table key: decimal or `0x` hex, within the
/// register's type.
fn raw_key(key: &str, data_type: DataType) -> Result<i64, String> {
    let k = key.trim();
    let (negative, digits) = match k.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, k),
    };
    let parsed = match digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        Some(hex) => i64::from_str_radix(hex, 16),
        None => digits.parse::<i64>(),
    };
    let raw = parsed
        .map(|v| if negative { -v } else { v })
        .map_err(|_| format!("`{key}` is not a whole number (decimal, or hex as 0x21)"))?;
    let (lo, hi) = data_type.range();
    #[allow(clippy::cast_precision_loss)]
    let inside = (raw as f64) >= lo && (raw as f64) <= hi;
    if inside {
        Ok(raw)
    } else {
        Err(format!("{key} does not fit a {} register", data_type.as_str()))
    }
}

/// An event code a vendor's register may raise on a device of `class`: a
/// state (raised and cleared), of that class, and not one the gateway
/// raises itself; a code the protocol does not know is a vendor's own.
fn event_code(name: &str, port: Option<u8>, class: DeviceClass) -> Result<Named<EventCode>, String> {
    let code = Named::<EventCode>::parse(name).map_err(|_| format!("`{name}` is not a valid event code"))?;
    if let Named::Known(c) = code {
        if !c.is_state() {
            return Err(format!("`{name}` is a record, not a fault that is raised and cleared"));
        }
        match c.class() {
            None => return Err(format!("`{name}` is the gateway's own code, not a device's")),
            Some(k) if k != class => return Err(format!("`{name}` is a code of class {k}, not {class}")),
            Some(_) => {}
        }
        if c.is_per_port() && port.is_none() {
            return Err(format!("`{name}` is a port's code: give `port`"));
        }
    }
    Ok(code)
}

/// From raw counts to the engineering value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scaling {
    /// raw × scale + offset.
    Linear {
        /// Multiplier.
        scale: f64,
        /// Added after scaling.
        offset: f64,
    },
    /// The straight line through (`raw_min`, `min`) and (`raw_max`, `max`),
    /// held within `min`..`max`: counts a little outside the span (3.6–4 mA,
    /// 20–21 mA, inside a loop's live band) are the span's end, not a value
    /// the sensor cannot measure, as a transmitter's own output does.
    Range {
        /// Counts at the low end (4 mA).
        raw_min: f64,
        /// Counts at the high end (20 mA).
        raw_max: f64,
        /// Engineering value at `raw_min`.
        min: f64,
        /// Engineering value at `raw_max`.
        max: f64,
    },
}

impl Scaling {
    /// The engineering value of `raw`.
    #[must_use]
    pub fn apply(self, raw: f64) -> f64 {
        match self {
            Scaling::Linear { scale, offset } => raw * scale + offset,
            Scaling::Range {
                raw_min,
                raw_max,
                min,
                max,
            } => {
                let v = min + (raw - raw_min) * (max - min) / (raw_max - raw_min);
                v.clamp(min.min(max), min.max(max))
            }
        }
    }
}

/// How one register's raw number becomes a value and verdicts on events.
#[derive(Clone, Debug, PartialEq)]
pub struct Decode {
    /// The register (for the events' detail).
    pub address: u16,
    /// The metric it feeds (for the events' detail).
    pub metric: Option<String>,
    /// The port its events concern.
    pub port: Option<u8>,
    /// The bit taken of the word.
    pub bit: Option<u8>,
    /// Read as a boolean (a bit table, a bool register, or a bit).
    pub boolean: bool,
    /// Normally closed: true when it reads 0.
    pub invert: bool,
    /// Raw to engineering value.
    pub scaling: Scaling,
    /// The loop's live band of raw counts, `[below, above]`; outside it no
    /// value is stored and `loop_event` is raised.
    pub band: Option<(f64, f64)>,
    /// The code raised while the loop is out of its band.
    pub loop_event: Named<EventCode>,
    /// Enumeration, raw → value; empty for none.
    pub values: Vec<(i64, Value)>,
    /// Raised while the boolean is true.
    pub event: Option<Named<EventCode>>,
    /// Fault-code table, raw → code.
    pub faults: Vec<(i64, Named<EventCode>)>,
    /// Raised for a non-zero code not in `faults`.
    pub fault_other: Option<Named<EventCode>>,
}

/// What one register's reading says about one event code.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// The code.
    pub code: Named<EventCode>,
    /// Its port, if it concerns one.
    pub port: Option<u8>,
    /// Raised (`true`) or clear.
    pub active: bool,
    /// The register's raw number (the evidence).
    pub raw: f64,
    /// The register.
    pub address: u16,
    /// The metric a broken loop leaves without a value.
    pub metric: Option<String>,
}

/// One register's reading, decoded.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decoded {
    /// The value to store: `None` for a broken loop or a value the
    /// enumeration does not list (unknown, which rules treat as unknown).
    pub value: Option<Value>,
    /// What it says about each event code it can raise.
    pub verdicts: Vec<Verdict>,
}

impl Decode {
    /// A plain register of a built-in map: raw × `scale`.
    #[must_use]
    pub fn plain(address: u16, scale: f64, boolean: bool) -> Decode {
        Decode {
            address,
            metric: None,
            port: None,
            bit: None,
            boolean,
            invert: false,
            scaling: Scaling::Linear { scale, offset: 0.0 },
            band: None,
            loop_event: Named::Known(EventCode::ModbusException),
            values: Vec::new(),
            event: None,
            faults: Vec::new(),
            fault_other: None,
        }
    }

    fn verdict(&self, code: &Named<EventCode>, active: bool, raw: f64) -> Verdict {
        Verdict {
            code: code.clone(),
            port: self.port,
            active,
            raw,
            address: self.address,
            metric: None,
        }
    }

    /// Decodes the raw number of the register's type (bits as 0/1).
    #[must_use]
    #[allow(clippy::cast_possible_truncation)]
    pub fn apply(&self, raw: f64) -> Decoded {
        let mut out = Decoded::default();
        if self.boolean {
            // A bit of an integer word: i16/i32 are two's complement, which
            // the shift of the (whole, in range) i64 keeps.
            let on = match self.bit {
                Some(b) => ((raw as i64) >> b) & 1 == 1,
                None => raw != 0.0,
            } != self.invert;
            out.value = Some(Value::Bool(on));
            if let Some(code) = &self.event {
                out.verdicts.push(self.verdict(code, on, raw));
            }
            return out;
        }
        if let Some((below, above)) = self.band {
            let broken = !(below..=above).contains(&raw);
            out.verdicts.push(Verdict {
                metric: self.metric.clone(),
                ..self.verdict(&self.loop_event, broken, raw)
            });
            if broken {
                return out;
            }
        }
        if !self.faults.is_empty() {
            let code = raw as i64;
            let raised = self.faults.iter().find(|(r, _)| *r == code).map(|(_, c)| c);
            let mut seen: Vec<&Named<EventCode>> = Vec::new();
            for (_, c) in &self.faults {
                if !seen.contains(&c) {
                    seen.push(c);
                    out.verdicts.push(self.verdict(c, raised == Some(c), raw));
                }
            }
            if let Some(other) = &self.fault_other {
                let active = code != 0 && raised.is_none();
                // The same code may also be in the table: one verdict, raised if either says so.
                match out.verdicts.iter_mut().find(|v| v.code == *other) {
                    Some(v) => v.active |= active,
                    None => out.verdicts.push(self.verdict(other, active, raw)),
                }
            }
        }
        out.value = if self.values.is_empty() {
            Some(Value::Number(self.scaling.apply(raw)))
        } else {
            let code = raw as i64;
            self.values.iter().find(|(r, _)| *r == code).map(|(_, v)| *v)
        };
        out
    }
}

/// The events of one device's vendor map, judged across its registers and
/// polls: a code is raised while any register says so, and is announced
/// (an `event` message) only when that changes. At the first verdict after
/// a start every code is announced, raised or clear, since the alerting
/// state restored at start may hold a code that has since cleared.
#[derive(Clone, Debug, Default)]
pub struct EventState {
    /// Each source's last verdict: (point, code, port) → verdict. A register
    /// not read in a poll (refused, or the poll cut short) keeps its last.
    sources: BTreeMap<(usize, String, u8), Verdict>,
    /// What was last announced per (code, port).
    announced: BTreeMap<(String, u8), bool>,
}

/// An event to send: a code raised or cleared, with its evidence.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// The code.
    pub code: Named<EventCode>,
    /// Raised or cleared.
    pub active: bool,
    /// `port`, `address` and `raw` of the register that raised it (and
    /// `metric` for a broken loop).
    pub detail: Detail,
}

impl EventState {
    /// Takes one poll's verdicts (with the index of the point each came
    /// from) and returns the codes whose state changed.
    pub fn update(&mut self, verdicts: impl IntoIterator<Item = (usize, Verdict)>) -> Vec<Change> {
        let mut touched: Vec<(String, u8)> = Vec::new();
        for (i, v) in verdicts {
            let key = (v.code.as_str().to_owned(), v.port.unwrap_or(0));
            if !touched.contains(&key) {
                touched.push(key.clone());
            }
            self.sources.insert((i, key.0, key.1), v);
        }
        let mut out = Vec::new();
        for (code, port) in touched {
            let raising = self
                .sources
                .iter()
                .filter(|((_, c, p), _)| *c == code && *p == port)
                .map(|(_, v)| v)
                .find(|v| v.active);
            let active = raising.is_some();
            if self.announced.get(&(code.clone(), port)) == Some(&active) {
                continue;
            }
            self.announced.insert((code.clone(), port), active);
            let any = self
                .sources
                .iter()
                .find(|((_, c, p), _)| *c == code && *p == port)
                .map(|(_, v)| v);
            let Some(v) = raising.or(any) else { continue };
            let mut detail = Detail::new();
            if let Some(p) = v.port {
                let _ = detail.set("port", p);
            }
            if active {
                let _ = detail.set("address", f64::from(v.address));
                let _ = detail.set("raw", v.raw);
                if let Some(Ok(text)) = v.metric.as_deref().map(protocol::readings::Text::try_from) {
                    let _ = detail.set("metric", Scalar::Text(text));
                }
            }
            out.push(Change {
                code: v.code.clone(),
                active,
                detail,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(toml_text: &str) -> RegisterConfig {
        toml::from_str(toml_text).expect("a register")
    }

    fn resolve(toml_text: &str, class: DeviceClass) -> Resolved {
        reg(toml_text).resolve(class).expect("resolves")
    }

    fn problems(toml_text: &str, class: DeviceClass) -> Vec<Problem> {
        reg(toml_text).resolve(class).expect_err("refused")
    }

    fn number(d: &Decoded) -> f64 {
        match d.value {
            Some(Value::Number(n)) => n,
            other => panic!("not a number: {other:?}"),
        }
    }

    #[test]
    fn a_map_of_before_reads_as_it_did() {
        let r = resolve(
            "table = \"input\"\naddress = 3\ntype = \"u16\"\nscale = 0.001\nmetric = \"network_pressure_mpa\"",
            DeviceClass::Firepump,
        );
        assert_eq!(r.data_type, DataType::U16);
        assert_eq!(r.target, Some(Target::Metric(Named::Known(Metric::NetworkPressureMpa))));
        assert!((number(&r.decode.apply(280.0)) - 0.28).abs() < 1e-12);
        assert!(r.decode.apply(280.0).verdicts.is_empty());
    }

    #[test]
    fn bits_of_a_status_word_with_inversion_for_a_normally_closed_contact() {
        let running = resolve(
            "table = \"holding\"\naddress = 0\nbit = 0\nmetric = \"pump_running\"",
            DeviceClass::Firepump,
        );
        let power_ok = resolve(
            "table = \"holding\"\naddress = 0\nbit = 5\ninvert = true\nmetric = \"main_power_ok\"",
            DeviceClass::Firepump,
        );
        assert_eq!(running.data_type, DataType::U16);
        // 0b0000_0000_0010_0001: running, and the power-failure contact open.
        assert_eq!(running.decode.apply(33.0).value, Some(Value::Bool(true)));
        assert_eq!(power_ok.decode.apply(33.0).value, Some(Value::Bool(false)));
        assert_eq!(power_ok.decode.apply(1.0).value, Some(Value::Bool(true)));
        // The top bit of a signed word.
        let top = resolve(
            "table = \"input\"\naddress = 0\ntype = \"i16\"\nbit = 15\nmetric = \"x\"",
            DeviceClass::Firepump,
        );
        assert_eq!(top.decode.apply(-32768.0).value, Some(Value::Bool(true)));
        assert_eq!(top.decode.apply(32767.0).value, Some(Value::Bool(false)));
        // A bit of a 32-bit word.
        let high = resolve(
            "table = \"input\"\naddress = 0\ntype = \"u32\"\nbit = 17\nmetric = \"x\"",
            DeviceClass::Firepump,
        );
        assert_eq!(high.decode.apply(f64::from(1u32 << 17)).value, Some(Value::Bool(true)));
        // A normally-closed discrete input.
        let nc = resolve(
            "table = \"discrete\"\naddress = 4\ninvert = true\nmetric = \"fire_alarm\"",
            DeviceClass::Firepump,
        );
        assert_eq!(nc.data_type, DataType::Bool);
        assert_eq!(nc.decode.apply(1.0).value, Some(Value::Bool(false)));
        assert_eq!(nc.decode.apply(0.0).value, Some(Value::Bool(true)));
    }

    #[test]
    fn a_bit_or_contact_raises_its_event_while_true() {
        let r = resolve(
            "table = \"holding\"\naddress = 0\nbit = 3\nevent = \"pump_fault\"",
            DeviceClass::Firepump,
        );
        assert_eq!(r.target, None, "an event alone stores nothing");
        let on = r.decode.apply(8.0);
        assert_eq!(on.verdicts.len(), 1);
        assert!(on.verdicts[0].active);
        assert_eq!(on.verdicts[0].code, Named::Known(EventCode::PumpFault));
        assert!(!r.decode.apply(7.0).verdicts[0].active);
    }

    #[test]
    fn a_fault_code_table_raises_the_listed_code_and_clears_the_others() {
        let r = resolve(
            "table = \"holding\"\naddress = 20\ntype = \"u16\"\nmetric = \"fault_code\"\n\
             fault_other = \"controller_fault\"\n\
             [faults]\n0x21 = \"door_open_fault\"\n0x22 = \"door_close_fault\"\n0x23 = \"door_open_fault\"\n48 = \"trapped\"",
            DeviceClass::Elevator,
        );
        let state = |raw: f64| -> Vec<(String, bool)> {
            let mut v: Vec<_> = r
                .decode
                .apply(raw)
                .verdicts
                .into_iter()
                .map(|v| (v.code.as_str().to_owned(), v.active))
                .collect();
            v.sort();
            v
        };
        let raised = |raw: f64| -> Vec<String> { state(raw).into_iter().filter(|x| x.1).map(|x| x.0).collect() };
        assert_eq!(raised(f64::from(0x21)), ["door_open_fault"]);
        assert_eq!(raised(f64::from(0x23)), ["door_open_fault"]);
        assert_eq!(raised(f64::from(0x22)), ["door_close_fault"]);
        assert_eq!(raised(48.0), ["trapped"]);
        assert!(raised(0.0).is_empty());
        assert_eq!(raised(f64::from(0x40)), ["controller_fault"]);
        // Every code of the table has a verdict each poll, once.
        assert_eq!(state(0.0).len(), 4);
        // The raw code is stored as well.
        assert_eq!(number(&r.decode.apply(33.0)), 33.0);
    }

    #[test]
    fn an_enumeration_maps_a_vendor_state_to_ours_and_unlisted_values_to_unknown() {
        let r = resolve(
            "table = \"holding\"\naddress = 21\ntype = \"u16\"\nmetric = \"service_mode\"\n\
             [values]\n0 = 1\n1 = 2\n2 = 3\n3 = 4\n9 = 0",
            DeviceClass::Elevator,
        );
        assert_eq!(r.decode.apply(1.0).value, Some(Value::Number(2.0)));
        assert_eq!(r.decode.apply(9.0).value, Some(Value::Number(0.0)));
        assert_eq!(r.decode.apply(5.0).value, None);
        let auto = resolve(
            "table = \"holding\"\naddress = 22\ntype = \"u16\"\nmetric = \"auto_mode\"\nvalues = { 0 = false, 2 = true }",
            DeviceClass::Firepump,
        );
        assert_eq!(auto.decode.apply(2.0).value, Some(Value::Bool(true)));
        assert_eq!(auto.decode.apply(0.0).value, Some(Value::Bool(false)));
        let bad = problems(
            "table = \"holding\"\naddress = 21\ntype = \"u16\"\nmetric = \"service_mode\"\nvalues = { 0 = 9 }",
            DeviceClass::Elevator,
        );
        assert_eq!(bad[0].0, "values");
        assert!(bad[0].1.contains("0 to 7"), "{bad:?}");
    }

    #[test]
    fn raw_four_to_twenty_milliamp_counts_with_a_broken_loop_as_a_sensor_fault() {
        // 4000..20000 µA ↔ 0..1.6 MPa; NAMUR NE 43: below 3.6 mA or above 21 mA is a loop fault.
        let r = resolve(
            "table = \"input\"\naddress = 30\ntype = \"u16\"\nmetric = \"network_pressure_mpa\"\n\
             raw_min = 4000\nraw_max = 20000\nmin = 0.0\nmax = 1.6\nfault_below = 3600\nfault_above = 21000",
            DeviceClass::Firepump,
        );
        let at = |raw: f64| r.decode.apply(raw);
        assert!((number(&at(4000.0)) - 0.0).abs() < 1e-12);
        assert!((number(&at(12000.0)) - 0.8).abs() < 1e-12);
        assert!((number(&at(20000.0)) - 1.6).abs() < 1e-12);
        // 3.8 mA and 20.5 mA: inside the live band, held to the span.
        assert_eq!(number(&at(3800.0)), 0.0);
        assert_eq!(number(&at(20500.0)), 1.6);
        assert!(!at(12000.0).verdicts[0].active);
        // 0 mA: a cut cable. No value (never a negative pressure), a sensor fault.
        let cut = at(0.0);
        assert_eq!(cut.value, None);
        assert_eq!(cut.verdicts[0].code.as_str(), SENSOR_FAULT);
        assert!(cut.verdicts[0].active);
        assert_eq!(at(25000.0).value, None);
        // Offset and scale: the same transducer as counts of 0.1 % of span above 4 mA … as a line.
        let lin = resolve(
            "table = \"input\"\naddress = 31\ntype = \"i16\"\nmetric = \"ambient_temp_c\"\nscale = 0.1\noffset = -40.0",
            DeviceClass::Charger,
        );
        assert!((number(&lin.decode.apply(650.0)) - 25.0).abs() < 1e-12);
    }

    #[test]
    fn problems_name_their_key() {
        let keys = |text: &str, class| problems(text, class).into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        let base = "table = \"holding\"\naddress = 1\n";
        let f = DeviceClass::Firepump;
        assert_eq!(keys(&format!("{base}metric = \"x\""), f), ["type"]);
        assert_eq!(keys(&format!("{base}bit = 16\nmetric = \"x\""), f), ["bit"]);
        assert_eq!(
            keys(&format!("{base}type = \"f32\"\nbit = 1\nmetric = \"x\""), f),
            ["bit"]
        );
        assert_eq!(
            keys("table = \"coil\"\naddress = 1\nbit = 1\nmetric = \"x\"", f),
            ["bit"]
        );
        assert_eq!(
            keys(&format!("{base}type = \"u16\"\ninvert = true\nmetric = \"x\""), f),
            ["invert"]
        );
        assert_eq!(
            keys(&format!("{base}type = \"u16\"\nevent = \"pump_fault\""), f),
            ["event"]
        );
        assert_eq!(keys(&format!("{base}bit = 1\nevent = \"trapped\""), f), ["event"]);
        assert_eq!(keys(&format!("{base}bit = 1\nevent = \"offline\""), f), ["event"]);
        assert_eq!(keys(&format!("{base}bit = 1\nevent = \"self_test\""), f), ["event"]);
        assert_eq!(
            keys(
                &format!("{base}bit = 1\nevent = \"over_temperature\""),
                DeviceClass::Charger
            ),
            ["event"]
        );
        assert_eq!(
            keys(&format!("{base}type = \"u16\"\nraw_min = 1\nmetric = \"x\""), f),
            ["raw_max"]
        );
        assert_eq!(
            keys(
                &format!("{base}type = \"u16\"\nraw_min = 5\nraw_max = 5\nmin = 0\nmax = 1\nmetric = \"x\""),
                f
            ),
            ["raw_max"]
        );
        assert_eq!(
            keys(
                &format!("{base}type = \"u16\"\nfault_event = \"sensor_fault\"\nmetric = \"x\""),
                f
            ),
            ["fault_event"]
        );
        assert_eq!(
            keys(
                &format!("{base}type = \"f32\"\nmetric = \"x\"\nfaults = {{ 0x21 = \"pump_fault\" }}"),
                f
            ),
            ["faults"]
        );
        assert_eq!(
            keys(&format!("{base}type = \"u16\"\nfaults = {{ zz = \"pump_fault\" }}"), f),
            ["faults"]
        );
        assert_eq!(
            keys(
                &format!("{base}type = \"u16\"\nfaults = {{ 70000 = \"pump_fault\" }}"),
                f
            ),
            ["faults"]
        );
        assert_eq!(
            keys(&format!("{base}type = \"u16\"\nfault_other = \"pump_fault\""), f),
            ["fault_other", "metric"]
        );
        assert_eq!(keys(&format!("{base}type = \"u16\""), f), ["metric"]);
        assert_eq!(
            keys(&format!("{base}type = \"u16\"\nmetric = \"Bad-Name\""), f),
            ["metric"]
        );
    }

    fn change(c: &Change) -> (String, bool) {
        (c.code.as_str().to_owned(), c.active)
    }

    #[test]
    fn events_are_announced_on_their_edges_across_registers() {
        let status = resolve(
            "table = \"holding\"\naddress = 0\nbit = 2\nevent = \"pump_fault\"",
            DeviceClass::Firepump,
        )
        .decode;
        let table = resolve(
            "table = \"holding\"\naddress = 1\ntype = \"u16\"\nfaults = { 5 = \"pump_fault\", 6 = \"backup_power_fault\" }",
            DeviceClass::Firepump,
        )
        .decode;
        let poll = |s: &mut EventState, word: Option<f64>, code: Option<f64>| -> Vec<(String, bool)> {
            let mut verdicts = Vec::new();
            if let Some(w) = word {
                verdicts.extend(status.apply(w).verdicts.into_iter().map(|v| (0, v)));
            }
            if let Some(c) = code {
                verdicts.extend(table.apply(c).verdicts.into_iter().map(|v| (1, v)));
            }
            let mut out: Vec<_> = s.update(verdicts).iter().map(change).collect();
            out.sort();
            out
        };
        let mut s = EventState::default();
        // The first verdicts announce every code, clear ones too.
        assert_eq!(
            poll(&mut s, Some(0.0), Some(0.0)),
            [("backup_power_fault".into(), false), ("pump_fault".into(), false)]
        );
        assert!(poll(&mut s, Some(0.0), Some(0.0)).is_empty(), "nothing changed");
        assert_eq!(poll(&mut s, Some(4.0), Some(0.0)), [("pump_fault".into(), true)]);
        // The table says it too; then the bit clears while the table holds it.
        assert!(poll(&mut s, Some(4.0), Some(5.0)).is_empty());
        assert!(
            poll(&mut s, Some(0.0), Some(5.0)).is_empty(),
            "still raised by the fault code"
        );
        // A register not read this poll keeps its last verdict.
        assert!(poll(&mut s, None, Some(5.0)).is_empty());
        assert_eq!(
            poll(&mut s, Some(0.0), Some(6.0)),
            [("backup_power_fault".into(), true), ("pump_fault".into(), false)]
        );
    }

    #[test]
    fn a_raised_event_carries_its_register_and_raw_value() {
        let r = resolve(
            "table = \"input\"\naddress = 30\ntype = \"u16\"\nmetric = \"network_pressure_mpa\"\n\
             raw_min = 4000\nraw_max = 20000\nmin = 0.0\nmax = 1.6\nfault_below = 3600",
            DeviceClass::Firepump,
        )
        .decode;
        let mut s = EventState::default();
        let verdicts = r.apply(120.0).verdicts.into_iter().map(|v| (0, v));
        let out = s.update(verdicts);
        assert_eq!(out.len(), 1);
        let d = &out[0].detail;
        assert_eq!(d.get("address"), Some(&Scalar::Number(30.0)));
        assert_eq!(d.get("raw"), Some(&Scalar::Number(120.0)));
        assert!(
            matches!(d.get("metric"), Some(Scalar::Text(t)) if t.as_str() == "network_pressure_mpa"),
            "{d:?}"
        );
    }
}
