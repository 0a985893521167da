//! The lifecycle around the rules: one alert per (device, code, port),
//! acknowledgement, flap damping, no-data and stale, replays, root-cause
//! inhibition, re-judgement after recovery, maintenance and grouping.

use alerting::{AckError, Change, DataState, DeviceRef, Effect, Input, State, Window, WorkOrderIntent};
use protocol::DeviceClass;

use crate::{check, check_with, engine};

#[test]
fn a_node_event_and_the_gateways_own_rule_are_one_alert() {
    // The node raises trapped at 5 s; the gateway's rule judges it at 20 s:
    // one episode, held until both have cleared.
    check(
        "
device s/elevator/EL-1
birth interval_s=3600
check fired resolved
series occupied:    1x30 0x5
series running:     0x35
series door_closed: 1x35
series door_zone:   0x30 1x5
event 5s trapped active
event 25s trapped cleared
expect 5s fired trapped
expect 30s resolved trapped
",
    );
}

#[test]
fn acknowledged_alerts_stay_acknowledged_until_they_resolve() {
    let mut e = engine();
    check_with(
        &mut e,
        "
device s/firepump/P
birth interval_s=3600
check fired acknowledged resolved
series pump_fault: 0 1x10
ack 3s pump_fault by=li.wei
ack 4s pump_fault by=li.wei
expect 1s fired pump_fault
expect 3s acknowledged pump_fault
",
    );
    let a = e.alerts().pop().unwrap();
    assert_eq!(a.state, State::Acknowledged);
    assert_eq!(a.acked_by.as_deref(), Some("li.wei"));
    assert_eq!(a.acked_at, Some(3000));
    let mut out = Vec::new();
    assert_eq!(e.ack(20_000, 999, "x", &mut out), Err(AckError::Unknown(999)));
    assert!(out.is_empty());
}

#[test]
fn a_pending_alert_cannot_be_acknowledged() {
    let mut e = engine();
    check_with(
        &mut e,
        "
device s/firepump/P
birth interval_s=3600
check pending
series network_pressure_mpa: 0.05x5
expect 0s pending low_pressure
",
    );
    let a = e.alerts().pop().unwrap();
    let err = e.ack(5000, a.id, "x", &mut Vec::new()).unwrap_err();
    assert_eq!(err.to_string(), format!("alert {} is pending, not firing", a.id));
}

#[test]
fn a_flapping_alert_is_held_open_and_not_renotified() {
    // Smoke flickers: two short episodes, then the third within 10 min is
    // held open as flapping; it resolves only after 10 quiet minutes.
    check(
        "
device s/charger/BAY
birth interval_s=3600
check fired resolved notified
series smoke: 0 1 0 1 0 1 0 1 0 1 0x700
expect 1s fired smoke
expect 1s notified smoke
expect 2s resolved smoke
expect 3s fired smoke
expect 3s notified smoke
expect 4s resolved smoke
expect 5s fired smoke
expect 5s notified smoke
expect 610s resolved smoke
",
    );
}

#[test]
fn missing_data_is_no_data_and_silence_is_stale_neither_resolves() {
    let mut e = engine();
    check_with(
        &mut e,
        "
device s/firepump/P
birth interval_s=10
check fired resolved no_data stale
# The pressure gauge stops reporting at 40 s while the pump keeps sending.
series network_pressure_mpa: 0.05x40 _x60 0.3
series pump_fault:           0x100 _x10
expect 30s fired low_pressure
expect 69s no_data low_pressure
expect 100s resolved low_pressure
",
    );
    let mut e = engine();
    check_with(
        &mut e,
        "
device s/firepump/P
birth interval_s=10
check fired resolved no_data stale fresh
# The whole device goes silent: stale and offline, never resolved by silence.
series network_pressure_mpa: 0.05x40 _x60 0.3
expect 30s fired low_pressure
expect 69s fired offline
expect 69s stale low_pressure
expect 100s resolved offline
expect 100s resolved low_pressure
",
    );
}

#[test]
fn replayed_events_are_records_not_live_alerts() {
    let mut e = engine();
    let d = DeviceRef {
        site: "s",
        class: DeviceClass::Charger,
        device: "BAY",
    };
    let ev = |active: bool, hist: bool| {
        let text = format!(r#"{{"v":1,"seq":1,"ts":0,"hist":{hist},"code":"smoke","active":{active}}}"#);
        protocol::decode(protocol::Kind::Event, text.as_bytes()).unwrap()
    };
    let mut out = Vec::new();
    e.observe(1000, d, Input::Message(&ev(true, true)), &mut out);
    assert!(matches!(&out[..], [Effect::Record(r)] if r.kind == "replayed_event" && r.code == "smoke"));
    assert!(e.alerts().is_empty(), "a replay never raises a live alert");
    out.clear();
    e.observe(2000, d, Input::Message(&ev(true, false)), &mut out);
    assert_eq!(e.alerts().len(), 1);
    // A replayed clear is history that still holds: it clears.
    out.clear();
    e.observe(3000, d, Input::Message(&ev(false, true)), &mut out);
    assert!(e.alerts().is_empty());
    assert!(
        out.iter()
            .any(|x| matches!(x, Effect::Alert(c) if c.change == Change::Resolved))
    );
}

#[test]
fn a_lost_broker_is_one_root_alert_and_recovery_is_rejudged_not_replayed() {
    check(
        "
interval 1s
check fired resolved notified
device s/firepump/A
series pump_fault: 0x10 _x290 0x230
device s/firepump/B
series pump_fault: 0x10 _x290 0x230
device s/firepump/C
series pump_fault: 0x10
uplink 10s down
uplink 300s up
run 520s
# 30 s after the loss; notified after the 30 s group wait.
expect 40s fired uplink_lost on /gateway/uplink
expect 70s notified uplink_lost on /gateway/uplink
expect 300s resolved uplink_lost on /gateway/uplink
# A and B speak again; C stays silent for the full offline window after the
# recovery (180 s), only then is it judged, once.
expect 480s fired offline on s/firepump/C
expect 510s notified offline on s/firepump/C
",
    );
}

#[test]
fn a_broker_restart_with_its_wills_pages_nobody() {
    // The broker sends every node's will as it shuts down (10 s), the
    // gateway loses it a moment later; back at 30 s, the broker hands over
    // B's will once more from its restored session. The nodes take 40 s
    // more to reconnect (longer than the group wait). None of it is a device
    // failing: nothing is notified.
    check(
        "
interval 1s
check notified
device s/firepump/A
series pump_fault: 0x10 _x60 0x30
death 10s
device s/firepump/B
series pump_fault: 0x10 _x60 0x30
death 10s
death 31s
uplink 11s down
uplink 30s up
run 200s
",
    );
}

#[test]
fn a_will_well_before_a_broker_loss_is_a_device_failing() {
    // A dies at 10 s; the broker goes 20 s later: A's offline stands.
    check(
        "
interval 1s
check fired
device s/firepump/A
series pump_fault: 0x10
death 10s
device s/firepump/B
series pump_fault: 0x40
uplink 30s down
uplink 35s up
run 60s
expect 10s fired offline on s/firepump/A
",
    );
}

#[test]
fn a_silent_compound_is_one_root_alert_standing_for_its_devices() {
    check(
        "
interval 1s
check fired resolved notified
device s/firepump/A
series pump_fault: 0x10 _x240 0x240
device s/firepump/B
series pump_fault: 0x10
device s/firepump/C
series pump_fault: 0x10
run 480s
expect 189s fired offline on s/firepump/A
expect 189s fired offline on s/firepump/B
expect 189s fired offline on s/firepump/C
expect 189s fired site_unreachable on s/gateway/site
expect 219s notified site_unreachable on s/gateway/site
# A is back: the compound is reachable; B and C stay silent and are
# notified only once their silence is confirmed after the recovery (180 s),
# after the group wait.
expect 250s resolved offline on s/firepump/A
expect 250s resolved site_unreachable on s/gateway/site
expect 460s notified offline on s/firepump/B
expect 460s notified offline on s/firepump/C
",
    );
}

fn pump(id: &str) -> DeviceRef<'_> {
    DeviceRef {
        site: "s",
        class: DeviceClass::Firepump,
        device: id,
    }
}

fn data(text: &str) -> protocol::Message {
    protocol::decode(protocol::Kind::Data, text.as_bytes()).unwrap()
}

fn notified(out: &[Effect]) -> Vec<(String, String)> {
    out.iter()
        .filter_map(|e| match e {
            Effect::Notify(n) => Some(
                n.firing
                    .iter()
                    .map(|a| (a.device.clone(), a.code.clone()))
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn a_dead_bus_is_one_root_alert_and_its_slaves_are_suppressed() {
    let mut e = engine();
    let mut out = Vec::new();
    for id in ["M1", "M2"] {
        e.attach(pump(id), "/dev/ttyUSB0", 0);
    }
    let ok = data(r#"{"v":1,"seq":1,"ts":0,"m":{"pump_fault":false}}"#);
    let death = protocol::Message::Death(protocol::Death {
        v: protocol::V1,
        bdseq: 0,
    });
    for id in ["M1", "M2", "TCP-1"] {
        e.observe(1000, pump(id), Input::Message(&ok), &mut out);
    }
    e.observe(5000, pump("M1"), Input::Message(&death), &mut out);
    e.observe(5100, pump("M2"), Input::Message(&death), &mut out);
    for t in (6..60).map(|s| s * 1000) {
        e.observe(t, pump("TCP-1"), Input::Message(&ok), &mut out);
        e.tick(t, &mut out);
    }
    let bus = e.alerts().into_iter().find(|a| a.code == "bus_down").unwrap();
    assert_eq!(
        (bus.class.as_str(), bus.device.as_str()),
        ("gateway", "bus:/dev/ttyUSB0")
    );
    assert_eq!(notified(&out), [("bus:/dev/ttyUSB0".to_owned(), "bus_down".to_owned())]);
    let slaves: Vec<_> = e.alerts().into_iter().filter(|a| a.code == "offline").collect();
    assert_eq!(slaves.len(), 2);
    assert!(
        slaves
            .iter()
            .all(|a| a.inhibited_by.as_deref() == Some("bus:/dev/ttyUSB0"))
    );
}

#[test]
fn a_modbus_slave_refusing_every_read_is_its_own_fault_never_offline_nor_a_bus_down() {
    // What the poller sends for a slave whose every read is refused: the
    // `modbus_exception` event with the last exception, then a `data` with
    // no value at every poll (it answers). Its neighbour on the same Modbus
    // TCP endpoint goes silent: that one is offline, the line is not down.
    let mut e = engine();
    let mut out = Vec::new();
    let bus = "tcp:10.0.0.21:502";
    for id in ["M1", "M2"] {
        e.attach(pump(id), bus, 0);
    }
    let birth = r#"{"v":1,"seq":0,"ts":0,"bdseq":1,"fw":"modbus","model":"modbus-tcp","cfg":"","interval_s":1}"#;
    let birth = protocol::decode(protocol::Kind::Birth, birth.as_bytes()).unwrap();
    let event = |active: bool, detail: &str| {
        let text = format!(r#"{{"v":1,"seq":2,"ts":0,"code":"modbus_exception","active":{active},"detail":{detail}}}"#);
        protocol::decode(protocol::Kind::Event, text.as_bytes()).unwrap()
    };
    let empty = data(r#"{"v":1,"seq":3,"ts":0}"#);
    let values = data(r#"{"v":1,"seq":3,"ts":0,"m":{"pump_fault":false}}"#);
    for id in ["M1", "M2"] {
        e.observe(0, pump(id), Input::Message(&birth), &mut out);
    }
    let raised = event(true, r#"{"exception":"IllegalDataAddress","function":4,"address":3}"#);
    e.observe(3000, pump("M1"), Input::Message(&raised), &mut out);
    for t in (3..60).map(|s| s * 1000) {
        e.observe(t, pump("M1"), Input::Message(&empty), &mut out);
        if t < 10_000 {
            e.observe(t, pump("M2"), Input::Message(&values), &mut out);
        }
        e.tick(t, &mut out);
    }
    let fired: Vec<_> = out
        .iter()
        .filter_map(|x| match x {
            Effect::Alert(c) if c.change == Change::Fired => Some(&c.alert),
            _ => None,
        })
        .collect();
    let codes: Vec<_> = fired.iter().map(|a| (a.device.as_str(), a.code.as_str())).collect();
    assert_eq!(codes, [("M1", "modbus_exception"), ("M2", "offline")], "no bus_down");
    let refusing = fired[0];
    assert_eq!(refusing.severity, protocol::Severity::Major);
    assert_eq!(refusing.fired_at, Some(3000));
    assert_eq!(refusing.sources, ["node"]);
    let detail: Vec<_> = refusing
        .evidence
        .iter()
        .map(|v| (v.metric.as_str(), v.value, v.text.as_deref()))
        .collect();
    assert_eq!(
        detail,
        [
            ("exception", 0.0, Some("IllegalDataAddress")),
            ("function", 4.0, None),
            ("address", 3.0, None)
        ],
        "no value was read, so the exception is the whole evidence"
    );
    // Notified after its group wait, with a work order, as an offline device is.
    assert!(notified(&out).contains(&("M1".to_owned(), "modbus_exception".to_owned())));
    let opened = |out: &[Effect], code: &str| {
        out.iter().any(|x| {
            matches!(x, Effect::WorkOrder(WorkOrderIntent::Open { alert }) if alert.device == "M1" && alert.code == code)
        })
    };
    assert!(opened(&out, "modbus_exception"));

    // Values again: the poller clears it.
    out.clear();
    e.observe(60_000, pump("M1"), Input::Message(&event(false, "{}")), &mut out);
    e.observe(60_000, pump("M1"), Input::Message(&values), &mut out);
    assert!(out.iter().any(|x| matches!(x, Effect::Alert(c)
        if c.change == Change::Resolved && c.alert.code == "modbus_exception")));
    assert!(
        out.iter()
            .any(|x| matches!(x, Effect::WorkOrder(WorkOrderIntent::Close { alert })
        if alert.code == "modbus_exception"))
    );
    let open: Vec<_> = e.alerts().into_iter().map(|a| (a.device, a.code)).collect();
    assert_eq!(open, [("M2".to_owned(), "offline".to_owned())]);
}

#[test]
fn an_offline_device_suppresses_its_own_waiting_alerts() {
    let mut e = engine();
    let mut out = Vec::new();
    let low = data(r#"{"v":1,"seq":1,"ts":0,"m":{"network_pressure_mpa":0.05}}"#);
    for t in (0..=40).map(|s| s * 1000) {
        e.observe(t, pump("P"), Input::Message(&low), &mut out);
        e.tick(t, &mut out);
    }
    let death = protocol::Message::Death(protocol::Death {
        v: protocol::V1,
        bdseq: 0,
    });
    e.observe(41_000, pump("P"), Input::Message(&death), &mut out);
    for t in (42..120).map(|s| s * 1000) {
        e.tick(t, &mut out);
    }
    // low_pressure fired at 30 s but waited in its group until 60 s; by then
    // the pump was offline, which stands for it.
    assert_eq!(notified(&out), [("P".to_owned(), "offline".to_owned())]);
    let low = e.alerts().into_iter().find(|a| a.code == "low_pressure").unwrap();
    assert_eq!(low.inhibited_by.as_deref(), Some("offline:P"));
    assert_eq!(low.data, DataState::Stale);
}

#[test]
fn a_maintenance_window_records_but_does_not_notify() {
    let mut e = engine();
    e.set_windows(vec![Window {
        site: Some("s".into()),
        class: None,
        device: Some("EL-1".into()),
        from: 0,
        to: 100_000,
        reason: "half-monthly maintenance".into(),
    }]);
    check_with(
        &mut e,
        "
device s/elevator/EL-1
birth interval_s=3600
check fired notified dispatched
series occupied:    1x120
series running:     0x120
series door_closed: 1x120
series door_zone:   0x120
run 140s
expect 20s fired trapped
expect 45s fired stopped_outside_door_zone
# Still firing when the window closes: notified and dispatched then, the
# critical one at once, carrying the rest of its group along.
expect 100s notified trapped
expect 100s dispatched trapped
expect 100s notified stopped_outside_door_zone
expect 100s dispatched stopped_outside_door_zone
",
    );
}

#[test]
fn notifications_are_grouped_per_building_and_critical_ones_go_at_once() {
    let mut e = engine();
    e.set_buildings([
        ("s".to_owned(), "P1".to_owned(), "3号楼".to_owned()),
        ("s".to_owned(), "P2".to_owned(), "3号楼".to_owned()),
    ]);
    let mut out = Vec::new();
    let fault = data(r#"{"v":1,"seq":1,"ts":0,"m":{"pump_fault":true}}"#);
    let fire = data(r#"{"v":1,"seq":1,"ts":0,"m":{"fire_alarm":true}}"#);
    e.observe(1000, pump("P1"), Input::Message(&fault), &mut out);
    e.observe(5000, pump("P2"), Input::Message(&fault), &mut out);
    e.observe(6000, pump("P3"), Input::Message(&fire), &mut out);
    for t in (7..40).map(|s| s * 1000) {
        e.tick(t, &mut out);
    }
    let notes: Vec<_> = out
        .iter()
        .filter_map(|x| if let Effect::Notify(n) = x { Some(n) } else { None })
        .collect();
    assert_eq!(notes.len(), 2, "{notes:#?}");
    // The fire alarm at once, alone in its group (no building).
    assert!(notes[0].critical && notes[0].at == 6000 && notes[0].building.is_none());
    assert_eq!(notes[0].firing[0].code, "fire_alarm");
    // The two pump faults of building 3 together, after the 30 s wait.
    assert_eq!(notes[1].at, 31_000);
    assert_eq!(notes[1].building.as_deref(), Some("3号楼"));
    assert_eq!(notes[1].firing.len(), 2);
    // Each notified firing alert that asks for hands has one work-order intent.
    let opens = out
        .iter()
        .filter(|x| matches!(x, Effect::WorkOrder(WorkOrderIntent::Open { .. })))
        .count();
    assert_eq!(opens, 3);
}

#[test]
fn an_alert_resolved_within_its_group_wait_is_never_notified() {
    check(
        "
device s/firepump/P
birth interval_s=3600
check fired resolved notified dispatched closed
series pump_fault: 0 1x5 0x40
expect 1s fired pump_fault
expect 6s resolved pump_fault
",
    );
}

#[test]
fn evidence_is_the_devices_values_when_it_fired() {
    let mut e = engine();
    let mut out = Vec::new();
    let m = data(r#"{"v":1,"seq":1,"ts":0,"m":{"pump_fault":true,"network_pressure_mpa":0.3}}"#);
    e.observe(1000, pump("P"), Input::Message(&m), &mut out);
    let fired = out
        .iter()
        .find_map(|x| match x {
            Effect::Alert(c) if c.change == Change::Fired => Some(&c.alert),
            _ => None,
        })
        .unwrap();
    let names: Vec<_> = fired.evidence.iter().map(|v| (v.metric.as_str(), v.value)).collect();
    assert!(
        names.contains(&("pump_fault", 1.0)) && names.contains(&("network_pressure_mpa", 0.3)),
        "{names:?}"
    );
    assert_eq!(fired.sources, ["firepump.pump_fault"]);
}
