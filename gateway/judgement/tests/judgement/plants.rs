//! Synthetic plants for the judgement tests: an elevator in traffic, a
//! fire water network with its jockey pump and weekly self-test, a
//! charging bay with sessions at random. Event-driven (a sample at every
//! change and one a minute), seeded, with per-day parameters so a drift or
//! a change point has a known start.
//!
//! What "normal" is here, and why (docs/judgement.md quotes it): traffic of
//! 1 trip an hour at night, 8 by day and 20 in the rush hours, 30 % less
//! daytime traffic at weekends; doors open 4 s ± 15 %, 5 % of stops with a
//! reopening, 1 % outside the door zone; network pressure falling
//! 0.01 MPa/h ± 10 % between 0.35 and 0.30 MPa (a jockey start every five
//! hours, within what GB 50974 expects of a tight network); a weekly
//! self-test whose pump starts in 4 ± 1 s; charging sessions of 2–6 h at
//! 150–250 W heating a port 40 °C/kW above an ambient swinging ±6 °C a day,
//! 3 ± 0.3 mA of leakage.

use std::collections::VecDeque;

/// 2025-11-03T00:00:00+08:00, a Monday at midnight in China.
pub(crate) const T0: i64 = 1_762_099_200_000;
/// A day in ms.
pub(crate) const DAY: i64 = 86_400_000;
const MIN: i64 = 60_000;

type Readings = Vec<(&'static str, u8, f64)>;

/// A lift's parameters for a day.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Lift {
    pub(crate) door_s: f64,
    pub(crate) reopen_p: f64,
    pub(crate) miss_p: f64,
}

impl Default for Lift {
    fn default() -> Self {
        Lift {
            door_s: 4.0,
            reopen_p: 0.05,
            miss_p: 0.01,
        }
    }
}

/// A fire water network's parameters for a day.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pump {
    pub(crate) decay_mpa_per_h: f64,
    pub(crate) latency_s: f64,
}

impl Default for Pump {
    fn default() -> Self {
        Pump {
            decay_mpa_per_h: 0.01,
            latency_s: 4.0,
        }
    }
}

/// A charging port's parameters for a day.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bay {
    pub(crate) rise_c_per_kw: f64,
}

impl Default for Bay {
    fn default() -> Self {
        Bay { rise_c_per_kw: 40.0 }
    }
}

enum Kind {
    Elevator {
        params: Box<dyn Fn(i64) -> Lift>,
        running: bool,
        closed: bool,
        zone: bool,
        next_trip: i64,
    },
    Firepump {
        params: Box<dyn Fn(i64) -> Pump>,
        /// Pressure at `since`, and falling at `rate` from then (or rising while the jockey runs).
        p: f64,
        since: i64,
        rate: f64,
        jockey: bool,
        test: bool,
        pump: bool,
        next_test: i64,
    },
    Charger {
        params: Box<dyn Fn(i64, u8) -> Bay>,
        /// Per port: charging, power, session start, session end or next start, rise at the end.
        ports: Vec<(bool, f64, i64, i64, f64)>,
    },
}

/// One plant and its node.
pub(crate) struct Plant {
    pub(crate) site: String,
    pub(crate) class: &'static str,
    pub(crate) id: String,
    pub(crate) silent: Option<(i64, i64)>,
    rng: fastrand::Rng,
    kind: Kind,
    /// Changes decided ahead, in time order.
    queue: VecDeque<(i64, Readings)>,
    next_minute: i64,
}

fn day_of(t: i64) -> i64 {
    (t - T0).div_euclid(DAY)
}

fn hour_of(t: i64) -> i64 {
    (t - T0).rem_euclid(DAY) / 3_600_000
}

fn noise(rng: &mut fastrand::Rng, sd: f64) -> f64 {
    // Sum of uniforms, close enough to normal for noise.
    (0..6).map(|_| rng.f64() - 0.5).sum::<f64>() * sd * 1.414
}

fn ms(s: f64) -> i64 {
    #[allow(clippy::cast_possible_truncation)]
    let m = (s * 1000.0).round() as i64;
    m
}

impl Plant {
    fn new(id: &str, class: &'static str, seed: u64, kind: Kind) -> Plant {
        Plant {
            site: "lakeside".into(),
            class,
            id: id.into(),
            silent: None,
            rng: fastrand::Rng::with_seed(seed),
            kind,
            queue: VecDeque::new(),
            next_minute: T0,
        }
    }

    pub(crate) fn elevator(id: &str, seed: u64, params: impl Fn(i64) -> Lift + 'static) -> Plant {
        Plant::new(
            id,
            "elevator",
            seed,
            Kind::Elevator {
                params: Box::new(params),
                running: false,
                closed: true,
                zone: true,
                next_trip: T0 + 30_000,
            },
        )
    }

    pub(crate) fn firepump(id: &str, seed: u64, params: impl Fn(i64) -> Pump + 'static) -> Plant {
        Plant::new(
            id,
            "firepump",
            seed,
            Kind::Firepump {
                params: Box::new(params),
                p: 0.35,
                since: T0,
                rate: -0.01,
                jockey: false,
                test: false,
                pump: false,
                next_test: T0 + 3 * DAY + 10 * 3_600_000,
            },
        )
    }

    pub(crate) fn charger(id: &str, seed: u64, params: impl Fn(i64, u8) -> Bay + 'static) -> Plant {
        Plant::new(
            id,
            "charger",
            seed,
            Kind::Charger {
                params: Box::new(params),
                ports: (0..4)
                    .map(|i| (false, 0.0, T0, T0 + i64::from(i) * 1_800_000, 0.0))
                    .collect(),
            },
        )
    }

    /// Every sample before `t`, in time order.
    pub(crate) fn until(&mut self, t: i64) -> Vec<(i64, Readings)> {
        let mut out = Vec::new();
        loop {
            self.plan(t);
            let next_change = self.queue.front().map_or(i64::MAX, |(at, _)| *at);
            if next_change >= t && self.next_minute >= t {
                break;
            }
            if next_change < self.next_minute {
                let (at, r) = self.queue.pop_front().expect("planned");
                let r = self.apply(at, r);
                out.push((at, r));
            } else {
                let at = self.next_minute;
                self.next_minute += MIN;
                let r = self.state(at);
                out.push((at, r));
            }
        }
        out.retain(|(at, _)| !self.silent.is_some_and(|(a, b)| *at >= a && *at < b));
        out
    }

    /// Plans changes up to `t`.
    fn plan(&mut self, t: i64) {
        let rng = &mut self.rng;
        match &mut self.kind {
            Kind::Elevator { params, next_trip, .. } => {
                while *next_trip < t && self.queue.back().is_none_or(|(at, _)| *at < t) {
                    let t0 = *next_trip;
                    let p = params(day_of(t0));
                    let travel = 8_000 + i64::from(rng.u32(0..12_000));
                    let miss = rng.f64() < p.miss_p;
                    let mut at = t0;
                    let mut q = Vec::new();
                    q.push((
                        at,
                        vec![("running", 0, 1.0), ("door_closed", 0, 1.0), ("door_zone", 0, 0.0)],
                    ));
                    at += travel;
                    q.push((
                        at,
                        vec![("running", 0, 0.0), ("door_zone", 0, if miss { 0.0 } else { 1.0 })],
                    ));
                    at += 1_000;
                    q.push((at, vec![("door_closed", 0, 0.0)]));
                    at += ms((p.door_s * (1.0 + noise(rng, 0.15))).max(1.0));
                    q.push((at, vec![("door_closed", 0, 1.0)]));
                    if rng.f64() < p.reopen_p {
                        at += 1_000;
                        q.push((at, vec![("door_closed", 0, 0.0)]));
                        at += ms(3.0 + noise(rng, 0.5));
                        q.push((at, vec![("door_closed", 0, 1.0)]));
                    }
                    let weekend = day_of(t0).rem_euclid(7) >= 5;
                    let h = hour_of(t0);
                    let mut rate: f64 = match h {
                        0..=5 => 1.0,
                        7..=8 | 17..=19 => 20.0,
                        _ => 8.0,
                    };
                    if weekend && h > 5 {
                        rate *= 0.7;
                    }
                    let gap = -(1.0 - rng.f64()).ln() / rate * 3_600_000.0;
                    #[allow(clippy::cast_possible_truncation)]
                    let gap = gap as i64;
                    *next_trip = at + 2_000 + gap;
                    self.queue.extend(q);
                }
            }
            Kind::Firepump {
                p,
                since,
                rate,
                jockey,
                next_test,
                params,
                ..
            } => {
                // One jockey change ahead at a time, applied when it is due,
                // so the minute samples between read the state of their time.
                if !self.queue.iter().any(|(_, r)| r[0].0 == "__jockey") {
                    #[allow(clippy::cast_possible_truncation)]
                    let at = if *jockey {
                        *since + 75_000
                    } else {
                        *since + ((0.30 - *p) / *rate) as i64
                    };
                    self.queue.push_back((at, vec![("__jockey", 0, 0.0)]));
                }
                while *next_test < t {
                    let t0 = *next_test;
                    let d = params(day_of(t0));
                    let start = t0 + ms((d.latency_s + noise(rng, 1.0)).max(0.5));
                    self.queue.push_back((t0, vec![("self_test_running", 0, 1.0)]));
                    self.queue.push_back((start, vec![("pump_running", 0, 1.0)]));
                    self.queue.push_back((
                        start + 120_000,
                        vec![("pump_running", 0, 0.0), ("self_test_running", 0, 0.0)],
                    ));
                    *next_test += 7 * DAY;
                }
                self.queue.make_contiguous().sort_by_key(|(at, _)| *at);
            }
            Kind::Charger { ports, .. } => {
                if self.queue.is_empty()
                    && let Some((i, p)) = ports.iter().enumerate().min_by_key(|(_, p)| p.3)
                {
                    self.queue
                        .push_back((p.3, vec![("__port", u8::try_from(i + 1).expect("4 ports"), 0.0)]));
                }
            }
        }
    }

    /// Applies a change that is due; returns what the node sends of it.
    fn apply(&mut self, now: i64, r: Readings) -> Readings {
        let rng = &mut self.rng;
        match (&mut self.kind, r[0].0) {
            (
                Kind::Firepump {
                    params,
                    p,
                    since,
                    rate,
                    jockey,
                    ..
                },
                "__jockey",
            ) => {
                *since = now;
                if *jockey {
                    *p = 0.35;
                    let d = params(day_of(now));
                    *rate = -d.decay_mpa_per_h * (1.0 + noise(rng, 0.1)) / 3_600_000.0;
                    *jockey = false;
                    return vec![("jockey_running", 0, 0.0), ("network_pressure_mpa", 0, 0.35)];
                }
                *p = 0.30;
                *rate = 0.05 / 75_000.0;
                *jockey = true;
                return vec![("jockey_running", 0, 1.0), ("network_pressure_mpa", 0, 0.30)];
            }
            (Kind::Charger { params, ports }, "__port") => {
                let port = r[0].1;
                let i = usize::from(port - 1);
                let (charging, power, start, next, _) = ports[i];
                let d = params(day_of(next), port);
                if charging {
                    #[allow(clippy::cast_precision_loss)]
                    let rise =
                        d.rise_c_per_kw * power / 1000.0 * (1.0 - (-((next - start) as f64) / 1_200_000.0).exp());
                    let idle = -(1.0 - rng.f64()).ln() * 4.0 * 3_600_000.0;
                    #[allow(clippy::cast_possible_truncation)]
                    let idle = idle as i64 + 60_000;
                    ports[i] = (false, 0.0, next, next + idle, rise);
                    return vec![("state", port, 0.0), ("power_w", port, 0.0)];
                }
                let power = 150.0 + rng.f64() * 100.0;
                let len = 2 * 3_600_000 + i64::from(rng.u32(0..4 * 3_600_000));
                ports[i] = (true, power, next, next + len, 0.0);
                return vec![("state", port, 1.0), ("power_w", port, power)];
            }
            _ => {}
        }
        for (m, _, v) in &r {
            match &mut self.kind {
                Kind::Elevator {
                    running, closed, zone, ..
                } => match *m {
                    "running" => *running = *v != 0.0,
                    "door_closed" => *closed = *v != 0.0,
                    "door_zone" => *zone = *v != 0.0,
                    _ => {}
                },
                Kind::Firepump { test, pump, .. } => match *m {
                    "self_test_running" => *test = *v != 0.0,
                    "pump_running" => *pump = *v != 0.0,
                    _ => {}
                },
                Kind::Charger { .. } => {}
            }
        }
        r
    }

    /// A whole sample of the state at `at` (the node's minute report).
    fn state(&mut self, at: i64) -> Readings {
        let rng = &mut self.rng;
        match &self.kind {
            Kind::Elevator {
                running, closed, zone, ..
            } => vec![
                ("running", 0, f64::from(u8::from(*running))),
                ("door_closed", 0, f64::from(u8::from(*closed))),
                ("door_zone", 0, f64::from(u8::from(*zone))),
                ("service_mode", 0, 1.0),
            ],
            Kind::Firepump {
                p,
                since,
                rate,
                jockey,
                test,
                pump,
                ..
            } => {
                #[allow(clippy::cast_precision_loss)]
                let now_p = p + rate * (at - since) as f64 + noise(rng, 0.001);
                vec![
                    ("network_pressure_mpa", 0, now_p),
                    ("jockey_running", 0, f64::from(u8::from(*jockey))),
                    ("pump_running", 0, f64::from(u8::from(*pump))),
                    ("self_test_running", 0, f64::from(u8::from(*test))),
                ]
            }
            Kind::Charger { params, ports } => {
                #[allow(clippy::cast_precision_loss)]
                let hour = (at - T0).rem_euclid(DAY) as f64 / 3_600_000.0;
                let ambient = 22.0 + 6.0 * ((hour - 9.0) / 24.0 * std::f64::consts::TAU).sin();
                let mut r = vec![
                    ("ambient_temp_c", 0, ambient + noise(rng, 0.2)),
                    ("leakage_ma", 0, 3.0 + noise(rng, 0.3)),
                ];
                for (i, (charging, power, start, _, end_rise)) in ports.iter().enumerate() {
                    let port = u8::try_from(i + 1).expect("4 ports");
                    #[allow(clippy::cast_precision_loss)]
                    let dt = (at - start) as f64 / 1_200_000.0;
                    let rise = if *charging {
                        params(day_of(at), port).rise_c_per_kw * power / 1000.0 * (1.0 - (-dt).exp())
                    } else {
                        end_rise * (-dt).exp()
                    };
                    r.push(("state", port, if *charging { 1.0 } else { 0.0 }));
                    r.push(("power_w", port, *power + if *charging { noise(rng, 2.0) } else { 0.0 }));
                    r.push(("temp_c", port, ambient + rise + noise(rng, 0.3)));
                }
                r
            }
        }
    }
}
