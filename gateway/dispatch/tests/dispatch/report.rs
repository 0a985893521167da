//! The monthly report: counts, KPI rates and percentiles, missed deadlines,
//! duty compliance, and the same as CSV.

use dispatch::{Actor, Fired, Month, MonthlyReport, StepKind};

use crate::support::{DAY, MIN, T0, alert, desk, open};

#[test]
fn months_are_calendar_months_in_china_time() {
    let m = Month::parse("2026-12").expect("month");
    // 2026-12-01T00:00+08:00 is 2026-11-30T16:00Z.
    assert_eq!(m.from, T0 - 8 * 3_600_000);
    assert_eq!(m.to - m.from, 31 * DAY);
    assert_eq!(Month::parse("2026-02").map(|m| m.to - m.from), Ok(28 * DAY));
    assert!(Month::parse("2026-13").is_err());
    assert!(Month::parse("december").is_err());
}

#[test]
fn the_report_counts_kpis_misses_and_duties() {
    let mut d = desk();
    let admin = Actor {
        name: "admin".into(),
        contractor: None,
    };
    let mut out = Vec::new();
    let mut orders = Vec::new();
    // Ten orders: responded after 1..=10 minutes, arrived after 10..=55, the
    // clock ticking up to each step as the gateway's ticker does.
    for i in 1..=10_i64 {
        let at = T0 + i * DAY;
        let id = u64::try_from(i).expect("small");
        let a = alert(id, "elevator", &format!("EL-{i}"), "unintended_movement", at);
        d.intent(at, &open(&a), Vec::new(), &mut out);
        let mut step = |t: i64, s: StepKind| {
            d.tick(t - 1, &mut out);
            d.step(t, id, s, &admin, None, &mut out).expect("step")
        };
        step(at + i * MIN, StepKind::Respond);
        step(at + i * 5 * MIN + 5 * MIN, StepKind::Arrive);
        orders.push(step(at + 2 * 3_600_000, StepKind::Complete));
    }
    let fired: Vec<Fired> = (1..=10)
        .map(|i| Fired {
            class: "elevator".into(),
            code: "unintended_movement".into(),
            at: T0 + i * DAY,
        })
        .chain(std::iter::once(Fired {
            class: "charger".into(),
            code: "smoke".into(),
            at: T0 + DAY,
        }))
        .collect();
    let month = Month::parse("2026-12").expect("month");
    let r = MonthlyReport::compute("lakeside", month, T0 + 20 * DAY, &fired, &orders);
    assert_eq!(r.faults.len(), 2);
    assert_eq!(
        (r.faults[1].code.as_str(), r.faults[1].count),
        ("unintended_movement", 10)
    );
    assert_eq!(r.orders.corrective, 10);
    assert_eq!(r.orders.completed, 10);
    // Within 3 minutes: responses after 1, 2, 3 minutes.
    assert_eq!((r.response.within_kpi, r.response.rate), (3, Some(0.3)));
    assert_eq!(r.response.p50_s, Some(300.0));
    assert_eq!(r.response.p90_s, Some(540.0));
    assert_eq!(r.response.max_s, Some(600.0));
    // Arrivals after 10, 15, ..., 55 min: 10..=30 are five.
    assert_eq!((r.arrival.done, r.arrival.within_kpi), (10, 5));
    // Responses after 4..=10 min missed the 3-minute deadline; arrivals after 35..=55 the 30-minute one.
    let missed: Vec<_> = r.missed.iter().map(|m| (m.deadline.as_str(), m.count)).collect();
    assert_eq!(missed, [("arrive", 5), ("respond", 7)]);
    let mut csv = Vec::new();
    r.write_csv(&mut csv).expect("csv");
    let csv = String::from_utf8(csv).expect("utf-8");
    assert!(csv.starts_with("section,key,value\n"), "{csv}");
    assert!(csv.contains("response,rate,0.3\n"), "{csv}");
    assert!(csv.contains("faults,elevator/unintended_movement,10\n"), "{csv}");
}

#[test]
fn duty_compliance_counts_on_time_late_missed_and_pending() {
    let mut out = Vec::new();
    // The built-in maintenance duty, its order open for the whole period
    // (a notice of 15 days), so each is open from when its lift is seen.
    let cfg: dispatch::PolicyConfig =
        toml::from_str("[[duties]]\nclass = \"elevator\"\nduty = \"maintenance\"\nevery = \"15d\"\nnotice = \"15d\"\n")
            .expect("policy");
    let mut d2 = dispatch::Desk::new(cfg.build().expect("valid"));
    let admin = Actor {
        name: "admin".into(),
        contractor: None,
    };
    let mut orders = Vec::new();
    for (i, dev) in ["EL-1", "EL-2", "EL-3", "EL-4"].iter().enumerate() {
        d2.device_seen(
            T0 - 14 * DAY + i64::try_from(i).expect("small") * 10 * DAY,
            "lakeside",
            "elevator",
            dev,
            &mut out,
        );
    }
    // EL-1 due T0+1d: done on time. EL-2 due T0+11d: done late. EL-3 due
    // T0+21d: not done, past due at report time. EL-4 due T0+31d: pending... outside the month.
    let ids: Vec<u64> = d2.open().map(|o| o.id).collect();
    orders.push(
        d2.step(T0, ids[0], StepKind::Complete, &admin, None, &mut out)
            .expect("on time"),
    );
    orders.push(
        d2.step(T0 + 12 * DAY, ids[1], StepKind::Complete, &admin, None, &mut out)
            .expect("late"),
    );
    orders.extend(d2.open().filter(|o| o.id == ids[2] || o.id == ids[3]).cloned());
    let month = Month::parse("2026-12").expect("month");
    let r = MonthlyReport::compute("lakeside", month.clone(), T0 + 25 * DAY, &[], &orders);
    let duty = &r.duties[0];
    assert_eq!(
        (duty.due, duty.on_time, duty.late, duty.missed, duty.pending),
        (3, 1, 1, 1, 0)
    );
    let r = MonthlyReport::compute("lakeside", month, T0 + 15 * DAY, &[], &orders);
    assert_eq!(
        (r.duties[0].missed, r.duties[0].pending, r.duties[0].rate),
        (0, 1, Some(0.5))
    );
}

/// Each order against its own deadlines: a trapped passenger's 3 min and
/// 30 min, a door fault's 30 min and 2 h, a smoking bay's 3 min and 10 min.
#[test]
fn rates_count_each_order_against_its_own_deadlines() {
    let mut d = desk();
    let admin = Actor {
        name: "admin".into(),
        contractor: None,
    };
    let mut out = Vec::new();
    let mut orders = Vec::new();
    // (class, code, respond after, arrive after)
    let cases = [
        ("elevator", "trapped", 2 * MIN, 25 * MIN),            // both in time
        ("elevator", "door_close_fault", 20 * MIN, 90 * MIN),  // both in time (30 min, 2 h)
        ("elevator", "door_close_fault", 40 * MIN, 150 * MIN), // both late
        ("charger", "smoke", 2 * MIN, 12 * MIN),               // on site late (10 min)
        ("firepump", "low_pressure", 4 * MIN, 14 * MIN),       // response late (3 min), on site in time (15)
    ];
    for (i, (class, code, r, a)) in cases.iter().enumerate() {
        let n = i64::try_from(i).expect("small");
        let at = T0 + n * DAY;
        let id = u64::try_from(i + 1).expect("small");
        d.intent(
            at,
            &open(&alert(id, class, &format!("D-{i}"), code, at)),
            Vec::new(),
            &mut out,
        );
        d.step(at + r, id, StepKind::Respond, &admin, None, &mut out)
            .expect("respond");
        orders.push(
            d.step(at + a, id, StepKind::Arrive, &admin, None, &mut out)
                .expect("arrive"),
        );
    }
    let month = Month::parse("2026-12").expect("month");
    let r = MonthlyReport::compute("lakeside", month, T0 + 20 * DAY, &[], &orders);
    // A fixed 3 min / 30 min would say 2 of 5 responses and 4 of 5 arrivals.
    assert_eq!((r.response.within_kpi, r.response.rate), (3, Some(0.6)));
    assert_eq!((r.arrival.within_kpi, r.arrival.rate), (3, Some(0.6)));
    assert_eq!(r.response.kpi_s, None, "the deadlines differ");
    let groups = |k: &dispatch::report::Kpi| -> Vec<(i64, u64, u64)> {
        k.by_deadline
            .iter()
            .map(|g| (g.deadline_s, g.orders, g.within))
            .collect()
    };
    assert_eq!(groups(&r.response), [(180, 3, 2), (1800, 2, 1)]);
    assert_eq!(
        groups(&r.arrival),
        [(600, 1, 0), (900, 1, 1), (1800, 1, 1), (7200, 2, 1)]
    );
    let mut csv = Vec::new();
    r.write_csv(&mut csv).expect("csv");
    let csv = String::from_utf8(csv).expect("utf-8");
    assert!(csv.contains("arrival,deadline_7200s/within,1\n"), "{csv}");
    assert!(csv.contains("response,kpi_s,\n"), "{csv}");
}
