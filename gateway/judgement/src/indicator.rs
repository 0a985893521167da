//! The indicators, and how one bucket's value of each is gathered from a
//! device's samples as they arrive (edges, durations, means), with the
//! device's last values kept to see the edges.
//!
//! Every formula is in docs/judgement.md; the table [`DEFS`] is the one
//! place an indicator is defined.

use serde::{Deserialize, Serialize};

use crate::trend::Worse;

/// How an indicator's bucket value is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Events per observed hour: needs the bucket's coverage.
    Rate,
    /// The mean of the values taken; needs `min_n` of them.
    Mean,
}

/// One indicator.
#[derive(Clone, Copy, Debug)]
pub struct Def {
    /// Its id, the `metric` of a reason.
    pub id: &'static str,
    /// The class of device.
    pub class: &'static str,
    /// Judged per charging port.
    pub per_port: bool,
    /// The unit of its value.
    pub unit: &'static str,
    /// Which way is worse.
    pub worse: Worse,
    /// The least spread assumed (its resolution), in its unit.
    pub floor: f64,
    /// Rate or mean.
    pub kind: Kind,
    /// Values a mean needs in a bucket.
    pub min_n: u32,
    /// Chinese first, English beside it.
    pub label: &'static str,
}

/// Every indicator.
pub const DEFS: &[Def] = &[
    Def {
        id: "door_reopens_per_stop",
        class: "elevator",
        per_port: false,
        unit: "1/stop",
        worse: Worse::Up,
        floor: 0.02,
        kind: Kind::Mean,
        min_n: 20,
        label: "重复开门 · door reopenings per stop",
    },
    Def {
        id: "door_open_s",
        class: "elevator",
        per_port: false,
        unit: "s",
        worse: Worse::Up,
        floor: 0.2,
        kind: Kind::Mean,
        min_n: 5,
        label: "开关门时间 · door open-to-closed time",
    },
    Def {
        id: "levelling_miss_share",
        class: "elevator",
        per_port: false,
        unit: "1/stop",
        worse: Worse::Up,
        floor: 0.01,
        kind: Kind::Mean,
        min_n: 20,
        label: "平层不准 · share of stops outside the door zone",
    },
    Def {
        id: "jockey_starts_per_h",
        class: "firepump",
        per_port: false,
        unit: "1/h",
        worse: Worse::Up,
        floor: 0.2,
        kind: Kind::Rate,
        min_n: 0,
        label: "稳压泵启动频次 · jockey pump starts per hour",
    },
    Def {
        id: "pressure_decay_mpa_per_h",
        class: "firepump",
        per_port: false,
        unit: "MPa/h",
        worse: Worse::Up,
        floor: 0.002,
        kind: Kind::Mean,
        min_n: 1,
        label: "管网压降 · pressure decay between jockey cycles",
    },
    Def {
        id: "start_latency_s",
        class: "firepump",
        per_port: false,
        unit: "s",
        worse: Worse::Up,
        floor: 1.0,
        kind: Kind::Mean,
        min_n: 1,
        label: "自检启泵时间 · pump start latency on self-tests",
    },
    Def {
        id: "temp_rise_c_per_kw",
        class: "charger",
        per_port: true,
        unit: "°C/kW",
        worse: Worse::Up,
        floor: 1.0,
        kind: Kind::Mean,
        min_n: 10,
        label: "单位功率温升 · temperature rise per kW",
    },
    Def {
        id: "leakage_ma",
        class: "charger",
        per_port: false,
        unit: "mA",
        worse: Worse::Up,
        floor: 0.5,
        kind: Kind::Mean,
        min_n: 10,
        label: "漏电流 · leakage current",
    },
];

/// The definition of an indicator id.
#[must_use]
pub fn def(id: &str) -> Option<&'static Def> {
    DEFS.iter().find(|d| d.id == id)
}

/// A door open longer than this is parked or held, not a door cycle.
pub const DOOR_CYCLE_MAX_MS: i64 = 120_000;
/// A pump start further than this from the test's start is not its answer.
pub const START_LATENCY_MAX_MS: i64 = 600_000;
/// Jockey pauses shorter than this give no usable decay figure.
pub const DECAY_MIN_MS: i64 = 60_000;
/// A charging port below this power says nothing of its heating.
pub const TEMP_RISE_MIN_W: f64 = 100.0;

/// One bucket's gathering for one indicator.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Acc {
    /// Events counted (rates) or values summed (means).
    pub sum: f64,
    /// Values taken (means).
    pub n: u32,
}

impl Acc {
    fn add(&mut self, v: f64) {
        if v.is_finite() {
            self.sum += v;
            self.n += 1;
        }
    }
}

/// A device's last values, to see edges between its samples.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Live {
    /// When its last live sample was received.
    pub at: Option<i64>,
    /// Last values by metric (port metrics as `name#port`).
    pub values: Vec<(String, f64)>,
    /// Elevator: when the doors last opened, and whether the car ran since.
    pub door_opened_at: Option<i64>,
    /// Elevator: the car ran since the doors last opened (a reopening needs it not to).
    pub ran_since_open: bool,
    /// Elevator: the doors have opened at this stop already.
    pub opened_this_stop: bool,
    /// Elevator: the car has stopped since it last ran (a stop to count).
    pub stopped: bool,
    /// Elevator: reopenings at this stop so far.
    pub reopens: u32,
    /// Fire pump: when the jockey pump stopped, and the pressure then.
    pub jockey_stopped: Option<(i64, f64)>,
    /// Fire pump: when a self-test (or start signal) began.
    pub test_started: Option<i64>,
}

impl Live {
    /// A last value.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<f64> {
        self.values.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    fn set(&mut self, name: &str, v: f64) {
        match self.values.iter_mut().find(|(n, _)| n == name) {
            Some(x) => x.1 = v,
            None => self.values.push((name.to_owned(), v)),
        }
    }
}

/// One reading of a sample: metric, port (0 for the device), value.
pub type Reading<'a> = (&'a str, u8, f64);

fn port_name(metric: &str, port: u8) -> String {
    if port == 0 {
        metric.to_owned()
    } else {
        format!("{metric}#{port}")
    }
}

/// What a sample adds to the bucket: (indicator, port, value) — a value of
/// 1 is one event for a rate.
pub type Added = Vec<(&'static str, u8, f64)>;

/// Takes one live sample of a device: updates its last values and returns
/// what it adds to the indicators. `edges` is false when the sample follows
/// a silence longer than the gap: the state in between is unknown, so no
/// edge or duration is counted across it.
pub fn take(class: &str, live: &mut Live, now: i64, readings: &[Reading<'_>], edges: bool) -> Added {
    let mut out = Added::new();
    let prev = |live: &Live, m: &str| live.get(m);
    let new = |m: &str, port: u8| {
        readings
            .iter()
            .rev()
            .find(|(n, p, _)| *n == m && *p == port)
            .map(|r| r.2)
    };
    match class {
        "elevator" => elevator(live, now, edges, &new, &prev, &mut out),
        "firepump" => firepump(live, now, edges, &new, &prev, &mut out),
        "charger" => charger(live, edges, readings, &new, &prev, &mut out),
        _ => {}
    }
    for (m, p, v) in readings {
        live.set(&port_name(m, *p), *v);
    }
    live.at = Some(now);
    out
}

type New<'a> = dyn Fn(&str, u8) -> Option<f64> + 'a;
type Prev<'a> = dyn Fn(&Live, &str) -> Option<f64> + 'a;

fn flag(v: Option<f64>) -> Option<bool> {
    v.map(|x| x != 0.0)
}

fn elevator(live: &mut Live, now: i64, edges: bool, new: &New<'_>, prev: &Prev<'_>, out: &mut Added) {
    // Only normal service is judged: an inspection run (service mode 2), a
    // fire return or a car out of service has door and stop patterns of its own.
    let mode = new("service_mode", 0).or_else(|| prev(live, "service_mode"));
    let normal = mode.is_none_or(|m| m == 1.0);
    let was_running = flag(prev(live, "running"));
    let running = flag(new("running", 0));
    let was_closed = flag(prev(live, "door_closed"));
    let closed = flag(new("door_closed", 0));
    let zone = flag(new("door_zone", 0).or_else(|| prev(live, "door_zone")));
    if !edges || !normal {
        // State unknown in between, or not judged: start afresh.
        live.door_opened_at = None;
        live.opened_this_stop = false;
        live.ran_since_open = false;
        live.stopped = false;
        live.reopens = 0;
        return;
    }
    if let (Some(false), Some(true)) = (was_running, running) {
        // Departure: the stop before it is complete.
        if live.stopped {
            out.push(("door_reopens_per_stop", 0, f64::from(live.reopens)));
        }
        live.stopped = false;
        live.reopens = 0;
        live.ran_since_open = true;
        live.opened_this_stop = false;
    }
    if let (Some(true), Some(false)) = (was_running, running) {
        live.stopped = true;
        if let Some(z) = zone {
            out.push(("levelling_miss_share", 0, if z { 0.0 } else { 1.0 }));
        }
    }
    match (was_closed, closed) {
        (Some(true), Some(false)) => {
            if live.opened_this_stop && !live.ran_since_open {
                live.reopens += 1;
            }
            live.opened_this_stop = true;
            live.ran_since_open = false;
            live.door_opened_at = Some(now);
        }
        (Some(false), Some(true)) => {
            if let Some(t) = live.door_opened_at.take() {
                let d = now - t;
                if (0..=DOOR_CYCLE_MAX_MS).contains(&d) {
                    #[allow(clippy::cast_precision_loss)]
                    out.push(("door_open_s", 0, d as f64 / 1000.0));
                }
            }
        }
        _ => {}
    }
}

fn firepump(live: &mut Live, now: i64, edges: bool, new: &New<'_>, prev: &Prev<'_>, out: &mut Added) {
    if !edges {
        live.jockey_stopped = None;
        live.test_started = None;
        return;
    }
    let pressure = new("network_pressure_mpa", 0).or_else(|| prev(live, "network_pressure_mpa"));
    let was = flag(prev(live, "jockey_running"));
    let is = flag(new("jockey_running", 0));
    match (was, is) {
        (Some(false), Some(true)) => {
            out.push(("jockey_starts_per_h", 0, 1.0));
            if let (Some((t, p0)), Some(p1)) = (live.jockey_stopped.take(), pressure) {
                let dt = now - t;
                if dt >= DECAY_MIN_MS {
                    #[allow(clippy::cast_precision_loss)]
                    out.push(("pressure_decay_mpa_per_h", 0, (p0 - p1) / (dt as f64 / 3_600_000.0)));
                }
            }
        }
        (Some(true), Some(false)) => {
            live.jockey_stopped = pressure.map(|p| (now, p));
        }
        _ => {}
    }
    for m in ["self_test_running", "start_signal"] {
        if let (Some(false), Some(true)) = (flag(prev(live, m)), flag(new(m, 0))) {
            live.test_started = Some(now);
        }
    }
    if let (Some(false), Some(true)) = (flag(prev(live, "pump_running")), flag(new("pump_running", 0)))
        && let Some(t) = live.test_started.take()
    {
        let d = now - t;
        if (0..=START_LATENCY_MAX_MS).contains(&d) {
            #[allow(clippy::cast_precision_loss)]
            out.push(("start_latency_s", 0, d as f64 / 1000.0));
        }
    }
}

fn charger(live: &Live, edges: bool, readings: &[Reading<'_>], new: &New<'_>, prev: &Prev<'_>, out: &mut Added) {
    if let Some(l) = new("leakage_ma", 0) {
        out.push(("leakage_ma", 0, l));
    }
    let ambient = new("ambient_temp_c", 0).or_else(|| prev(live, "ambient_temp_c"));
    let mut ports: Vec<u8> = readings.iter().filter(|r| r.1 > 0).map(|r| r.1).collect();
    ports.dedup();
    for p in ports {
        let get = |m: &str| new(m, p).or_else(|| prev(live, &port_name(m, p)));
        let state = get("state");
        if edges && new("state", p) == Some(4.0) && prev(live, &port_name("state", p)).is_some_and(|s| s != 4.0) {
            out.push(("cutoffs", p, 1.0));
        }
        if let (Some(state), Some(w), Some(t), Some(a)) = (state, get("power_w"), new("temp_c", p), ambient)
            && state == 1.0
            && w >= TEMP_RISE_MIN_W
        {
            out.push(("temp_rise_c_per_kw", p, (t - a) / (w / 1000.0)));
        }
    }
}

/// Adds a sample's contributions to a bucket's gatherings.
pub fn add(accs: &mut Vec<(String, u8, Acc)>, added: &Added) {
    for (id, port, v) in added {
        if let Some((_, _, a)) = accs.iter_mut().find(|(i, p, _)| i == id && p == port) {
            a.add(*v);
        } else {
            let mut a = Acc::default();
            a.add(*v);
            accs.push(((*id).to_owned(), *port, a));
        }
    }
}
