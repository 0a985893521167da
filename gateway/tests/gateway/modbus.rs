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
        e.starts_with("v.toml:9:1: field `modbus.devices[0].registers[0].type`") && e.contains("use type \"bool\""),
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

/// Every problem of every register is named with its own line and key, in
/// the second device as in the first, all at once (`gateway check`).
#[test]
fn every_problem_of_a_vendor_map_has_its_line_and_key() {
    let device = |name: &str| {
        format!(
            "[[modbus.devices]]\nsite = \"s\"\ndevice = \"{name}\"\nclass = \"firepump\"\naddress = \"127.0.0.1:502\"\n"
        )
    };
    let register = |body: &str| format!("[[modbus.devices.registers]]\ntable = \"holding\"\naddress = 0\n{body}\n");
    let text = device("A")
        + &register("bit = 3\nmetric = \"pump_running\"")
        + &device("B")
        + &register("bit = 2\nmetric = \"pump_fault\"")
        + &register("bit = 16\nmetric = \"start_signal\"")
        + "[[modbus.devices.registers]]\ntable = \"input\"\naddress = 1\ntype = \"u16\"\nmetric = \"network_pressure_mpa\"\nraw_min = 4000\nmin = 0.0\nmax = 1.6\n"
        + &register("type = \"u16\"\nfaults = { 0x21 = \"trapped\", 0x22 = \"pump_fault\" }");
    let errors = Config::check(std::path::Path::new("m.toml"), &text).unwrap_err();
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let line_of = |needle: &str, nth: usize| {
        text.lines()
            .enumerate()
            .filter(|(_, l)| l.starts_with(needle))
            .nth(nth)
            .map(|(i, _)| i + 1)
            .unwrap()
    };
    let expect = [
        (
            line_of("bit = 16", 0),
            "modbus.devices[1].registers[1].bit",
            "not a bit of a 16-bit word",
        ),
        (
            line_of("raw_min", 0),
            "modbus.devices[1].registers[2].raw_max",
            "all four",
        ),
        (
            line_of("faults", 0),
            "modbus.devices[1].registers[3].faults",
            "`trapped` is a code of class elevator",
        ),
    ];
    assert_eq!(errors.len(), expect.len(), "{shown:#?}");
    for (e, (line, field, message)) in errors.iter().zip(expect) {
        assert_eq!(e.field.as_deref(), Some(field), "{shown:#?}");
        assert!(e.message.contains(message), "{shown:#?}");
        // A key that is not written (raw_max) is found at its register's table.
        if field.ends_with("raw_max") {
            assert_eq!(e.line, Some(line - 5), "{shown:#?}");
        } else {
            assert_eq!(e.line, Some(line), "{shown:#?}");
        }
    }
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

/// A vendor controller on pymodbus whose values the test changes while it is
/// polled (`tests/peers/modbus_slave.py` reads changes on stdin).
struct Controller {
    _peer: Peer,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Controller {
    fn start(port: u16, spec: &str) -> Controller {
        let python = std::env::var("FM_TEST_PYTHON")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target/test-venv/bin/python").to_owned());
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/modbus_slave.py");
        let mut child = Command::new(&python)
            .args([script, &port.to_string(), "1", spec])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{python}: {e}; run scripts/install-test-deps.sh"));
        let stdin = child.stdin.take().unwrap();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
        assert_eq!(line.trim(), "ready", "pymodbus slave did not start");
        testkit::wait_port(port);
        Controller {
            _peer: Peer(child),
            stdin,
            stdout,
        }
    }

    /// Sets values (the spec's shape); returns once the slave serves them.
    fn set(&mut self, change: &str) {
        use std::io::Write as _;
        writeln!(self.stdin, "{change}").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut self.stdout, &mut line).unwrap();
        assert_eq!(line.trim(), "ok", "the slave refused {change}");
    }
}

/// The example configuration of `docs/modbus.md` (its one TOML block with
/// `[[modbus.devices]]`), pointed at `address`.
fn documented_cabinet(address: &str) -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/modbus.md")).unwrap();
    let block = doc
        .split("```toml\n")
        .skip(1)
        .filter_map(|b| b.split_once("```").map(|(t, _)| t))
        .find(|t| t.contains("[[modbus.devices]]"))
        .expect("docs/modbus.md has the example");
    assert!(block.contains("address = \"192.168.10.31:502\""), "{block}");
    block
        .replace("192.168.10.31:502", address)
        .replace("interval_ms = 1000", "interval_ms = 200")
}

/// The alerts of `device` in `state`, as (code, alert).
async fn alerts_of(http: u16, device: &str, state: &str) -> Vec<(String, serde_json::Value)> {
    let body = get(http, &format!("/api/v1/alerts?device={device}&state={state}")).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["code"].as_str().unwrap_or_default().to_owned(), a.clone()))
        .collect()
}

/// The stored values of one series.
async fn series(http: u16, device: &str, metric: &str) -> Vec<f64> {
    let body = get(http, &format!("/api/v1/series?device={device}&metric={metric}&from=0")).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["points"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["value"].as_f64().or_else(|| p["value"].as_bool().map(f64::from)))
        .collect()
}

/// Waits until the last stored value of a series is `value` (the store
/// commits a poll's samples on its own pace beside the alerting state).
async fn until_last(http: u16, device: &str, metric: &str, value: f64) {
    let path = format!("/api/v1/series?device={device}&metric={metric}&from=0");
    let last = |b: &str| {
        let v: serde_json::Value = serde_json::from_str(b).unwrap_or_default();
        v["points"]
            .as_array()
            .and_then(|p| p.last())
            .and_then(|p| p["value"].as_f64().or_else(|| p["value"].as_bool().map(f64::from)))
    };
    let body = crate::http::wait_for(http, &path, |b| last(b).is_some_and(|l| (l - value).abs() < 1e-9)).await;
    assert_eq!(last(&body), Some(value), "{metric}: {body}");
}

fn evidence(alert: &serde_json::Value, name: &str) -> Option<serde_json::Value> {
    alert["evidence"]
        .as_array()?
        .iter()
        .find(|e| e["metric"] == name)
        .cloned()
}

/// Waits until `device`'s firing alerts are `codes` (sorted), within the
/// helper's deadline; returns them.
async fn until_firing(http: u16, device: &str, codes: &[&str]) -> Vec<(String, serde_json::Value)> {
    let path = format!("/api/v1/alerts?device={device}&state=firing");
    let want: Vec<String> = codes.iter().map(|c| (*c).to_owned()).collect();
    let ok = |b: &str| {
        let v: serde_json::Value = serde_json::from_str(b).unwrap_or_default();
        let mut got: Vec<String> = v["alerts"]
            .as_array()
            .map(|l| l.iter().filter_map(|a| a["code"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        got.sort();
        got == want
    };
    let body = crate::http::wait_for(http, &path, ok).await;
    assert!(ok(&body), "firing: want {want:?}, got {body}");
    alerts_of(http, device, "firing").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_fire_pump_cabinet_is_polled_end_to_end() {
    let port = testkit::free_port();
    // At rest: both supplies good (bits 5, 6), control mode 2 (auto), 9000 µA
    // on the network pressure (0.5 MPa), the NC fire-alarm contact closed.
    let mut cabinet = Controller::start(
        port,
        r#"{"holding": {"0": 96, "1": 0, "2": 2},
            "input": {"0": 12000, "1": 9000, "2": 16000, "3": 65286},
            "discrete": {"0": 1}}"#,
    );
    let dir = tempfile::tempdir().unwrap();
    let http = testkit::free_port();
    let cfg = crate::http::base_config(testkit::free_port(), http, &dir.path().join("data"))
        + &documented_cabinet(&format!("127.0.0.1:{port}"));
    let config = Config::parse(std::path::Path::new("cabinet.toml"), &cfg).unwrap();
    let gw = crate::http::start(config).await;
    let d = "PUMP-XF1";

    let path = format!("/api/v1/series?device={d}&metric=network_pressure_mpa&from=0");
    crate::http::wait_for(http, &path, |b| b.contains("\"value\":0.5")).await;
    let near = |v: &[f64], x: f64| v.last().is_some_and(|l| (l - x).abs() < 1e-9);
    for (metric, value) in [
        ("network_pressure_mpa", 0.5),
        ("outlet_pressure_mpa", 0.8),
        ("tank_level_m", 3.75),
        ("cabinet_temp_c", -25.0), // 65286 = -250 as i16, 0.1 ℃
        ("auto_mode", 1.0),
        ("main_power_ok", 1.0),
        ("backup_power_ok", 1.0),
        ("pump_running", 0.0),
        ("pump_fault", 0.0),
        ("fire_alarm", 0.0), // the NC contact reads 1: no alarm
        ("fault_code", 0.0),
    ] {
        let v = series(http, d, metric).await;
        assert!(near(&v, value), "{metric}: want {value}, stored {v:?}");
    }
    until_firing(http, d, &[]).await;

    // Fault code 0x11 (1# pump overload): pump_fault, with the register as evidence.
    cabinet.set(r#"{"holding": {"1": 17}}"#);
    let firing = until_firing(http, d, &["pump_fault"]).await;
    let alert = &firing[0].1;
    assert_eq!(
        evidence(alert, "raw").and_then(|e| e["value"].as_f64()),
        Some(17.0),
        "{alert}"
    );
    assert_eq!(
        evidence(alert, "address").and_then(|e| e["value"].as_f64()),
        Some(1.0),
        "{alert}"
    );
    cabinet.set(r#"{"holding": {"1": 0}}"#);
    until_firing(http, d, &[]).await;
    let resolved = alerts_of(http, d, "resolved").await;
    assert!(resolved.iter().any(|(c, _)| c == "pump_fault"), "{resolved:?}");

    // A code the table does not list: the cabinet's own fault.
    cabinet.set(r#"{"holding": {"1": 127}}"#);
    until_firing(http, d, &["pump_cabinet_fault"]).await;
    cabinet.set(r#"{"holding": {"1": 0}}"#);
    until_firing(http, d, &[]).await;

    // The network pressure loop cut: a sensor fault, never a pressure of -0.4 MPa.
    cabinet.set(r#"{"input": {"1": 0}}"#);
    let firing = until_firing(http, d, &["sensor_fault"]).await;
    let alert = &firing[0].1;
    assert_eq!(
        evidence(alert, "metric").map(|e| e["text"].clone()),
        Some("network_pressure_mpa".into()),
        "{alert}"
    );
    // Polls go on (the outlet pressure is stored), the cut loop stores nothing.
    let outlet_before = series(http, d, "outlet_pressure_mpa").await.len();
    let outlet = format!("/api/v1/series?device={d}&metric=outlet_pressure_mpa&from=0");
    crate::http::wait_for(http, &outlet, |b| b.matches("\"ts\"").count() >= outlet_before + 3).await;
    let network = series(http, d, "network_pressure_mpa").await;
    assert!(network.iter().all(|&v| v >= 0.0), "{network:?}");
    let fired_at = alert["fired_at"].as_i64().unwrap();
    let body = get(
        http,
        &format!("/api/v1/series?device={d}&metric=network_pressure_mpa&from={fired_at}"),
    )
    .await;
    assert!(!body.contains("\"ts\""), "stored while the loop was cut: {body}");
    cabinet.set(r#"{"input": {"1": 9000}}"#);
    until_firing(http, d, &[]).await;

    // The NC fire-alarm contact opens: fire_alarm true, and its alert.
    cabinet.set(r#"{"discrete": {"0": 0}}"#);
    until_firing(http, d, &["fire_alarm"]).await;
    until_last(http, d, "fire_alarm", 1.0).await;
    // The status word's fault bit and a fault code say the same: one alert.
    cabinet.set(r#"{"holding": {"0": 224, "1": 18}}"#);
    until_firing(http, d, &["fire_alarm", "pump_fault"]).await;
    until_last(http, d, "pump_fault", 1.0).await;
    gw.stop().await;
}
