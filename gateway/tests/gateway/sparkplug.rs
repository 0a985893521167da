//! Sparkplug B ingest end to end: payloads built by an independent encoder
//! (Python's `protobuf`, the schema described again at run time in
//! `tests/peers/sparkplug_codec.py`), published with the real
//! `mosquitto_pub` through a real Mosquitto into the real gateway, which is
//! the primary host application: births with aliases, data by alias in the
//! series API, a `seq` gap answered with a rebirth NCMD (decoded by the same
//! independent codec), an alert raised from Sparkplug data, NDEATH taking
//! the devices offline, and the gateway's STATE retained, its will saying
//! offline once the gateway is gone.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::http::{body, get, start, wait_for};

const TS: i64 = 1_763_798_400_000;

fn python() -> String {
    std::env::var("FM_TEST_PYTHON")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target/test-venv/bin/python").to_owned())
}

fn codec() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/sparkplug_codec.py")
}

/// Encodes payloads with the independent encoder into `dir`, one file each.
async fn encode(dir: &Path, items: &[(&str, Value)]) {
    let list: Vec<Value> = items
        .iter()
        .map(|(file, payload)| json!({"file": file, "payload": payload}))
        .collect();
    let mut child = tokio::process::Command::new(python())
        .args([codec(), "encode", &dir.display().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}; run scripts/install-test-deps.sh", python()));
    {
        use tokio::io::AsyncWriteExt as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(serde_json::to_string(&list).unwrap().as_bytes())
            .await
            .unwrap();
    }
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "encoded",
        "the encoder failed (is protobuf in the test venv? scripts/install-test-deps.sh)"
    );
}

/// Decodes a hex payload with the independent decoder.
async fn decode(hex: &str) -> Value {
    let mut child = tokio::process::Command::new(python())
        .args([codec(), "decode"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use tokio::io::AsyncWriteExt as _;
        child.stdin.take().unwrap().write_all(hex.as_bytes()).await.unwrap();
    }
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "decode {hex}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Publishes the file `dir/name` on `topic` with the real `mosquitto_pub` (QoS 0, as Sparkplug has it).
async fn publish_file(port: u16, topic: &str, dir: &Path, name: &str) {
    let file: PathBuf = dir.join(name);
    let ok = tokio::process::Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "0", "-t", topic, "-f"])
        .arg(&file)
        .status()
        .await
        .expect("mosquitto_pub is not installed: run scripts/install-test-deps.sh")
        .success();
    assert!(ok, "mosquitto_pub {topic}");
}

/// The retained message on `topic`, read with the real `mosquitto_sub`.
async fn retained(port: u16, topic: &str) -> String {
    let out = tokio::process::Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            topic,
            "-C",
            "1",
            "-W",
            "5",
        ])
        .output()
        .await
        .expect("mosquitto_sub is not installed");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn metric_value(metrics: &str, line_start: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Polls `/metrics` until `pred` holds (10 s at most).
async fn wait_metrics(http: u16, pred: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    for _ in 0..200 {
        last = get(http, "/metrics", Some(testkit::ADMIN_TOKEN)).await.1;
        if pred(&last) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    last
}

fn config(broker: u16, http: u16, data: &Path) -> String {
    format!(
        r#"
[mqtt.broker]
host = "127.0.0.1"
port = {broker}
client_id = "fm-sparkplug-test"
[http]
listen = "127.0.0.1:{http}"
[storage]
data_dir = "{data}"

[[alerting.overrides]]
class = "firepump"
params = {{ low_pressure = "1s" }}

[sparkplug]
host_id = "fm-test"
rebirth_every = "1s"

[[sparkplug.map]]
group = "lakeside"
edge = "pumproom-*"
device = "pump-*"
site = "{{group}}"
class = "firepump"
id = "FP-{{device}}"
interval_s = 600
metrics = [
  {{ name = "Pressure/Network", metric = "network_pressure_mpa", scale = 0.001 }},
  {{ name = "Pump/Running", metric = "pump_running" }},
  {{ name = "Cabinet/Auto", metric = "auto_mode" }},
]
"#,
        data = data.display()
    )
}

fn bd_seq(n: i64) -> Value {
    json!({"name": "bdSeq", "datatype": "Int64", "value": n})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_node_through_mosquitto_is_born_samples_alerts_rebirths_and_dies() {
    let dir = tempfile::tempdir().unwrap();
    let broker = testkit::Mosquitto::start(dir.path());
    let http = testkit::free_port();
    let data = dir.path().join("data");
    let text = config(broker.port, http, &data);
    let cfg =
        gateway::app::config::Config::check(Path::new("sparkplug.toml"), &text).unwrap_or_else(|e| panic!("{e:?}"));
    let gw = start(cfg).await;
    let payloads = dir.path().join("payloads");
    std::fs::create_dir_all(&payloads).unwrap();
    encode(
        &payloads,
        &[
            (
                "nbirth",
                json!({"timestamp": TS, "seq": 0, "metrics": [
                    bd_seq(1),
                    {"name": "Node Control/Rebirth", "datatype": "Boolean", "value": false},
                ]}),
            ),
            (
                "dbirth",
                json!({"timestamp": TS, "seq": 1, "metrics": [
                    {"name": "Pressure/Network", "alias": 1, "datatype": "Double", "value": 280.0},
                    {"name": "Pump/Running", "alias": 2, "datatype": "Boolean", "value": false},
                    {"name": "Cabinet/Auto", "alias": 3, "datatype": "Boolean", "value": true},
                    {"name": "Vendor/Serial", "alias": 4, "datatype": "String", "value": "SN-1"},
                ]}),
            ),
            // Data by alias only: 30 kPa at the network's worst point is 0.03 MPa, below 0.07.
            (
                "ddata",
                json!({"timestamp": TS + 1000, "seq": 2, "metrics": [
                    {"alias": 1, "datatype": "Double", "value": 30.0},
                ]}),
            ),
            // seq 9 after 2: six messages lost.
            (
                "gap",
                json!({"timestamp": TS + 2000, "seq": 9, "metrics": [
                    {"alias": 1, "datatype": "Double", "value": 31.0},
                ]}),
            ),
            ("ndeath", json!({"timestamp": TS + 3000, "metrics": [bd_seq(1)]})),
        ],
    )
    .await;

    // The gateway announces itself as the primary host: STATE, retained.
    let deadline = Instant::now() + Duration::from_secs(10);
    let state = loop {
        let s = retained(broker.port, "spBv1.0/STATE/fm-test").await;
        if !s.is_empty() || Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let state: Value = serde_json::from_str(&state).unwrap_or_else(|e| panic!("STATE {state:?}: {e}"));
    assert_eq!(state["online"], true, "{state}");
    assert!(
        state["timestamp"].as_i64().is_some_and(|t| t > 1_600_000_000_000),
        "{state}"
    );
    let m = wait_metrics(http, |m| m.contains("fm_sparkplug_connected 1")).await;
    assert!(m.contains("fm_sparkplug_connected 1"), "{m}");

    // Births with aliases: our device is online, its birth values stored.
    let p = broker.port;
    publish_file(p, "spBv1.0/lakeside/NBIRTH/pumproom-b2", &payloads, "nbirth").await;
    publish_file(p, "spBv1.0/lakeside/DBIRTH/pumproom-b2/pump-1", &payloads, "dbirth").await;
    let devices = wait_for(http, "/api/v1/devices", |b| b.contains("FP-pump-1")).await;
    let devices: Value = serde_json::from_str(&devices).unwrap();
    let d = devices["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device"] == "FP-pump-1")
        .unwrap_or_else(|| panic!("{devices}"));
    assert_eq!(
        (d["site"].as_str(), d["class"].as_str()),
        (Some("lakeside"), Some("firepump")),
        "{d}"
    );
    assert_eq!(d["status"], "online", "{d}");

    // Data by alias reaches the series API, scaled.
    publish_file(p, "spBv1.0/lakeside/DDATA/pumproom-b2/pump-1", &payloads, "ddata").await;
    let series = "/api/v1/series?device=FP-pump-1&metric=network_pressure_mpa&from=0";
    let points = wait_for(http, series, |b| b.contains(&(TS + 1000).to_string())).await;
    let points: Value = serde_json::from_str(&points).unwrap();
    let values: Vec<(i64, f64)> = points["points"]
        .as_array()
        .unwrap_or_else(|| panic!("{points}"))
        .iter()
        .map(|p| (p["ts"].as_i64().unwrap(), p["value"].as_f64().unwrap()))
        .collect();
    assert_eq!(values, [(TS, 0.28), (TS + 1000, 0.03)], "{points}");

    // Sparkplug data raises our alert: the pressure stayed low past its 1 s.
    let alerts = wait_for(http, "/api/v1/alerts?device=FP-pump-1", |b| {
        b.contains("\"low_pressure\"") && b.contains("\"firing\"")
    })
    .await;
    assert!(
        alerts.contains("\"low_pressure\"") && alerts.contains("\"firing\""),
        "{alerts}"
    );

    // A seq gap: the gateway asks the edge node for a rebirth on its NCMD.
    let mut sub = tokio::process::Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &p.to_string(),
            "-t",
            "spBv1.0/lakeside/NCMD/pumproom-b2",
        ])
        .args(["-C", "1", "-F", "%x"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = sub.stdout.take().unwrap();
    let read = tokio::spawn(async move {
        use tokio::io::AsyncReadExt as _;
        let mut s = String::new();
        let _ = out.read_to_string(&mut s).await;
        s
    });
    // The subscriber may not be subscribed yet: the gap is sent again (the
    // gateway asks at most once a second) until the NCMD is seen.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !read.is_finished() && Instant::now() < deadline {
        publish_file(p, "spBv1.0/lakeside/DDATA/pumproom-b2/pump-1", &payloads, "gap").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let hex = read.await.unwrap();
    assert!(!hex.trim().is_empty(), "no rebirth request seen");
    let ncmd = decode(hex.trim()).await;
    let rebirth = &ncmd["metrics"][0];
    assert_eq!(rebirth["name"], "Node Control/Rebirth", "{ncmd}");
    assert_eq!(rebirth["datatype"], "Boolean", "{ncmd}");
    assert_eq!(rebirth["boolean_value"], true, "{ncmd}");
    let m = body(http, "/metrics").await;
    assert!(
        metric_value(&m, "fm_sparkplug_rebirth_requests_total{reason=\"seq_gap\"}") >= 1.0,
        "{m}"
    );
    // The metric no map names was counted, not dropped silently.
    assert!(
        metric_value(&m, "fm_sparkplug_unmapped_total{reason=\"metric\"}") >= 1.0,
        "{m}"
    );
    assert!(
        metric_value(&m, "fm_sparkplug_messages_total{kind=\"DBIRTH\"}") >= 1.0,
        "{m}"
    );

    // NDEATH with the birth's bdSeq: the device goes offline.
    publish_file(p, "spBv1.0/lakeside/NDEATH/pumproom-b2", &payloads, "ndeath").await;
    let devices = wait_for(http, "/api/v1/devices", |b| {
        serde_json::from_str::<Value>(b).is_ok_and(|v| {
            v["devices"]
                .as_array()
                .is_some_and(|a| a.iter().any(|d| d["device"] == "FP-pump-1" && d["status"] == "offline"))
        })
    })
    .await;
    assert!(devices.contains("\"offline\""), "{devices}");

    // The gateway goes: its will leaves STATE offline, retained, with the birth's timestamp.
    gw.stop().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let gone = loop {
        let s = retained(p, "spBv1.0/STATE/fm-test").await;
        if s.contains("false") || Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let gone: Value = serde_json::from_str(&gone).unwrap_or_else(|e| panic!("STATE {gone:?}: {e}"));
    assert_eq!(gone["online"], false, "{gone}");
    assert_eq!(gone["timestamp"], state["timestamp"], "{gone}");
}

/// Publishes `dir/name` on the embedded broker as a provisioned device.
async fn publish_as(port: u16, user: &str, password: &str, topic: &str, dir: &Path, name: &str) -> bool {
    tokio::process::Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1", "-t", topic])
        .args(["-u", user, "-P", password, "-f"])
        .arg(dir.join(name))
        .stderr(Stdio::null())
        .status()
        .await
        .expect("mosquitto_pub is not installed")
        .success()
}

/// On the embedded broker with `auth = "devices"`, an edge node provisioned
/// as `{site}/{device}` speaks Sparkplug as group = site, edge node =
/// device: its own topics reach the gateway, another edge node's are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provisioned_edge_node_on_the_embedded_broker_speaks_only_for_itself() {
    let dir = tempfile::tempdir().unwrap();
    let (mqtt, http) = (testkit::free_port(), testkit::free_port());
    let data = dir.path().join("data");
    let text = format!(
        "[mqtt]\nlisten = \"127.0.0.1:{mqtt}\"\nauth = \"devices\"\n[http]\nlisten = \"127.0.0.1:{http}\"\n\
         [storage]\ndata_dir = \"{}\"\n[sparkplug]\n\n[[sparkplug.map]]\ngroup = \"lakeside\"\nedge = \"*\"\ndevice = \"*\"\n\
         site = \"lakeside\"\nclass = \"firepump\"\nid = \"{{edge}}-{{device}}\"\n\
         metrics = [{{ name = \"Pressure/Network\", metric = \"network_pressure_mpa\", scale = 0.001 }}]\n",
        data.display()
    );
    let cfg =
        gateway::app::config::Config::check(Path::new("embedded.toml"), &text).unwrap_or_else(|e| panic!("{e:?}"));
    let gw = start(cfg).await;
    let (status, answer) = crate::http::post(
        http,
        "/api/v1/devices",
        r#"{"site":"lakeside","class":"firepump","device":"pumproom"}"#,
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    let cred: Value = serde_json::from_str(&answer).unwrap();
    let (user, pw) = (cred["username"].as_str().unwrap(), cred["password"].as_str().unwrap());
    let payloads = dir.path().join("payloads");
    std::fs::create_dir_all(&payloads).unwrap();
    encode(
        &payloads,
        &[
            ("nbirth", json!({"timestamp": TS, "seq": 0, "metrics": [bd_seq(0)]})),
            (
                "dbirth",
                json!({"timestamp": TS, "seq": 1, "metrics": [
                    {"name": "Pressure/Network", "alias": 1, "datatype": "Float", "value": 250.0},
                ]}),
            ),
        ],
    )
    .await;
    let m = wait_metrics(http, |m| m.contains("fm_sparkplug_connected 1")).await;
    assert!(m.contains("fm_sparkplug_connected 1"), "{m}");
    let own = "spBv1.0/lakeside/NBIRTH/pumproom";
    assert!(publish_as(mqtt, user, pw, own, &payloads, "nbirth").await);
    let own = "spBv1.0/lakeside/DBIRTH/pumproom/pump-1";
    assert!(publish_as(mqtt, user, pw, own, &payloads, "dbirth").await);
    // Someone else's edge node: refused at the broker (QoS 1: no PUBACK, counted).
    let other = "spBv1.0/lakeside/DBIRTH/boilerroom/pump-9";
    let _ = publish_as(mqtt, user, pw, other, &payloads, "dbirth").await;
    let series = "/api/v1/series?device=pumproom-pump-1&metric=network_pressure_mpa&from=0";
    let points = wait_for(http, series, |b| b.contains(&TS.to_string())).await;
    assert!(points.contains("0.25"), "{points}");
    let m = wait_metrics(http, |m| {
        metric_value(m, "fm_mqtt_denied_total{reason=\"publish\"}") >= 1.0
    })
    .await;
    assert!(
        metric_value(&m, "fm_mqtt_denied_total{reason=\"publish\"}") >= 1.0,
        "{m}"
    );
    let devices = body(http, "/api/v1/devices").await;
    assert!(!devices.contains("boilerroom"), "{devices}");
    gw.stop().await;
}
