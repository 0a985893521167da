//! The bureau's monthly report of one compound: faults by class and code,
//! response and arrival times, each order against its own deadlines (3 min
//! to respond to a trapped passenger, 30 min for a door fault; on site in
//! 10 min for a smoking bay, 2 h for a door fault), as rates per deadline
//! and overall with percentiles, missed deadlines, and periodic duty
//! compliance. Pure: the gateway reads the month's alerts and orders
//! from its store and hands them here; JSON and CSV come from one value.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::order::{Kind, Order, Status};

/// Months are calendar months in China's time (UTC+8).
pub const OFFSET_S: i32 = 8 * 3600;

/// A month, `2026-11`, with its bounds in ms (UTC+8 midnight to midnight).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Month {
    /// `2026-11`.
    pub month: String,
    /// First instant (inclusive).
    pub from: i64,
    /// First instant of the next month (exclusive).
    pub to: i64,
}

impl Month {
    /// Parses `YYYY-MM`.
    ///
    /// # Errors
    /// A message naming the text.
    pub fn parse(text: &str) -> Result<Month, String> {
        let bad = || format!("`{text}` is not a month (2026-11)");
        let (y, m) = text.split_once('-').ok_or_else(bad)?;
        let year: i32 = y.parse().map_err(|_| bad())?;
        let month: u8 = m.parse().map_err(|_| bad())?;
        let month = time::Month::try_from(month).map_err(|_| bad())?;
        let start = |y: i32, m: time::Month| -> Result<i64, String> {
            let d = time::Date::from_calendar_date(y, m, 1).map_err(|_| bad())?;
            let off = time::UtcOffset::from_whole_seconds(OFFSET_S).map_err(|_| bad())?;
            Ok(d.midnight().assume_offset(off).unix_timestamp() * 1000)
        };
        let (ny, nm) = if month == time::Month::December {
            (year + 1, time::Month::January)
        } else {
            (year, month.next())
        };
        Ok(Month {
            month: format!("{year:04}-{:02}", u8::from(month)),
            from: start(year, month)?,
            to: start(ny, nm)?,
        })
    }

    /// Whether `ms` falls in it.
    #[must_use]
    pub fn contains(&self, ms: i64) -> bool {
        (self.from..self.to).contains(&ms)
    }
}

/// Faults of one class and code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FaultCount {
    /// The class.
    pub class: String,
    /// The code.
    pub code: String,
    /// Alerts that fired in the month.
    pub count: u64,
}

/// Orders of one deadline (all with the same time allowed for the step).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DeadlineGroup {
    /// The time allowed (seconds from dispatch).
    pub deadline_s: i64,
    /// Orders with it.
    pub orders: u64,
    /// Of those, how many took the step.
    pub done: u64,
    /// Of those, how many by their deadline.
    pub within: u64,
    /// `within / orders`.
    pub rate: Option<f64>,
}

/// Times of one step, each order against its own deadline.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Kpi {
    /// The time allowed when every order of the month had the same one
    /// (seconds); `null` when they differ (see `by_deadline`) or without orders.
    pub kpi_s: Option<i64>,
    /// Corrective orders dispatched in the month.
    pub orders: u64,
    /// Of those, how many took the step.
    pub done: u64,
    /// Of those, how many by their own deadline (the order's SLA: 3 min to
    /// respond to a trapped passenger, 30 min for a door fault).
    pub within_kpi: u64,
    /// `within_kpi / orders` (an order never stepped counts as missing its
    /// deadline); `null` without orders.
    pub rate: Option<f64>,
    /// The same per deadline, shortest first.
    pub by_deadline: Vec<DeadlineGroup>,
    /// Median seconds (nearest rank), of the orders that took the step.
    pub p50_s: Option<f64>,
    /// 90th percentile seconds.
    pub p90_s: Option<f64>,
    /// 95th percentile seconds.
    pub p95_s: Option<f64>,
    /// The longest.
    pub max_s: Option<f64>,
}

/// Missed deadlines of one kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Missed {
    /// `respond`, `arrive`, `complete`, `bureau`.
    pub deadline: String,
    /// How many orders of the month missed it.
    pub count: u64,
}

/// Compliance of one periodic duty.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DutyCompliance {
    /// The class.
    pub class: String,
    /// The duty.
    pub duty: String,
    /// Preventive orders due in the month.
    pub due: u64,
    /// Done by their due time.
    pub on_time: u64,
    /// Done after it.
    pub late: u64,
    /// Not done and past due.
    pub missed: u64,
    /// Not yet due at report time.
    pub pending: u64,
    /// `on_time / (due - pending)`; `null` when nothing has fallen due.
    pub rate: Option<f64>,
}

/// Orders by outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OrderCounts {
    /// Corrective orders dispatched in the month.
    pub corrective: u64,
    /// Completed.
    pub completed: u64,
    /// False alarms.
    pub false_alarms: u64,
    /// Still open at report time.
    pub open: u64,
    /// Flagged for the bureau.
    pub bureau_flagged: u64,
}

/// The report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MonthlyReport {
    /// The compound.
    pub site: String,
    /// The month.
    pub month: Month,
    /// When it was computed (ms): open orders and pending duties are as of then.
    pub generated_at: i64,
    /// Faults by class and code.
    pub faults: Vec<FaultCount>,
    /// Orders.
    pub orders: OrderCounts,
    /// Response times.
    pub response: Kpi,
    /// Arrival times.
    pub arrival: Kpi,
    /// Missed deadlines.
    pub missed: Vec<Missed>,
    /// Periodic duties.
    pub duties: Vec<DutyCompliance>,
}

/// An alert that fired, as the report needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fired {
    /// The class.
    pub class: String,
    /// The code.
    pub code: String,
    /// When it fired.
    pub at: i64,
}

/// One order's step: the time allowed and the time taken, if taken.
struct Timed {
    allowed: i64,
    took: Option<i64>,
}

#[allow(clippy::cast_precision_loss)]
fn rate(within: u64, orders: u64) -> Option<f64> {
    (orders > 0).then(|| within as f64 / orders as f64)
}

#[allow(clippy::cast_precision_loss)]
fn kpi(steps: &[Timed]) -> Kpi {
    let mut times: Vec<i64> = steps.iter().filter_map(|t| t.took).collect();
    times.sort_unstable();
    let rank = |p: f64| -> Option<f64> {
        if times.is_empty() {
            return None;
        }
        // Nearest rank: the smallest value with at least p of them at or below it.
        let n = times.len();
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let i = ((p * n as f64).ceil() as usize).clamp(1, n) - 1;
        Some(times[i] as f64 / 1000.0)
    };
    let mut groups: BTreeMap<i64, DeadlineGroup> = BTreeMap::new();
    for t in steps {
        let g = groups.entry(t.allowed).or_insert_with(|| DeadlineGroup {
            deadline_s: t.allowed / 1000,
            ..DeadlineGroup::default()
        });
        g.orders += 1;
        g.done += u64::from(t.took.is_some());
        g.within += u64::from(t.took.is_some_and(|took| took <= t.allowed));
    }
    for g in groups.values_mut() {
        g.rate = rate(g.within, g.orders);
    }
    let within = groups.values().map(|g| g.within).sum();
    let orders = steps.len() as u64;
    Kpi {
        kpi_s: match groups.keys().collect::<Vec<_>>()[..] {
            [only] => Some(only / 1000),
            _ => None,
        },
        orders,
        done: times.len() as u64,
        within_kpi: within,
        rate: rate(within, orders),
        by_deadline: groups.into_values().collect(),
        p50_s: rank(0.5),
        p90_s: rank(0.9),
        p95_s: rank(0.95),
        max_s: times.last().map(|&t| t as f64 / 1000.0),
    }
}

impl MonthlyReport {
    /// Computes the report of `site` for `month` from the alerts that fired
    /// and every order that concerns the month (dispatched in it, or a duty
    /// due in it); others are ignored, so a caller may pass more.
    #[must_use]
    #[allow(clippy::cast_precision_loss)]
    pub fn compute(site: &str, month: Month, now: i64, fired: &[Fired], orders: &[Order]) -> MonthlyReport {
        let mut faults: BTreeMap<(String, String), u64> = BTreeMap::new();
        for f in fired.iter().filter(|f| month.contains(f.at)) {
            *faults.entry((f.class.clone(), f.code.clone())).or_default() += 1;
        }
        let corrective: Vec<&Order> = orders
            .iter()
            .filter(|o| o.site == site && o.kind == Kind::Corrective && month.contains(o.created_at))
            .collect();
        let mut counts = OrderCounts {
            corrective: corrective.len() as u64,
            ..OrderCounts::default()
        };
        let mut missed: BTreeMap<&'static str, u64> = BTreeMap::new();
        for o in &corrective {
            match o.status {
                Status::Completed => counts.completed += 1,
                Status::FalseAlarm => counts.false_alarms += 1,
                _ => counts.open += 1,
            }
            counts.bureau_flagged += u64::from(o.bureau_flagged);
            for e in &o.escalations {
                *missed.entry(e.missed.as_str()).or_default() += 1;
            }
        }
        // Each order against its own deadlines: those are absolute from its
        // dispatch, so a re-dispatch to the backup does not restart them.
        let timed = |deadline: fn(&Order) -> Option<i64>, at: fn(&Order) -> Option<i64>| -> Vec<Timed> {
            corrective
                .iter()
                .filter_map(|o| {
                    Some(Timed {
                        allowed: deadline(o)? - o.created_at,
                        took: at(o).map(|t| t - o.created_at),
                    })
                })
                .collect()
        };
        let response = kpi(&timed(|o| o.deadlines.respond, |o| o.responded_at));
        let arrival = kpi(&timed(|o| o.deadlines.arrive, |o| o.arrived_at));
        let mut duties: BTreeMap<(String, String), DutyCompliance> = BTreeMap::new();
        for o in orders
            .iter()
            .filter(|o| o.site == site && o.kind == Kind::Preventive && month.contains(o.deadlines.complete))
        {
            let due = o.deadlines.complete;
            let d = duties
                .entry((o.class.clone(), o.code.clone()))
                .or_insert_with(|| DutyCompliance {
                    class: o.class.clone(),
                    duty: o.code.clone(),
                    due: 0,
                    on_time: 0,
                    late: 0,
                    missed: 0,
                    pending: 0,
                    rate: None,
                });
            d.due += 1;
            match o.closed_at {
                Some(t) if t <= due => d.on_time += 1,
                Some(_) => d.late += 1,
                None if now > due => d.missed += 1,
                None => d.pending += 1,
            }
        }
        for d in duties.values_mut() {
            let fallen = d.due - d.pending;
            d.rate = (fallen > 0).then(|| d.on_time as f64 / fallen as f64);
        }
        MonthlyReport {
            site: site.to_owned(),
            month,
            generated_at: now,
            faults: faults
                .into_iter()
                .map(|((class, code), count)| FaultCount { class, code, count })
                .collect(),
            orders: counts,
            response,
            arrival,
            missed: missed
                .into_iter()
                .map(|(d, count)| Missed {
                    deadline: d.to_owned(),
                    count,
                })
                .collect(),
            duties: duties.into_values().collect(),
        }
    }

    /// The same as CSV, one row per figure (`section,key,value`), for a
    /// spreadsheet.
    ///
    /// # Errors
    /// The writer's error.
    pub fn write_csv<W: std::io::Write>(&self, w: W) -> Result<(), csv::Error> {
        let mut out = csv::Writer::from_writer(w);
        out.write_record(["section", "key", "value"])?;
        let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v}"));
        out.write_record(["report", "site", &self.site])?;
        out.write_record(["report", "month", &self.month.month])?;
        for f in &self.faults {
            out.write_record(["faults", &format!("{}/{}", f.class, f.code), &f.count.to_string()])?;
        }
        let o = &self.orders;
        for (k, v) in [
            ("corrective", o.corrective),
            ("completed", o.completed),
            ("false_alarms", o.false_alarms),
            ("open", o.open),
            ("bureau_flagged", o.bureau_flagged),
        ] {
            out.write_record(["orders", k, &v.to_string()])?;
        }
        for (name, k) in [("response", &self.response), ("arrival", &self.arrival)] {
            out.write_record([name, "kpi_s", &k.kpi_s.map_or(String::new(), |s| s.to_string())])?;
            out.write_record([name, "orders", &k.orders.to_string()])?;
            out.write_record([name, "done", &k.done.to_string()])?;
            out.write_record([name, "within_kpi", &k.within_kpi.to_string()])?;
            out.write_record([name, "rate", &opt(k.rate)])?;
            out.write_record([name, "p50_s", &opt(k.p50_s)])?;
            out.write_record([name, "p90_s", &opt(k.p90_s)])?;
            out.write_record([name, "p95_s", &opt(k.p95_s)])?;
            out.write_record([name, "max_s", &opt(k.max_s)])?;
            for g in &k.by_deadline {
                let key = |f: &str| format!("deadline_{}s/{f}", g.deadline_s);
                out.write_record([name, &key("orders"), &g.orders.to_string()])?;
                out.write_record([name, &key("done"), &g.done.to_string()])?;
                out.write_record([name, &key("within"), &g.within.to_string()])?;
                out.write_record([name, &key("rate"), &opt(g.rate)])?;
            }
        }
        for m in &self.missed {
            out.write_record(["missed", &m.deadline, &m.count.to_string()])?;
        }
        for d in &self.duties {
            let key = format!("{}/{}", d.class, d.duty);
            for (k, v) in [
                ("due", d.due),
                ("on_time", d.on_time),
                ("late", d.late),
                ("missed", d.missed),
                ("pending", d.pending),
            ] {
                out.write_record(["duties", &format!("{key}/{k}"), &v.to_string()])?;
            }
            out.write_record(["duties", &format!("{key}/rate"), &opt(d.rate)])?;
        }
        out.flush()?;
        Ok(())
    }
}
