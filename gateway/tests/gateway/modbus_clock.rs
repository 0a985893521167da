//! Modbus polling on virtual time: the gateway on a manual clock polls a
//! simulated fire pump node (the firmware's own Modbus slave over TCP) once
//! per virtual second, stamps what it reads with virtual times, and backs
//! its breaker off in virtual seconds; `sync()` is the barrier that makes
//! "move the clock, sync" see the polls the move made due. A slave that
//! answers only exceptions is reachable but not up: `modbus_exception`, not
//! `offline`.

use std::sync::{Arc, Mutex};

use firmware::firepump::FirepumpConfig;
use firmware::registers::RegisterImage;
use gateway::app::config::Config;
use gateway::app::run::Running;
use gateway::app::shared::Options;
use gateway::clock::ManualClock;
use protocol::modbus::Point;
use protocol::{DeviceClass, Format, Metric};
use sim::modbus::{FirepumpSlave, LinkControl, RigSlave, SharedResponder, TcpSlave};
use sim::physics::firewater::{FireWaterConfig, FireWaterSim};
use sim::rig;

use crate::http::{base_config, free_addr, get};

/// 2026-12-01T08:00:00+08:00.
const T0: i64 = 1_796_083_200_000;

/// A fire pump node on a Modbus TCP socket, and a gateway on a manual clock
/// polling it every virtual second.
struct Bench {
    pump: Arc<Mutex<FirepumpSlave>>,
    control: Arc<LinkControl>,
    _link: TcpSlave,
    gw: Running,
    clock: ManualClock,
    http: u16,
    dir: tempfile::TempDir,
}

impl Bench {
    async fn start() -> Bench {
        Bench::start_with("").await
    }

    /// With `extra` appended to the device's configuration (a vendor map).
    async fn start_with(extra: &str) -> Bench {
        let mut r = rig::firepump(
            FireWaterSim::new(FireWaterConfig::default(), 3),
            FirepumpConfig::default(),
            Format::Json,
        );
        // Past the contacts' debounce: the node has stepped and measured.
        r.advance(2_000);
        let pump = RigSlave::new(r, 1).unwrap().shared();
        let control = LinkControl::new();
        let responder: SharedResponder = pump.clone();
        let link = TcpSlave::start("127.0.0.1:0".parse().unwrap(), responder, control.clone())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (mqtt, http) = (free_addr(), free_addr());
        let text = base_config(mqtt.port(), http.port(), dir.path())
            + &format!(
                "[[modbus.devices]]\nsite = \"lakeside\"\ndevice = \"FP-1\"\nclass = \"firepump\"\naddress = \"{}\"\n\
                 interval_ms = 1000\ntimeout_ms = 300\n{extra}",
                link.addr()
            );
        let cfg = Config::parse(std::path::Path::new("modbus-clock.toml"), &text).unwrap();
        let clock = ManualClock::new(T0);
        let options = Options {
            clock: Arc::new(clock.clone()),
            ticker: false,
        };
        let gw = gateway::app::run::start(cfg, testkit::ADMIN_TOKEN.into(), options)
            .await
            .unwrap();
        Bench {
            pump,
            control,
            _link: link,
            gw,
            clock,
            http: http.port(),
            dir,
        }
    }

    /// One virtual second: the node, then the gateway's clock, then the
    /// barrier (the poll the move made due is stored) and a tick.
    async fn second(&mut self) {
        let now = {
            let mut p = self.pump.lock().unwrap();
            p.rig.advance(1_000);
            p.rig.now()
        };
        self.clock.set(T0 + i64::try_from(now).unwrap() - 2_000);
        self.gw.sync().await.unwrap();
        self.gw.tick().await.unwrap();
        self.gw.sync().await.unwrap();
    }

    async fn json(&self, path: &str) -> serde_json::Value {
        let (status, body) = get(self.http, path, Some(testkit::ADMIN_TOKEN)).await;
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    async fn device(&self) -> serde_json::Value {
        let d = self.json("/api/v1/devices").await;
        d["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["device"] == "FP-1")
            .cloned()
            .unwrap()
    }

    /// The alerts of FP-1 with `code` in `state` (`firing`, `resolved`, ...).
    async fn alerts(&self, code: &str, state: &str) -> Vec<serde_json::Value> {
        let a = self
            .json(&format!("/api/v1/alerts?device=FP-1&code={code}&state={state}"))
            .await;
        a["alerts"].as_array().unwrap().clone()
    }

    async fn metrics(&self) -> String {
        get(self.http, "/metrics", Some(testkit::ADMIN_TOKEN)).await.1
    }

    async fn stop(self) {
        self.gw.stop().await.unwrap();
        drop(self.dir);
    }
}

/// Read requests in one poll of the fire pump's built-in map.
fn requests_per_poll() -> u64 {
    let text = "[[modbus.devices]]\nsite = \"s\"\ndevice = \"D\"\nclass = \"firepump\"\naddress = \"127.0.0.1:502\"\n";
    let c = Config::parse(std::path::Path::new("p.toml"), text).unwrap();
    gateway::ingest::modbus::plan(&c.modbus.devices[0].points().unwrap()).len() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_land_once_per_virtual_second_stamped_with_virtual_time() {
    let mut b = Bench::start().await;
    // The first poll is due at start: the barrier waits for it.
    b.gw.sync().await.unwrap();
    for _ in 0..5 {
        b.second().await;
    }
    // However much wall time the test took, the clock moved 5 s: six polls.
    b.gw.sync().await.unwrap();
    assert_eq!(b.control.served(), 6 * requests_per_poll());

    let series = b
        .json(&format!(
            "/api/v1/series?device=FP-1&metric=network_pressure_mpa&from={T0}"
        ))
        .await;
    let points = series["points"].as_array().unwrap();
    let stamps: Vec<i64> = points.iter().map(|p| p["ts"].as_i64().unwrap()).collect();
    assert_eq!(stamps, (0..6).map(|k| T0 + k * 1_000).collect::<Vec<_>>(), "{series}");
    // What the node measures, through its register (1 kPa steps).
    let node = b
        .pump
        .lock()
        .unwrap()
        .rig
        .node
        .logic()
        .point(Point::Metric(Metric::NetworkPressureMpa), None)
        .unwrap();
    let last = points.last().unwrap()["value"].as_f64().unwrap();
    assert!((last - node).abs() <= 0.0005, "polled {last}, the node has {node}");
    assert!(node > 0.1, "a pressurised network: {node}");

    let d = b.device().await;
    assert_eq!(d["status"], "online", "{d}");
    assert_eq!(d["class"], DeviceClass::Firepump.as_str());
    assert_eq!(d["last_seen_ms"].as_i64(), Some(T0 + 5_000), "{d}");
    assert_eq!(d["interval_s"].as_u64(), Some(1), "{d}");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_slave_opens_the_breaker_and_backs_off_in_virtual_seconds() {
    let mut b = Bench::start().await;
    b.gw.sync().await.unwrap();
    assert_eq!(b.device().await["status"], "online");
    b.control.set_mute(true);
    // Each poll of a muted slave times out on its first request (300 ms of
    // real time) and drops the connection: one dropped request per poll.
    let mut dropped = Vec::new();
    for _ in 0..10 {
        b.second().await;
        dropped.push(b.control.dropped());
    }
    // Polls at 1, 2, 3 s; the breaker opens at the third failure and backs
    // off 1 s, 2 s, 4 s: polls at 4, 6 and 10 s.
    assert_eq!(dropped, [1, 2, 3, 4, 4, 5, 5, 5, 5, 6]);
    let d = b.device().await;
    assert_eq!(d["status"], "offline", "{d}");
    assert_eq!(d["last_seen_ms"].as_i64(), Some(T0 + 3_000), "the death at 3 s: {d}");
    let metrics = get(b.http, "/metrics", Some(testkit::ADMIN_TOKEN)).await.1;
    assert!(metrics.contains("fm_modbus_up{device=\"FP-1\"} 0"), "{metrics}");
    let alerts = b.json("/api/v1/alerts?code=offline").await;
    let offline = &alerts["alerts"][0];
    assert_eq!(offline["device"], "FP-1", "{alerts}");
    assert_eq!(offline["state"], "firing", "{alerts}");
    assert_eq!(offline["fired_at"].as_i64(), Some(T0 + 3_000), "{alerts}");

    // Back: the next poll (8 s after the one at 10 s) is a new session.
    b.control.set_mute(false);
    for _ in 0..7 {
        b.second().await;
    }
    assert_eq!(b.control.served(), requests_per_poll(), "nothing polled before 18 s");
    assert_eq!(b.device().await["status"], "offline");
    b.second().await;
    assert_eq!(b.control.served(), 2 * requests_per_poll());
    let d = b.device().await;
    assert_eq!(d["status"], "online", "{d}");
    assert_eq!(d["bdseq"].as_u64(), Some(2), "{d}");
    assert_eq!(d["last_seen_ms"].as_i64(), Some(T0 + 18_000), "{d}");
    b.stop().await;
}

#[tokio::test]
async fn a_manual_clocks_sleep_ends_when_the_clock_is_moved_past_it_not_before() {
    use futures_util::FutureExt as _;
    use gateway::clock::Clock as _;
    let clock = ManualClock::new(T0);
    assert!(clock.sleep_until(T0).now_or_never().is_some(), "due now: at once");
    let mut waiting = clock.sleep_until(T0 + 1_000);
    assert!((&mut waiting).now_or_never().is_none());
    clock.advance(999);
    assert!((&mut waiting).now_or_never().is_none(), "1 ms early");
    // Never back: a set to the past moves nothing.
    clock.set(T0);
    assert_eq!(clock.now_ms(), T0 + 999);
    clock.set(T0 + 1_000);
    // Woken by the move itself, however long the wall clock has left.
    tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
        .await
        .expect("the sleep ended when the clock got there");
}

/// Checks FP-1 is reachable and judged so: online, never offline, no
/// `bus_down`, and `fm_modbus_up` as `up`.
async fn reachable(b: &Bench, up: u8) {
    let d = b.device().await;
    assert_eq!(d["status"], "online", "{d}");
    for code in ["offline", "bus_down"] {
        let any = b.json(&format!("/api/v1/alerts?code={code}")).await;
        assert_eq!(any["alerts"].as_array().unwrap().len(), 0, "{any}");
    }
    let metrics = b.metrics().await;
    let needle = format!("fm_modbus_up{{device=\"FP-1\"}} {up}");
    assert!(metrics.contains(&needle), "missing {needle} in\n{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slave_answering_only_exceptions_is_not_up_and_raises_modbus_exception_until_it_reads_again() {
    let mut b = Bench::start().await;
    b.gw.sync().await.unwrap();
    reachable(&b, 1).await;
    // Illegal data address (02) to every request, from the poll at 1 s on.
    b.control.set_refuse(Some(2));
    b.second().await;
    b.second().await;
    assert!(
        b.alerts("modbus_exception", "firing").await.is_empty(),
        "two polls are not a fault"
    );
    reachable(&b, 1).await;
    b.second().await;
    // The third refused poll (3 s): not up, the device's own fault, with the
    // last exception (the poll's last read) as its evidence.
    let firing = b.alerts("modbus_exception", "firing").await;
    assert_eq!(firing.len(), 1, "{firing:?}");
    let alert = &firing[0];
    assert_eq!(alert["fired_at"].as_i64(), Some(T0 + 3_000), "{alert}");
    assert_eq!(alert["severity"], "major", "{alert}");
    assert_eq!(alert["class"], "firepump", "{alert}");
    let evidence = alert["evidence"].as_array().unwrap();
    let field = |name: &str| evidence.iter().find(|e| e["metric"] == name).cloned();
    assert_eq!(
        field("exception").map(|e| e["text"].clone()),
        Some("IllegalDataAddress".into()),
        "{alert}"
    );
    let last = {
        let text =
            "[[modbus.devices]]\nsite = \"s\"\ndevice = \"D\"\nclass = \"firepump\"\naddress = \"127.0.0.1:502\"\n";
        let c = Config::parse(std::path::Path::new("p.toml"), text).unwrap();
        gateway::ingest::modbus::plan(&c.modbus.devices[0].points().unwrap())
            .pop()
            .unwrap()
    };
    assert_eq!(
        field("function").map(|e| e["value"].as_f64()),
        Some(Some(f64::from(last.table.read_function()))),
        "{alert}"
    );
    assert_eq!(
        field("address").map(|e| e["value"].as_f64()),
        Some(Some(f64::from(last.address))),
        "{alert}"
    );
    reachable(&b, 0).await;

    // It stays refusing for longer than the offline window (3 × 1 s): every
    // poll is still an answer, so no breaker, no death, no `offline`.
    let served = b.control.served();
    for _ in 0..10 {
        b.second().await;
    }
    assert_eq!(
        b.control.served() - served,
        10 * requests_per_poll(),
        "polled every second"
    );
    reachable(&b, 0).await;
    assert_eq!(b.alerts("modbus_exception", "firing").await.len(), 1, "one alert");
    let metrics = b.metrics().await;
    assert!(
        metrics.contains("fm_modbus_requests_total{device=\"FP-1\",outcome=\"exception\"}"),
        "{metrics}"
    );

    // Values again: resolved at the next poll (14 s), up again.
    b.control.set_refuse(None);
    b.second().await;
    assert!(b.alerts("modbus_exception", "firing").await.is_empty());
    let resolved = b.alerts("modbus_exception", "resolved").await;
    assert_eq!(resolved.len(), 1, "{resolved:?}");
    assert_eq!(resolved[0]["resolved_at"].as_i64(), Some(T0 + 14_000), "{resolved:?}");
    reachable(&b, 1).await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slave_refusing_some_reads_stays_up_without_an_alert() {
    // A vendor map one of whose reads the node does not have: the firmware
    // answers it with an illegal data address, the other read with values.
    let mut b = Bench::start_with(
        "[[modbus.devices.registers]]\ntable = \"input\"\naddress = 3\ntype = \"u16\"\nscale = 0.001\n\
         metric = \"network_pressure_mpa\"\n\
         [[modbus.devices.registers]]\ntable = \"input\"\naddress = 40\ntype = \"u16\"\nmetric = \"not_there\"\n",
    )
    .await;
    b.gw.sync().await.unwrap();
    for _ in 0..5 {
        b.second().await;
    }
    let metrics = b.metrics().await;
    for outcome in ["ok", "exception"] {
        let needle = format!("fm_modbus_requests_total{{device=\"FP-1\",outcome=\"{outcome}\"}} 6");
        assert!(metrics.contains(&needle), "missing {needle} in\n{metrics}");
    }
    assert!(b.alerts("modbus_exception", "firing").await.is_empty());
    assert!(b.alerts("modbus_exception", "resolved").await.is_empty());
    reachable(&b, 1).await;
    let series = b
        .json(&format!(
            "/api/v1/series?device=FP-1&metric=network_pressure_mpa&from={T0}"
        ))
        .await;
    assert_eq!(series["points"].as_array().unwrap().len(), 6, "{series}");
    b.stop().await;
}
