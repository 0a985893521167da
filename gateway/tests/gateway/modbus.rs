//! Modbus polling: request planning and decoding (pure), then a real peer not
//! written here (pymodbus) beside a dead and a silent slave.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gateway::app::config::Config;
use gateway::ingest::modbus::{DeviceConfig, plan};
use protocol::modbus::Table;
use protocol::{DeviceClass, Metric, PortMetric, Timestamp, Value};

fn device(class: DeviceClass, ports: u8) -> DeviceConfig {
    DeviceConfig {
        site: "lakeside".into(),
        device: "D1".into(),
        class,
        address: Some("127.0.0.1:502".parse().unwrap()),
        serial: None,
        unit: 1,
        interval_ms: 1000,
        timeout_ms: 500,
        ports,
        registers: None,
        poll_all: false,
    }
}

#[test]
fn points_our_nodes_cannot_measure_are_left_out_unless_asked_for() {
    let names =
        |d: &DeviceConfig| -> Vec<String> { d.points().unwrap().iter().map(|p| format!("{:?}", p.target)).collect() };
    let ours = names(&device(DeviceClass::Elevator, 0));
    assert!(ours.iter().any(|n| n.contains("DoorZone")), "{ours:?}");
    assert!(
        !ours
            .iter()
            .any(|n| n.contains("SafetyCircuitOk") || n.contains("ServiceMode")),
        "{ours:?}"
    );
    let vendor = names(&DeviceConfig {
        poll_all: true,
        ..device(DeviceClass::Elevator, 0)
    });
    assert!(vendor.iter().any(|n| n.contains("SafetyCircuitOk")), "{vendor:?}");
    assert!(vendor.iter().any(|n| n.contains("ServiceMode")), "{vendor:?}");
}

#[test]
fn the_plan_reads_contiguous_runs_and_never_across_gaps() {
    let points = device(DeviceClass::Charger, 2).points().unwrap();
    let reqs = plan(&points);
    let ranges: Vec<(Table, u16, u16)> = reqs.iter().map(|r| (r.table, r.address, r.count)).collect();
    assert_eq!(
        ranges,
        [
            (Table::DiscreteInput, 0, 1),
            (Table::InputRegister, 3, 3),   // mains voltage, ambient, leakage
            (Table::InputRegister, 100, 8), // port 1: 100..107 (gap at 108, 109)
            (Table::InputRegister, 110, 8), // port 2
        ]
    );
    let counted: usize = reqs.iter().map(|r| r.points.len()).sum();
    assert_eq!(counted, points.len());
}

#[test]
fn long_runs_are_split_at_the_modbus_limit() {
    let mut text = String::new();
    for i in 0..130 {
        use std::fmt::Write as _;
        let _ = write!(
            text,
            "[[modbus.devices.registers]]\ntable = \"input\"\naddress = {i}\ntype = \"u16\"\nmetric = \"x{i}\"\n"
        );
    }
    let cfg = format!(
        "[[modbus.devices]]\nsite = \"s\"\ndevice = \"V\"\nclass = \"firepump\"\naddress = \"127.0.0.1:502\"\n{text}"
    );
    let c = Config::parse(std::path::Path::new("v.toml"), &cfg).unwrap();
    let reqs = plan(&c.modbus.devices[0].points().unwrap());
    assert_eq!(reqs.iter().map(|r| r.count).collect::<Vec<_>>(), [125, 5]);
}

#[test]
fn answers_become_a_data_message_with_scaling_and_ports() {
    let points = device(DeviceClass::Charger, 1).points().unwrap();
    let reqs = plan(&points);
    let mut sample = gateway::ingest::modbus::Sample::default();
    sample.answer(&points, &reqs[0], &[1]); // smoke
    sample.answer(&points, &reqs[1], &[2281, 0xFF9C, 35]); // 228.1 V, -10.0 °C, 3.5 mA
    sample.answer(&points, &reqs[2], &[1, 1825, 83, 380, 0, 2400, 0, 5400]);
    let data = sample.finish(&points, 7, Timestamp::from_millis(5));
    assert_eq!(data.m.get(Metric::Smoke), Some(Value::Bool(true)));
    assert!((data.m.get(Metric::MainsVoltageV).unwrap().as_f64().unwrap() - 228.1).abs() < 1e-9);
    assert!((data.m.get(Metric::AmbientTempC).unwrap().as_f64().unwrap() + 10.0).abs() < 1e-9);
    let port = &data.ports[0];
    assert_eq!(port.port, 1);
    assert!((port.readings.get(PortMetric::PowerW).unwrap().as_f64().unwrap() - 182.5).abs() < 1e-9);
    assert!((port.readings.get(PortMetric::EnergyWh).unwrap().as_f64().unwrap() - 240.0).abs() < 1e-9);
    assert_eq!(port.readings.get(PortMetric::SessionS), Some(Value::Number(5400.0)));
    assert_eq!(data.seq, 7);
}

#[test]
fn vendor_maps_are_checked_at_load() {
    let base = "[[modbus.devices]]\nsite = \"s\"\ndevice = \"V\"\nclass = \"firepump\"\naddress = \"127.0.0.1:502\"\n";
    let bad_type = format!(
        "{base}[[modbus.devices.registers]]\ntable = \"coil\"\naddress = 1\ntype = \"u16\"\nmetric = \"pump_running\"\n"
    );
    let e = Config::parse(std::path::Path::new("v.toml"), &bad_type)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("modbus.devices.registers") && e.contains("use type \"bool\""),
        "{e}"
    );
    let bad_metric = format!(
        "{base}[[modbus.devices.registers]]\ntable = \"input\"\naddress = 1\ntype = \"u16\"\nmetric = \"Bad-Name\"\n"
    );
    let e = Config::parse(std::path::Path::new("v.toml"), &bad_metric)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a valid name"), "{e}");
    let bad_order = format!(
        "{base}[[modbus.devices.registers]]\ntable = \"input\"\naddress = 1\ntype = \"u32\"\nword_order = \"xyzw\"\nmetric = \"m\"\n"
    );
    let e = Config::parse(std::path::Path::new("v.toml"), &bad_order)
        .unwrap_err()
        .to_string();
    assert!(e.contains("word_order") && e.contains("xyzw"), "{e}");
}

struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A pymodbus slave serving `spec` on TCP `port` (see `tests/peers/modbus_slave.py`).
fn pymodbus_slave(port: u16, spec: &str) -> Peer {
    let peer = pymodbus_at(&port.to_string(), spec);
    testkit::wait_port(port);
    peer
}

/// A pymodbus slave serving `spec` at `where` (a TCP port, or `rtu:PATH`).
fn pymodbus_at(place: &str, spec: &str) -> Peer {
    let python = std::env::var("FM_TEST_PYTHON")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target/test-venv/bin/python").to_owned());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/modbus_slave.py");
    let mut child = Command::new(&python)
        .args([script, place, "1", spec])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{python}: {e}; run scripts/install-test-deps.sh"));
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line.trim(), "ready", "pymodbus slave did not start");
    Peer(child)
}

async fn get(port: u16, path: &str) -> String {
    crate::http::body(port, path).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_slave_keeps_its_pace_beside_a_dead_and_a_silent_one() {
    let live_port = testkit::free_port();
    // Our fire pump map: versions, then pressures (kPa) and level (cm); flags.
    let _peer = pymodbus_slave(
        live_port,
        r#"{"input": {"0": 1, "1": 1, "2": 620, "3": 280, "4": 340}, "discrete": {"0": 0, "1": 0, "2": 1, "3": 0, "4": 1, "5": 1, "6": 1, "7": 0}}"#,
    );
    // A slave that accepts connections and never answers, and an address nobody listens on.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let dead_port = testkit::free_port();
    let dir = tempfile::tempdir().unwrap();
    let http = testkit::free_port();
    let cfg = crate::http::base_config(testkit::free_port(), http, &dir.path().join("data"))
        + &format!(
            r#"[[modbus.devices]]
site = "lakeside"
device = "PUMP-LIVE"
class = "firepump"
address = "127.0.0.1:{live_port}"
interval_ms = 200
timeout_ms = 300
[[modbus.devices]]
site = "lakeside"
device = "PUMP-SILENT"
class = "firepump"
address = "{silent_addr}"
interval_ms = 200
timeout_ms = 300
[[modbus.devices]]
site = "lakeside"
device = "PUMP-DEAD"
class = "firepump"
address = "127.0.0.1:{dead_port}"
interval_ms = 200
timeout_ms = 300
[[modbus.devices]]
site = "lakeside"
device = "VENDOR"
class = "firepump"
address = "127.0.0.1:{live_port}"
interval_ms = 200
[[modbus.devices.registers]]
table = "input"
address = 3
type = "u16"
scale = 0.001
metric = "network_pressure_mpa"
[[modbus.devices.registers]]
table = "input"
address = 40
type = "u16"
metric = "not_there"
"#
        );
    let config = Config::parse(std::path::Path::new("test.toml"), &cfg).unwrap();
    let gw = crate::http::start(config).await;
    let started = std::time::Instant::now();
    let series = "/api/v1/series?device=PUMP-LIVE&metric=network_pressure_mpa&from=0";
    let body = crate::http::wait_for(http, series, |b| b.matches("\"ts\"").count() >= 8).await;
    let elapsed = started.elapsed();
    let n = body.matches("\"ts\"").count();
    assert!(n >= 8, "{n} polls in {elapsed:?}: {body}");
    // 8 polls at 200 ms: the silent slave's 300 ms timeouts must not slow the live one down.
    assert!(elapsed < Duration::from_secs(4), "8 polls took {elapsed:?}");
    assert!(body.contains("\"value\":0.28"), "{body}");

    let devices: serde_json::Value = serde_json::from_str(&get(http, "/api/v1/devices").await).unwrap();
    let status = |name: &str| {
        devices["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["device"] == name)
            .map(|d| d["status"].clone())
    };
    assert_eq!(status("PUMP-LIVE"), Some("online".into()));
    assert_eq!(status("PUMP-SILENT"), None, "never answered: never born");
    assert_eq!(status("VENDOR"), Some("online".into()), "an exception means alive");
    let metrics = get(http, "/metrics").await;
    for needle in [
        "fm_modbus_requests_total{device=\"PUMP-SILENT\",outcome=\"timeout\"}",
        "fm_modbus_requests_total{device=\"VENDOR\",outcome=\"exception\"}",
        "fm_modbus_requests_total{device=\"VENDOR\",outcome=\"ok\"}",
        "fm_modbus_up{device=\"PUMP-LIVE\"} 1",
    ] {
        assert!(metrics.contains(needle), "missing {needle} in\n{metrics}");
    }
    let vendor = get(http, "/api/v1/series?device=VENDOR&metric=network_pressure_mpa&from=0").await;
    assert!(vendor.contains("\"value\":0.28"), "{vendor}");
    gw.stop().await;
    drop(silent);
}

/// A pty pair standing in for an RS-485 line (`socat`).
fn pty_pair(dir: &std::path::Path) -> (Peer, String, String) {
    let (a, b) = (dir.join("bus-a"), dir.join("bus-b"));
    let peer = Peer(
        Command::new("socat")
            .arg(format!("pty,raw,echo=0,link={}", a.display()))
            .arg(format!("pty,raw,echo=0,link={}", b.display()))
            .stderr(Stdio::null())
            .spawn()
            .expect("socat is not installed: run scripts/install-test-deps.sh"),
    );
    for _ in 0..200 {
        if a.exists() && b.exists() {
            return (peer, a.display().to_string(), b.display().to_string());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("socat made no pty pair");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rtu_bus_keeps_its_live_slave_polled_beside_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let (_socat, gateway_end, slave_end) = pty_pair(dir.path());
    let _peer = pymodbus_at(
        &format!("rtu:{slave_end}"),
        r#"{"input": {"0": 1, "1": 1, "2": 620, "3": 280, "4": 340}, "discrete": {"0": 1, "1": 0, "2": 1, "3": 0, "4": 0, "5": 1, "6": 1, "7": 0}}"#,
    );
    let http = testkit::free_port();
    let cfg = crate::http::base_config(testkit::free_port(), http, &dir.path().join("data"))
        + &format!(
            r#"[[modbus.devices]]
site = "lakeside"
device = "PUMP-RTU"
class = "firepump"
unit = 1
interval_ms = 300
timeout_ms = 250
serial = {{ path = "{gateway_end}", parity = "none" }}
[[modbus.devices]]
site = "lakeside"
device = "PUMP-GONE"
class = "firepump"
unit = 7
interval_ms = 300
timeout_ms = 250
serial = {{ path = "{gateway_end}", parity = "none" }}
"#
        );
    let config = Config::parse(std::path::Path::new("rtu.toml"), &cfg).unwrap();
    let gw = crate::http::start(config).await;
    let started = std::time::Instant::now();
    let series = "/api/v1/series?device=PUMP-RTU&metric=outlet_pressure_mpa&from=0";
    let body = crate::http::wait_for(http, series, |b| b.matches("\"ts\"").count() >= 6).await;
    let elapsed = started.elapsed();
    assert!(body.matches("\"ts\"").count() >= 6, "{body}");
    assert!(body.contains("\"value\":0.62"), "{body}");
    // Six polls at 300 ms, each sharing the bus with one 250 ms timeout of the missing slave.
    assert!(elapsed < Duration::from_secs(6), "six polls took {elapsed:?}");
    let metrics = get(http, "/metrics").await;
    assert!(
        metrics.contains("fm_modbus_requests_total{device=\"PUMP-GONE\",outcome=\"timeout\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("fm_modbus_up{device=\"PUMP-RTU\"} 1"), "{metrics}");
    gw.stop().await;
}

/// A slave that answers its second request only after the poller has given up
/// on it, with a wrong value, then answers promptly again: a late answer left
/// on the wire. It is a fault injector, not a Modbus implementation: it echoes
/// the transaction id and answers every read of input register 3 (count 1).
fn late_answering_slave() -> u16 {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut served = 0u32;
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let mut req = [0u8; 12];
            while s.read_exact(&mut req).is_ok() {
                served += 1;
                let (value, delay) = if served == 2 { (999u16, 600) } else { (280u16, 0) };
                std::thread::sleep(Duration::from_millis(delay));
                let [hi, lo] = value.to_be_bytes();
                let resp = [req[0], req[1], 0, 0, 0, 5, req[6], 4, 2, hi, lo];
                if s.write_all(&resp).is_err() {
                    break;
                }
            }
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_answer_never_becomes_the_next_value() {
    let port = late_answering_slave();
    let dir = tempfile::tempdir().unwrap();
    let http = testkit::free_port();
    let cfg = crate::http::base_config(testkit::free_port(), http, &dir.path().join("data"))
        + &format!(
            r#"[[modbus.devices]]
site = "lakeside"
device = "LATE"
class = "firepump"
address = "127.0.0.1:{port}"
interval_ms = 200
timeout_ms = 300
[[modbus.devices.registers]]
table = "input"
address = 3
type = "u16"
scale = 0.001
metric = "network_pressure_mpa"
"#
        );
    let config = Config::parse(std::path::Path::new("late.toml"), &cfg).unwrap();
    let gw = crate::http::start(config).await;
    let series = "/api/v1/series?device=LATE&metric=network_pressure_mpa&from=0";
    let body = crate::http::wait_for(http, series, |b| b.matches("\"ts\"").count() >= 5).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let values: Vec<f64> = v["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["value"].as_f64().unwrap())
        .collect();
    assert!(values.len() >= 5, "{body}");
    assert!(
        values.iter().all(|&x| (x - 0.28).abs() < 1e-9),
        "a late answer was taken for a later request: {values:?}"
    );
    let metrics = get(http, "/metrics").await;
    assert!(
        metrics.contains("fm_modbus_requests_total{device=\"LATE\",outcome=\"timeout\"} 1"),
        "{metrics}"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_slave_refusing_every_read_is_reachable_but_not_up() {
    let port = testkit::free_port();
    // pymodbus answers exception 02 for every address it does not list.
    let _peer = pymodbus_slave(port, r#"{"input": {"3": 280}}"#);
    let dir = tempfile::tempdir().unwrap();
    let http = testkit::free_port();
    let register = |address: u16, metric: &str| {
        format!(
            "[[modbus.devices.registers]]\ntable = \"input\"\naddress = {address}\ntype = \"u16\"\nmetric = \"{metric}\"\n"
        )
    };
    let device = |name: &str| {
        format!(
            "[[modbus.devices]]\nsite = \"lakeside\"\ndevice = \"{name}\"\nclass = \"firepump\"\n\
             address = \"127.0.0.1:{port}\"\ninterval_ms = 200\ntimeout_ms = 300\n"
        )
    };
    let cfg = crate::http::base_config(testkit::free_port(), http, &dir.path().join("data"))
        + &device("REFUSED")
        + &register(40, "not_there")
        + &device("PARTIAL")
        + &register(3, "network_pressure_raw")
        + &register(40, "not_there");
    let config = Config::parse(std::path::Path::new("refused.toml"), &cfg).unwrap();
    let gw = crate::http::start(config).await;
    let path = "/api/v1/alerts?code=modbus_exception&state=firing";
    let body = crate::http::wait_for(http, path, |b| b.contains("REFUSED")).await;
    let alerts: serde_json::Value = serde_json::from_str(&body).unwrap();
    let list = alerts["alerts"].as_array().unwrap();
    assert_eq!(list.len(), 1, "only the slave refusing every read: {body}");
    let alert = &list[0];
    assert_eq!(alert["device"], "REFUSED", "{body}");
    let exception = alert["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["metric"] == "exception")
        .map(|e| e["text"].clone());
    assert_eq!(exception, Some("IllegalDataAddress".into()), "{body}");

    let devices: serde_json::Value = serde_json::from_str(&get(http, "/api/v1/devices").await).unwrap();
    for name in ["REFUSED", "PARTIAL"] {
        let d = devices["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["device"] == name)
            .unwrap();
        assert_eq!(d["status"], "online", "it answers: {d}");
    }
    let offline = get(http, "/api/v1/alerts?code=offline").await;
    assert!(offline.contains("\"alerts\":[]"), "{offline}");
    let metrics = get(http, "/metrics").await;
    for needle in [
        "fm_modbus_up{device=\"REFUSED\"} 0",
        "fm_modbus_up{device=\"PARTIAL\"} 1",
        "fm_modbus_requests_total{device=\"PARTIAL\",outcome=\"exception\"}",
    ] {
        assert!(metrics.contains(needle), "missing {needle} in\n{metrics}");
    }
    gw.stop().await;
}
