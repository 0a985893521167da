//! The fire remote-monitoring centre connector (GB/T 26875.3, CONTRACT §10,
//! docs/integrations.md) against a test centre that decodes on its own
//! (`tests/peers/fire_centre.py`, Python's `struct`, no code shared with the
//! gateway's codec): a fire pump node publishes over MQTT to the real
//! gateway, and the centre writes down every frame it gets.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::http::{free_addr, publish};

const DEVICE: &str = "FP-1";
/// The gateway's user-device address, and what the centre must read back.
const ADDRESS: &str = "0A0B0C0D0E0F";

/// The test centre: a Python process, killed on drop.
struct Centre {
    child: Child,
    out: PathBuf,
}

impl Centre {
    fn start(port: u16, out: &Path, args: &[&str]) -> Centre {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/fire_centre.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(out)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 is not installed: run scripts/install-test-deps.sh");
        let mut line = String::new();
        let stdout = child.stdout.take().unwrap();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
        assert_eq!(line.trim(), "ready", "the test centre did not start");
        Centre {
            child,
            out: out.to_owned(),
        }
    }

    /// Every frame it got so far.
    fn frames(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Polls until `pred` holds for a frame (20 s at most); the frame.
    async fn wait(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(f) = self.frames().into_iter().find(|f| pred(f)) {
                return f;
            }
            assert!(
                Instant::now() < deadline,
                "the centre never got {what}; it got:\n{}",
                self.frames()
                    .iter()
                    .map(Value::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Centre {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(mqtt: u16, http: u16, data: &Path, centre: u16) -> gateway::app::config::Config {
    let text = format!(
        r#"{}
[upstream.fire_centre]
host = "127.0.0.1"
port = {centre}
address = "{ADDRESS}"
centre_address = "000000000001"
confirm_timeout = "1s"
tries = 3
heartbeat = "60s"
[[upstream.fire_centre.devices]]
device = "{DEVICE}"
number = 7
"#,
        crate::http::base_config(mqtt, http, data)
    );
    gateway::app::config::Config::parse(Path::new("fire.toml"), &text).unwrap()
}

fn data(seq: u32, metrics: &str) -> String {
    format!(r#"{{"v":1,"seq":{seq},"ts":1763798400000,"m":{{{metrics}}}}}"#)
}

fn fire_alarm(seq: u32) -> String {
    format!(r#"{{"v":1,"seq":{seq},"ts":1763798400000,"code":"fire_alarm","active":true}}"#)
}

fn now_s() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// A component status object for `address` with `bit` set.
fn status_with(f: &Value, address: u64, bit: u64) -> bool {
    f["type"] == 2
        && f["objects"].as_array().is_some_and(|o| {
            o.iter()
                .any(|o| o["component_address"] == address && o["status"].as_u64().unwrap_or(0) & bit != 0)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fire_pump_reaches_the_centre_within_the_alarm_budget() {
    let dir = tempfile::tempdir().unwrap();
    let (mqtt, http, centre_port) = (free_addr(), free_addr(), free_addr().port());
    let centre = Centre::start(centre_port, &dir.path().join("centre.jsonl"), &["--sync"]);
    let gw = crate::http::start(config(mqtt.port(), http.port(), &dir.path().join("data"), centre_port)).await;
    let topic = |kind: &str| format!("fm/v1/lakeside/firepump/{DEVICE}/{kind}");

    // Values first: analog values (type 3) of the pump's outlet, the
    // network's pressure and the tank's level.
    publish(
        mqtt,
        &topic("data"),
        &data(
            1,
            r#""pump_running":false,"outlet_pressure_mpa":0.5,"network_pressure_mpa":0.35,"tank_level_m":2.35"#,
        ),
    )
    .await;
    let analog = centre.wait("analog values", |f| f["type"] == 3).await;
    let objects = analog["objects"].as_array().unwrap();
    let value = |address: u64| {
        objects.iter().find(|o| o["component_address"] == address).map(|o| {
            (
                o["component_type"].clone(),
                o["analog_type"].clone(),
                o["value"].clone(),
            )
        })
    };
    // Device 7: pump 71, pressure 72, tank 73; pressure in 0.1 kPa (type 5), level in cm (type 2).
    assert_eq!(value(71), Some((91.into(), 5.into(), 5000.into())), "{analog}");
    assert_eq!(value(72), Some((99.into(), 5.into(), 3500.into())), "{analog}");
    assert_eq!(value(73), Some((92.into(), 2.into(), 235.into())), "{analog}");
    assert_eq!(analog["source"], ADDRESS.to_lowercase());
    assert_eq!(analog["destination"], "000000000001");
    assert_eq!(analog["command"], 2);
    assert_eq!(analog["version"], serde_json::json!([1, 0]));

    // The fire alarm: the 10-second budget, from the node's publish to the
    // centre reading the frame.
    let sent = now_s();
    publish(mqtt, &topic("event"), &fire_alarm(2)).await;
    let alarm = centre.wait("the fire alarm", |f| status_with(f, 74, 0b10)).await;
    let took = alarm["t"].as_f64().unwrap() - sent;
    println!(
        "fire alarm: MQTT publish to the centre's frame in {:.0} ms",
        took * 1000.0
    );
    assert!(took < 10.0, "the alarm took {took:.1} s, over GB 26875.1's 10 s");
    let o = &alarm["objects"][0];
    assert_eq!(o["system_type"], 1, "the fire alarm system");
    assert_eq!(o["component_type"], 1, "the fire alarm control panel");
    assert_eq!(o["description"], format!("{DEVICE}火警输入"));

    // The pump starts: its status word gets bit 5.
    publish(mqtt, &topic("data"), &data(3, r#""pump_running":true"#)).await;
    let started = centre.wait("the pump started", |f| status_with(f, 71, 1 << 5)).await;
    assert_eq!(started["objects"][0]["component_type"], 91);
    assert_eq!(started["objects"][0]["description"], format!("{DEVICE}消防泵"));

    // The centre's time sync is confirmed, its reads answered on its clock.
    let synced = centre.wait("the sync's confirm", |f| f["command"] == 3).await;
    assert_eq!(synced["destination"], "000000000001");
    let status = centre
        .wait("the status reply", |f| f["command"] == 5 && f["type"] == 21)
        .await;
    assert_eq!(
        status["objects"][0]["status"].as_u64().unwrap() & 1,
        1,
        "normal monitoring"
    );
    let clock = centre
        .wait("the clock reply", |f| f["command"] == 5 && f["type"] == 28)
        .await;
    let t = clock["objects"][0]["time"].as_array().unwrap();
    // 2030-01-02 03:04:05 set a moment ago: the same minute.
    assert_eq!(
        Value::Array(t[1..].to_vec()),
        serde_json::json!([4, 3, 2, 1, 30]),
        "{clock}"
    );
    // Everything the centre read was a good frame.
    assert!(
        centre.frames().iter().all(|f| f.get("bad").is_none()),
        "{:?}",
        centre.frames()
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfirmed_frame_is_resent_and_a_centre_restart_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mqtt, http, centre_port) = (free_addr(), free_addr(), free_addr().port());
    let out = dir.path().join("centre.jsonl");
    let data_dir = dir.path().join("data");
    // The centre confirms nothing the first time: the gateway's greeting
    // heartbeat is sent again after `confirm_timeout`, with the same serial.
    let centre = Centre::start(centre_port, &out, &["--skip", "1"]);
    let gw = crate::http::start(config(mqtt.port(), http.port(), &data_dir, centre_port)).await;
    let first = centre.wait("a first frame", |f| f["command"] == 2).await;
    assert_eq!(first["answer"], "skip");
    let again = centre
        .wait("the same frame again", |f| {
            f["serial"] == first["serial"] && f["answer"] == "confirm"
        })
        .await;
    assert_eq!(again["objects"], first["objects"], "the same frame");
    let waited = again["t"].as_f64().unwrap() - first["t"].as_f64().unwrap();
    assert!(waited >= 0.9, "resent after {waited:.2} s, before the 1 s timeout");

    // The centre goes away; a fire alarm and the pump starting happen
    // meanwhile, and the gateway itself restarts.
    drop(centre);
    let topic = |kind: &str| format!("fm/v1/lakeside/firepump/{DEVICE}/{kind}");
    publish(mqtt, &topic("event"), &fire_alarm(1)).await;
    publish(mqtt, &topic("data"), &data(2, r#""pump_running":true"#)).await;
    // Both are in the outbox before the stop.
    let store = || rusqlite::Connection::open(data_dir.join("gateway.sqlite")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n: i64 = store()
            .query_row(
                "SELECT COUNT(*) FROM upstream_outbox WHERE connector = 'fire_centre'",
                [],
                |r| r.get(0),
            )
            .unwrap_or(0);
        if n >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the uploads are not in the outbox ({n})");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.stop().await;
    let gw = crate::http::start(config(mqtt.port(), http.port(), &data_dir, centre_port)).await;
    let centre = Centre::start(centre_port, &out, &[]);
    let alarm = centre
        .wait("the fire alarm after the restart", |f| {
            status_with(f, 74, 0b10) && f["answer"] == "confirm"
        })
        .await;
    let started = centre
        .wait("the pump started after the restart", |f| {
            status_with(f, 71, 1 << 5) && f["answer"] == "confirm"
        })
        .await;
    // In the order they happened.
    assert!(alarm["t"].as_f64() <= started["t"].as_f64());
    // Confirmed rows leave the outbox.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n: i64 = store()
            .query_row(
                "SELECT COUNT(*) FROM upstream_outbox WHERE connector = 'fire_centre'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        if n == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{n} rows left in the outbox after the centre confirmed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.stop().await;
}

/// An alert change of `code` on the test device, as the engine writes one.
fn change(id: u64, code: &str, change: &str, state: &str) -> alerting::AlertChange {
    serde_json::from_value(serde_json::json!({
        "change": change,
        "alert": {
            "id": id, "site": "lakeside", "class": "firepump", "device": DEVICE, "code": code,
            "port": null, "severity": "major", "state": state, "since": 0, "fired_at": 0,
            "acked_at": null, "acked_by": null, "resolved_at": null, "flapping": false,
            "data": "fresh", "inhibited_by": null, "maintenance": false, "sources": [],
            "building": null, "evidence": []
        }
    }))
    .unwrap()
}

/// The component status objects of rows, decoded with the codec.
fn statuses(rows: &[gateway::upstream::Entry]) -> Vec<(u32, u16)> {
    rows.iter()
        .filter_map(|r| {
            let data = hex::decode(r.payload["unit"].as_str().unwrap()).unwrap();
            match gb26875::Unit::decode(&data).unwrap() {
                gb26875::Unit::ComponentStatus(v) => {
                    Some(v.iter().map(|o| (o.component_address, o.status)).collect::<Vec<_>>())
                }
                _ => None,
            }
        })
        .flatten()
        .collect()
}

#[test]
fn the_mapper_follows_alerts_and_keeps_those_firing_across_a_restart() {
    use gateway::upstream::Mapper;
    use gateway::upstream::fire_centre::FireCentreMapper;
    let cfg = config(1, 2, Path::new("/nonexistent"), 3).upstream.fire_centre.unwrap();
    let mut m = FireCentreMapper::new(&cfg);
    let step = |m: &mut FireCentreMapper, c: alerting::AlertChange| {
        let mut rows = Vec::new();
        m.map(1_000, &[alerting::Effect::Alert(c)], &[], &mut rows);
        statuses(&rows)
    };
    // low_pressure fires on the pressure component (72), resolves, is gone.
    assert_eq!(step(&mut m, change(1, "low_pressure", "pending", "pending")), vec![]);
    assert_eq!(
        step(&mut m, change(1, "low_pressure", "fired", "firing")),
        vec![(72, 0b101)]
    );
    assert_eq!(
        step(&mut m, change(1, "low_pressure", "acknowledged", "acknowledged")),
        vec![]
    );
    assert_eq!(
        step(&mut m, change(1, "low_pressure", "resolved", "resolved")),
        vec![(72, 0b1)]
    );
    // Both power faults are the pump's one power bit (8).
    assert_eq!(
        step(&mut m, change(2, "main_power_fault", "fired", "firing")),
        vec![(71, 0x101)]
    );
    assert_eq!(step(&mut m, change(3, "backup_power_fault", "fired", "firing")), vec![]);
    assert_eq!(
        step(&mut m, change(2, "main_power_fault", "resolved", "resolved")),
        vec![]
    );
    // Not a fire facility code: nothing.
    assert_eq!(step(&mut m, change(4, "not_in_auto", "fired", "firing")), vec![]);

    // After a restart the mapper is new; seeded with the open alerts, the
    // pump's next word still carries the fault that fired before.
    let mut m = FireCentreMapper::new(&cfg);
    m.seed(&[change(5, "pump_fault", "fired", "firing").alert]);
    let incoming = gateway::ingest::ingest(
        &format!("fm/v1/lakeside/firepump/{DEVICE}/data"),
        data(1, r#""pump_running":true"#).as_bytes(),
        2_000,
    )
    .unwrap();
    let mut rows = Vec::new();
    m.message(2_000, &incoming, &mut rows);
    assert_eq!(statuses(&rows), vec![(71, 0b10_0101)], "normal, fault, started");
    // Replayed history is not the present.
    let old = gateway::ingest::ingest(
        &format!("fm/v1/lakeside/firepump/{DEVICE}/data"),
        r#"{"v":1,"seq":2,"ts":1763798400000,"hist":true,"m":{"pump_running":false}}"#.as_bytes(),
        3_000,
    )
    .unwrap();
    let mut rows = Vec::new();
    m.message(3_000, &old, &mut rows);
    assert!(rows.is_empty());
}
