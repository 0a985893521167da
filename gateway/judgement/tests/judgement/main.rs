//! The judgement core on synthetic histories: drifts and change points of
//! known start are found (and the delay is printed), a normal month raises
//! nothing (the false-positive rate is measured and printed), gaps and a
//! restart in the middle change nothing, frequent faults raise once.

#![allow(clippy::many_single_char_names, clippy::cast_precision_loss)]

mod plants;

use judgement::{DEGRADING, FREQUENT_FAULTS, Fault, Judge, JudgementConfig, Settings, Verdict};
use plants::{DAY, Plant, T0};

/// Runs a plant's samples through a judge, ticking every simulated hour;
/// returns the verdicts with the time each came.
fn run(judge: &mut Judge, plants: &mut [Plant], days: i64) -> Vec<(i64, Verdict)> {
    let mut out = Vec::new();
    let mut v = Vec::new();
    let end = T0 + days * DAY;
    let mut next_tick = T0 + 3_600_000;
    // Merge the plants' samples in time order, minute by minute.
    let mut t = T0;
    while t < end {
        for p in plants.iter_mut() {
            for (at, readings) in p.until(t + 60_000) {
                let r: Vec<(&str, u8, f64)> = readings.iter().map(|(m, port, x)| (*m, *port, *x)).collect();
                judge.sample(at, &p.site, p.class, &p.id, &r, &mut v);
                out.extend(v.drain(..).map(|x| (at, x)));
            }
        }
        t += 60_000;
        if t >= next_tick {
            judge.tick(t, &mut v);
            out.extend(v.drain(..).map(|x| (t, x)));
            next_tick += 3_600_000;
        }
    }
    out
}

fn raised(verdicts: &[(i64, Verdict)], device: &str, code: &str) -> Vec<i64> {
    verdicts
        .iter()
        .filter(|(_, v)| v.device == device && v.code == code && v.active)
        .map(|(t, _)| *t)
        .collect()
}

fn days(ms: i64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let d = ms as f64 / DAY as f64;
    d
}

#[test]
fn the_defaults_are_valid_and_mistakes_name_their_field() {
    let s = JudgementConfig::default().settings().unwrap();
    assert_eq!(s.fault_window_ms, 30 * DAY);
    assert_eq!(s.fault_threshold, 3);
    assert_eq!(s.bucket_ms, DAY);
    let bad: JudgementConfig = toml::from_str("fault_window = \"soon\"").unwrap();
    let e = bad.settings().unwrap_err();
    assert_eq!(e.field, "fault_window");
    assert!(e.to_string().contains("judgement.fault_window"), "{e}");
    let bad: JudgementConfig = toml::from_str("cusum_h = -1.0").unwrap();
    assert_eq!(bad.settings().unwrap_err().field, "cusum_h");
    assert!(toml::from_str::<JudgementConfig>("nonsense = 1").is_err());
}

/// A door whose open-to-closed time grows by 0.1 s a day from day 21 (a
/// wearing door operator) is judged degrading, after the drift began.
#[test]
fn a_door_slowing_down_is_found_after_it_begins() {
    let mut judge = Judge::new(Settings::default());
    let start = 21;
    let mut lift = Plant::elevator("EL-1", 1, move |day| plants::Lift {
        door_s: 4.0
            + if day >= start {
                0.1 * (day - start + 1) as f64
            } else {
                0.0
            },
        ..plants::Lift::default()
    });
    let v = run(&mut judge, std::slice::from_mut(&mut lift), 50);
    let at = raised(&v, "EL-1", DEGRADING);
    assert_eq!(at.len(), 1, "{v:?}");
    let began = T0 + start * DAY;
    assert!(at[0] > began, "not before it began");
    let delay = days(at[0] - began);
    println!("door drift 0.1 s/day from day {start}: detected after {delay:.1} days");
    assert!(delay < 10.0, "{delay}");
    let (_, verdict) = v.iter().find(|(_, x)| x.code == DEGRADING).unwrap();
    assert_eq!(verdict.evidence[0].metric, "door_open_s");
    let h = judgement::health::device(
        judge.device("lakeside", "elevator", "EL-1").unwrap(),
        at[0],
        &Settings::default(),
    );
    assert!(h.score <= 75, "{h:?}");
    assert_eq!(h.reasons[0].metric.as_deref(), Some("door_open_s"));
    assert_eq!(h.reasons[0].trend, "degrading");
}

/// Doors reopening more often (a dirty sill, a failing light curtain): a
/// step from 5 % to 15 % of stops on day 18.
#[test]
fn doors_reopening_more_often_is_a_change_point_found() {
    let mut judge = Judge::new(Settings::default());
    let start = 18;
    let mut lift = Plant::elevator("EL-2", 2, move |day| plants::Lift {
        reopen_p: if day >= start { 0.15 } else { 0.05 },
        ..plants::Lift::default()
    });
    let v = run(&mut judge, std::slice::from_mut(&mut lift), 40);
    let at = raised(&v, "EL-2", DEGRADING);
    assert_eq!(at.len(), 1, "{v:?}");
    let began = T0 + start * DAY;
    assert!(at[0] > began);
    println!(
        "door reopenings 5 % → 15 % of stops on day {start}: detected after {:.1} days",
        days(at[0] - began)
    );
    assert!(at[0] - began < 5 * DAY);
}

/// A leak in the fire water network: the pressure falls three times as fast
/// from day 15, so the jockey pump starts three times as often.
#[test]
fn a_leaking_network_is_found_from_the_jockey_pump() {
    let mut judge = Judge::new(Settings::default());
    let start = 15;
    let mut pump = Plant::firepump("PUMP-1", 3, move |day| plants::Pump {
        decay_mpa_per_h: if day >= start { 0.03 } else { 0.01 },
        ..plants::Pump::default()
    });
    let v = run(&mut judge, std::slice::from_mut(&mut pump), 30);
    let at = raised(&v, "PUMP-1", DEGRADING);
    assert_eq!(at.len(), 1, "{v:?}");
    let began = T0 + start * DAY;
    assert!(at[0] > began);
    println!(
        "leak (decay 0.01 → 0.03 MPa/h) on day {start}: detected after {:.1} days",
        days(at[0] - began)
    );
    assert!(at[0] - began < 3 * DAY);
    let (_, verdict) = v.iter().find(|(_, x)| x.code == DEGRADING).unwrap();
    let metrics: Vec<&str> = verdict.evidence.iter().map(|e| e.metric.as_str()).collect();
    assert!(
        metrics.contains(&"jockey_starts_per_h") || metrics.contains(&"pressure_decay_mpa_per_h"),
        "{metrics:?}"
    );
}

/// A charging port heating 30 % more per watt from day 14 (a loose
/// terminal): found on that port, not the bay's others.
#[test]
fn a_port_heating_faster_per_watt_is_found_on_that_port() {
    let mut judge = Judge::new(Settings::default());
    let start = 14;
    let mut bay = Plant::charger("BAY-1", 4, move |day, port| plants::Bay {
        rise_c_per_kw: if port == 2 && day >= start { 52.0 } else { 40.0 },
    });
    let v = run(&mut judge, std::slice::from_mut(&mut bay), 30);
    let at = raised(&v, "BAY-1", DEGRADING);
    assert_eq!(at.len(), 1, "{v:?}");
    let began = T0 + start * DAY;
    assert!(at[0] > began);
    println!(
        "port 2 temperature rise 40 → 52 °C/kW on day {start}: detected after {:.1} days",
        days(at[0] - began)
    );
    let (_, verdict) = v.iter().find(|(_, x)| x.code == DEGRADING).unwrap();
    assert_eq!(verdict.evidence.len(), 1);
    assert_eq!(
        (verdict.evidence[0].metric.as_str(), verdict.evidence[0].port),
        ("temp_rise_c_per_kw", Some(2))
    );
}

/// A normal compound for 60 days (weekday and weekend traffic, noise,
/// sessions at random): no verdict at all. The false-positive rate is
/// measured over every indicator-day judged.
#[test]
fn a_normal_compound_raises_nothing() {
    let settings = Settings::default();
    let mut judge = Judge::new(settings.clone());
    let mut plants = Vec::new();
    for i in 0..6 {
        plants.push(Plant::elevator(&format!("EL-{i}"), 100 + i, |_| {
            plants::Lift::default()
        }));
    }
    for i in 0..3 {
        plants.push(Plant::firepump(&format!("PUMP-{i}"), 200 + i, |_| {
            plants::Pump::default()
        }));
    }
    for i in 0..3 {
        plants.push(Plant::charger(&format!("BAY-{i}"), 300 + i, |_, _| {
            plants::Bay::default()
        }));
    }
    let days_run = 60;
    let v = run(&mut judge, &mut plants, days_run);
    let judged: u32 = judge
        .devices()
        .flat_map(|d| d.tracks.iter())
        .map(|t| t.trend.n.saturating_sub(settings.warmup))
        .sum();
    let alarms = v.iter().filter(|(_, x)| x.active).count();
    #[allow(clippy::cast_precision_loss)]
    let rate = alarms as f64 / f64::from(judged.max(1));
    println!(
        "normal compound, {days_run} days, {} devices: {alarms} false alerts in {judged} indicator-days judged (rate {rate:.4})",
        plants.len()
    );
    assert!(judged > 1000, "{judged}");
    assert_eq!(alarms, 0, "{v:?}");
    for d in judge.devices() {
        let h = judgement::health::device(d, T0 + days_run * DAY, &settings);
        assert_eq!(h.score, 100, "{h:?}");
    }
}

/// Gaps: a lift silent for three days and one heard for two hours of a day
/// change no trend and raise nothing; that day is left out, not a zero.
#[test]
fn silence_is_not_a_change() {
    let mut judge = Judge::new(Settings::default());
    let mut pump = Plant::firepump("PUMP-G", 7, |_| plants::Pump::default());
    pump.silent = Some((T0 + 20 * DAY, T0 + 23 * DAY + 2 * 3_600_000));
    let v = run(&mut judge, std::slice::from_mut(&mut pump), 40);
    assert!(v.is_empty(), "{v:?}");
    let d = judge.device("lakeside", "firepump", "PUMP-G").unwrap();
    let rate = d.tracks.iter().find(|t| t.id == "jockey_starts_per_h").unwrap();
    // 40 days, 3 silent, and the partly heard last one is kept only if covered.
    assert!(rate.trend.n <= 37 && rate.trend.n >= 35, "{}", rate.trend.n);
}

/// State through serde (what the gateway stores) in the middle of a drift:
/// the same verdicts at the same times as without the restart.
#[test]
fn a_restart_in_the_middle_changes_nothing() {
    let make = || {
        Plant::firepump("PUMP-R", 9, |day| plants::Pump {
            decay_mpa_per_h: if day >= 12 { 0.03 } else { 0.01 },
            ..plants::Pump::default()
        })
    };
    let mut straight = Judge::new(Settings::default());
    let mut a = make();
    let v1 = run(&mut straight, std::slice::from_mut(&mut a), 20);

    let mut first = Judge::new(Settings::default());
    let mut b = make();
    let mut v2 = run(&mut first, std::slice::from_mut(&mut b), 10);
    let text = serde_json::to_string(&first.take_changed(true)).unwrap();
    let mut second = Judge::new(Settings::default());
    second.restore(serde_json::from_str(&text).unwrap());
    // Go on from day 10 with the same plant.
    let mut rest = Vec::new();
    let mut v = Vec::new();
    let mut next_tick = T0 + 10 * DAY + 3_600_000;
    let mut t = T0 + 10 * DAY;
    while t < T0 + 20 * DAY {
        for (at, readings) in b.until(t + 60_000) {
            let r: Vec<(&str, u8, f64)> = readings.iter().map(|(m, port, x)| (*m, *port, *x)).collect();
            second.sample(at, "lakeside", "firepump", "PUMP-R", &r, &mut v);
            rest.extend(v.drain(..).map(|x| (at, x)));
        }
        t += 60_000;
        if t >= next_tick {
            second.tick(t, &mut v);
            rest.extend(v.drain(..).map(|x| (t, x)));
            next_tick += 3_600_000;
        }
    }
    v2.extend(rest);
    assert!(!v1.is_empty());
    assert_eq!(v1, v2);
    assert_eq!(
        serde_json::to_value(straight.devices().collect::<Vec<_>>()).unwrap(),
        serde_json::to_value(second.devices().collect::<Vec<_>>()).unwrap()
    );
}

fn fault(alert: u64, order: u64, code: &str, at: i64, contractor: &str) -> Fault {
    Fault {
        alert,
        order,
        code: code.into(),
        at,
        contractor: Some(contractor.into()),
    }
}

/// Three faults within 30 days raise `frequent_faults` once, with the
/// three listed; a fourth raises nothing new; a false alarm takes its fault
/// back; the window sliding past them clears it; ignored codes never count;
/// the month's report flags the device, its compound and contractor.
#[test]
fn three_faults_in_thirty_days_are_frequent_once() {
    let mut j = Judge::new(Settings::default());
    let mut v = Vec::new();
    let (s, c, d) = ("lakeside", "elevator", "EL-9");
    j.fault(T0, s, c, d, fault(1, 10, "trapped", T0, "acme"), &mut v);
    j.fault(T0 + DAY, s, c, d, fault(2, 11, "offline", T0 + DAY, "acme"), &mut v);
    j.fault(
        T0 + 5 * DAY,
        s,
        c,
        d,
        fault(3, 12, "door_close_fault", T0 + 5 * DAY, "acme"),
        &mut v,
    );
    // The same alert again (a replay) counts once.
    j.fault(
        T0 + 5 * DAY,
        s,
        c,
        d,
        fault(3, 12, "door_close_fault", T0 + 5 * DAY, "acme"),
        &mut v,
    );
    assert!(v.is_empty(), "offline is ignored, two faults are not three: {v:?}");
    j.fault(
        T0 + 29 * DAY,
        s,
        c,
        d,
        fault(4, 13, "trapped", T0 + 29 * DAY, "city"),
        &mut v,
    );
    assert_eq!(v.len(), 1);
    assert_eq!(
        (v[0].code, v[0].active, v[0].severity),
        (FREQUENT_FAULTS, true, judgement::Severity::Major)
    );
    let orders: Vec<f64> = v[0].evidence.iter().map(|e| e.value).collect();
    assert_eq!(orders, [10.0, 12.0, 13.0]);
    v.clear();
    j.fault(
        T0 + 29 * DAY,
        s,
        c,
        d,
        fault(5, 14, "run_time_limiter", T0 + 29 * DAY, "city"),
        &mut v,
    );
    assert!(v.is_empty(), "already raised: no second alert, no second order");
    j.false_alarm(T0 + 29 * DAY, s, c, d, 14, &mut v);
    assert!(v.is_empty(), "still three");
    let h = judgement::health::device(j.device(s, c, d).unwrap(), T0 + 29 * DAY, j.settings());
    assert_eq!(h.score, 100 - 30 - 20, "{h:?}");
    assert!(h.reasons.iter().any(|r| r.fault.as_deref() == Some(FREQUENT_FAULTS)));
    // Day 31: the first fault leaves the window.
    j.tick(T0 + 31 * DAY, &mut v);
    assert_eq!(v.len(), 1);
    assert_eq!((v[0].code, v[0].active), (FREQUENT_FAULTS, false));
    let report = judgement::health::frequent_report(j.devices(), T0 - DAY, T0 + 40 * DAY);
    assert_eq!(report.devices.len(), 1);
    assert_eq!(report.devices[0].faults, 3);
    assert_eq!(report.devices[0].contractors, ["acme", "city"]);
    assert_eq!(report.sites[0].id, "lakeside");
    assert_eq!(
        report
            .contractors
            .iter()
            .map(|c| (c.id.as_str(), c.faults))
            .collect::<Vec<_>>(),
        [("acme", 2), ("city", 1)]
    );
    let later = judgement::health::frequent_report(j.devices(), T0 + 40 * DAY, T0 + 70 * DAY);
    assert!(later.devices.is_empty());
}

/// One cause, three codes: a power cut strands a car outside the door zone
/// with people in it. The three orders dispatched within the hour are one
/// incident and do not make the lift's faults frequent (the HIL library's
/// power-cut scenario raised `frequent_faults` on this before); a fourth
/// fault an hour and a half later is a second incident, a third one week on
/// is the third, and raises it, listing every fault.
#[test]
fn faults_of_one_incident_count_once() {
    let mut j = Judge::new(Settings::default());
    let mut v = Vec::new();
    let (s, c, d) = ("lakeside", "elevator", "EL-1");
    let at = |min: i64| T0 + min * 60_000;
    for (i, (code, min)) in [("power_cut", 0), ("stopped_outside_door_zone", 1), ("trapped", 2)]
        .into_iter()
        .enumerate()
    {
        let n = u64::try_from(i).unwrap();
        j.fault(at(min), s, c, d, fault(n + 1, n + 10, code, at(min), "acme"), &mut v);
    }
    assert!(v.is_empty(), "three codes of one power cut are one incident: {v:?}");
    j.fault(
        at(90),
        s,
        c,
        d,
        fault(4, 13, "door_close_fault", at(90), "acme"),
        &mut v,
    );
    assert!(v.is_empty(), "two incidents are not three: {v:?}");
    let week = at(7 * 24 * 60);
    j.fault(week, s, c, d, fault(5, 14, "trapped", week, "acme"), &mut v);
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!((v[0].code, v[0].active), (FREQUENT_FAULTS, true));
    assert_eq!(v[0].evidence.len(), 5, "every fault is listed");
}
