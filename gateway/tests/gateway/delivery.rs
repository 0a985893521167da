//! Delivery, on real processes (CONTRACT §7): what a node was acknowledged
//! survives anything that happens to the gateway afterwards.
//!
//! - SIGKILL at random points while nodes raise events one after another
//!   (each `mosquitto_pub` returns on its PUBACK): after the restarts every
//!   acknowledged event is an alert.
//! - `/readyz` says why the gateway is not ready, and is 200 once it is.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::http::{get, try_publish};

/// A gateway process, killed (SIGKILL) when dropped, so a failing test
/// leaves no gateway behind.
struct Gw(Child);

impl Gw {
    /// SIGKILL, and reaped.
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Gw {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `gateway run` with `args`, admin token `testkit::ADMIN_TOKEN`, quiet.
fn run(args: &[&std::ffi::OsStr]) -> Gw {
    Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("run")
        .args(args)
        .env("GATEWAY_ADMIN_TOKEN", testkit::ADMIN_TOKEN)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(Gw)
        .unwrap()
}

/// The binary on its embedded defaults with these ports and data directory.
fn spawn_embedded(mqtt: u16, http: u16, data: &std::path::Path) -> Gw {
    let (mqtt, http) = (format!("127.0.0.1:{mqtt}"), format!("127.0.0.1:{http}"));
    run(&[
        "--mqtt-listen".as_ref(),
        mqtt.as_ref(),
        "--http-listen".as_ref(),
        http.as_ref(),
        "--data-dir".as_ref(),
        data.as_os_str(),
    ])
}

/// The binary on `config` (a file).
fn spawn(config: &std::path::Path) -> Gw {
    run(&["--config".as_ref(), config.as_os_str()])
}

/// A configuration file in `dir` for the gateway behind the broker on
/// `port`, HTTP on `http`, data in `dir/data`.
fn behind(port: u16, http: u16, dir: &std::path::Path) -> std::path::PathBuf {
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[mqtt.broker]\nhost = \"127.0.0.1\"\nport = {port}\n[http]\nlisten = \"127.0.0.1:{http}\"\n[storage]\ndata_dir = \"{}\"\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    config
}

/// Nodes raising fire alarms one after another on the broker at `port`,
/// pump room `P-{i}` each (a publish that gets no PUBACK is tried again for
/// the same room), until `stop`: the rooms whose alarm was acknowledged.
fn raise_alarms(
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut acked = Vec::new();
        let mut i = 0u32;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let device = format!("P-{i:05}");
            if try_publish(port, &format!("fm/v1/s/firepump/{device}/event"), &fire_alarm(1)).await {
                acked.push(device);
                i += 1;
            } else {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        acked
    })
}

/// Waits (up to 30 s) until `/readyz` answers 200; its last answer.
async fn ready(http: u16) -> (u16, String) {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = if tokio::net::TcpStream::connect(("127.0.0.1", http)).await.is_ok() {
            tokio::time::timeout(Duration::from_secs(2), get(http, "/readyz", None))
                .await
                .unwrap_or((0, String::new()))
        } else {
            (0, String::new())
        };
        if answer.0 == 200 || Instant::now() > until {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The devices of every alert with `code`, across all states.
async fn alerted(http: u16, code: &str) -> std::collections::BTreeSet<String> {
    let (status, body) = get(
        http,
        &format!("/api/v1/alerts?code={code}&limit=100000"),
        Some(testkit::ADMIN_TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["device"].as_str().unwrap().to_owned())
        .collect()
}

fn fire_alarm(seq: u32) -> String {
    format!(r#"{{"v":1,"seq":{seq},"ts":1763798400000,"code":"fire_alarm","active":true}}"#)
}

/// Twenty SIGKILLs at random points while pump rooms raise fire alarms one
/// after another through a real Mosquitto: every alarm Mosquitto
/// acknowledged to its node becomes an alert once the gateway is back,
/// because the gateway acknowledges to Mosquitto only after the alert is
/// committed (until then Mosquitto keeps it in the gateway's session).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let broker = testkit::Mosquitto::start(dir.path());
    let http = testkit::free_port();
    let config = behind(broker.port, http, dir.path());
    let child = spawn(&config);
    assert_eq!(ready(http).await.0, 200);

    // The nodes: one pump room after another raises its fire alarm, each
    // publish returning on Mosquitto's PUBACK. Everything acknowledged
    // becomes an alert: Mosquitto redelivers what the gateway had not
    // acknowledged when it died (given up to 30 s).
    let (acked, mut child) = kill_twenty_times(broker.port, http, 7, child, || spawn(&config)).await;
    assert_all_alerted(http, &acked, Duration::from_secs(30)).await;
    child.kill();
}

/// Nodes raise alarms on the broker at `port` ([`raise_alarms`]) while the
/// gateway (`child`, HTTP on `http`) is killed (SIGKILL) 20 times at seeded random
/// points, 50–400 ms apart, and started again with `respawn` (and waited for
/// until ready). Returns the acknowledged rooms (more than 100) and the last
/// gateway.
async fn kill_twenty_times(
    port: u16,
    http: u16,
    seed: u64,
    mut child: Gw,
    respawn: impl Fn() -> Gw,
) -> (Vec<String>, Gw) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let nodes = raise_alarms(port, stop.clone());
    let mut rng = fastrand::Rng::with_seed(seed);
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(rng.u64(50..400))).await;
        child.kill();
        child = respawn();
        assert_eq!(ready(http).await.0, 200);
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let acked = nodes.await.unwrap();
    assert!(acked.len() > 100, "too few events to mean anything: {}", acked.len());
    eprintln!("{} fire alarms acknowledged across 20 kills", acked.len());
    (acked, child)
}

/// Every room of `acked` has a `fire_alarm` alert on the gateway at `http`
/// within `wait` (zero: at the first look).
async fn assert_all_alerted(http: u16, acked: &[String], wait: Duration) {
    let until = Instant::now() + wait;
    let missing = loop {
        let seen = alerted(http, "fire_alarm").await;
        let missing: Vec<&String> = acked.iter().filter(|d| !seen.contains(*d)).collect();
        if missing.is_empty() || Instant::now() >= until {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged fire alarms never became alerts after 20 kills: {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(10)]
    );
}

/// `/readyz` is 503 with a reason while the broker is away, and 200 once
/// the gateway is subscribed again; `/healthz` stays liveness only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_says_why_while_the_broker_is_away() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = testkit::Mosquitto::start(dir.path());
    let http = testkit::free_port();
    let config = behind(broker.port, http, dir.path());
    let mut child = spawn(&config);
    let (status, body) = ready(http).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, r#"{"ready":true,"reasons":[]}"#);
    broker.stop();
    let until = Instant::now() + Duration::from_secs(20);
    let (status, body) = loop {
        let a = get(http, "/readyz", None).await;
        if a.0 != 200 || Instant::now() > until {
            break a;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status, 503, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ready"], false);
    assert!(v["reasons"][0].as_str().unwrap().starts_with("mqtt:"), "{body}");
    assert_eq!(get(http, "/healthz", None).await, (200, "ok".to_owned()));
    broker.start_again();
    assert_eq!(ready(http).await.0, 200);
    child.kill();
}

/// Twenty starts of the gateway on its embedded broker, each with a node
/// publishing a fire alarm at the first instant the MQTT port accepts it,
/// and each start killed (SIGKILL) right after the node's PUBACK: every
/// alarm is an alert after the restarts. The broker admits a node only once
/// the gateway takes its messages, and its PUBACK waits for the commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_publishing_the_instant_the_port_opens_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut devices = Vec::new();
    for start in 0..20 {
        let (mqtt, http) = (testkit::free_port(), testkit::free_port());
        let mut child = spawn_embedded(mqtt, http, &data);
        let device = format!("P-{start:02}");
        let topic = format!("fm/v1/s/firepump/{device}/event");
        let until = Instant::now() + Duration::from_secs(30);
        while !try_publish(mqtt, &topic, &fire_alarm(1)).await {
            assert!(Instant::now() < until, "start {start}: the broker never took the alarm");
        }
        child.kill();
        devices.push(device);
    }
    let (mqtt, http) = (testkit::free_port(), testkit::free_port());
    let mut child = spawn_embedded(mqtt, http, &data);
    assert_eq!(ready(http).await.0, 200);
    let seen = alerted(http, "fire_alarm").await;
    child.kill();
    let missing: Vec<&String> = devices.iter().filter(|d| !seen.contains(*d)).collect();
    assert!(missing.is_empty(), "acknowledged alarms lost: {missing:?}");
}

/// Twenty SIGKILLs at random points while nodes raise fire alarms one after
/// another on the embedded broker: an alarm whose PUBACK the node received
/// is an alert after the restarts (a node that got no PUBACK tries again
/// later, as a node does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_on_the_embedded_broker_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mqtt, http) = (testkit::free_port(), testkit::free_port());
    let child = spawn_embedded(mqtt, http, &data);
    assert_eq!(ready(http).await.0, 200);
    let (acked, mut child) = kill_twenty_times(mqtt, http, 11, child, || spawn_embedded(mqtt, http, &data)).await;
    // Acknowledged means stored: every alarm is there at the first look.
    assert_all_alerted(http, &acked, Duration::ZERO).await;
    child.kill();
}

/// A tmpfs of `mib` MiB mounted on a new directory, unmounted on drop: a
/// disk that really fills up. Needs root (as the tests run here and in CI).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(mib: u32) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot mount a tmpfs (the tests run as root, as CI does)");
        SmallDisk { dir }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Writes `filler` until the disk has at most `leave` bytes free.
    fn fill(&self, filler: &str, leave: u64) {
        use std::io::Write as _;
        let free = gateway::ready::disk_free(self.path()).unwrap();
        let mut f = std::fs::File::create(self.path().join(filler)).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        let mut left = free.saturating_sub(leave);
        while left > 0 {
            let n = usize::try_from(left.min(chunk.len() as u64)).unwrap();
            if f.write_all(&chunk[..n]).is_err() {
                break;
            }
            left -= n as u64;
        }
        let _ = f.sync_all();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// A QoS 1 publish with a real `mosquitto_pub` that is given `wait` to get
/// its PUBACK: whether it did. The process is left to finish on its own.
async fn publish_within(port: u16, topic: &str, payload: &str, wait: Duration) -> (bool, tokio::process::Child) {
    let mut child = crate::http::mosquitto_pub(port, topic, payload).spawn().unwrap();
    let done = tokio::time::timeout(wait, child.wait()).await;
    (matches!(done, Ok(Ok(s)) if s.success()), child)
}

/// The data directory on a small disk. Below the headroom, telemetry is
/// held back (no PUBACK) while fire alarms are still stored and alerted,
/// and `/readyz` says why; with the disk full even commits fail, are
/// retried, and the alarm still shows as an alert; once space is back
/// everything held is stored and acknowledged and the gateway is ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_holds_telemetry_back_keeps_alarms_and_recovers() {
    let disk = SmallDisk::mount(48);
    let (mqtt, http) = (testkit::free_port(), testkit::free_port());
    let config = disk.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[mqtt]\nlisten = \"127.0.0.1:{mqtt}\"\n[http]\nlisten = \"127.0.0.1:{http}\"\n\
             [storage]\ndata_dir = \"{}\"\nmin_free_mb = 16\n",
            disk.path().join("data").display()
        ),
    )
    .unwrap();
    let mut child = spawn(&config);
    assert_eq!(ready(http).await.0, 200);
    let sample = |seq: u32| format!(r#"{{"v":1,"seq":{seq},"ts":1763798400000,"m":{{"network_pressure_mpa":0.35}}}}"#);
    assert!(try_publish(mqtt, "fm/v1/s/firepump/P-1/data", &sample(1)).await);

    // Below the headroom: 8 MiB left of the 16 kept.
    disk.fill("filler-1", 8 << 20);
    let until = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let (status, body) = get(http, "/readyz", None).await;
        if status == 503 || Instant::now() > until {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(body.contains(r#""ready":false"#) && body.contains("disk: "), "{body}");
    let until = Instant::now() + Duration::from_secs(10);
    while !get(http, "/metrics", Some(testkit::ADMIN_TOKEN))
        .await
        .1
        .contains("\nfm_pipeline_telemetry_held 1\n")
    {
        assert!(Instant::now() < until, "telemetry is not held back below the headroom");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (taken, held) = publish_within(mqtt, "fm/v1/s/firepump/P-1/data", &sample(2), Duration::from_secs(2)).await;
    if taken {
        let (_, m) = get(http, "/metrics", Some(testkit::ADMIN_TOKEN)).await;
        panic!("telemetry was acknowledged below the disk headroom: {m}");
    }
    assert!(try_publish(mqtt, "fm/v1/s/firepump/P-2/event", &fire_alarm(1)).await);
    assert!(alerted(http, "fire_alarm").await.contains("P-2"));

    // Full: commits fail and are retried; the alarm is judged all the same.
    disk.fill("filler-2", 0);
    let (acked, alarm) = publish_within(
        mqtt,
        "fm/v1/s/firepump/P-3/event",
        &fire_alarm(1),
        Duration::from_secs(2),
    )
    .await;
    assert!(!acked, "an alarm was acknowledged although the disk is full");
    let until = Instant::now() + Duration::from_secs(10);
    while !alerted(http, "fire_alarm").await.contains("P-3") {
        assert!(
            Instant::now() < until,
            "the alarm was not judged while the disk was full"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, body) = get(http, "/readyz", None).await;
    assert!(body.contains("store: "), "{body}");
    let (_, metrics) = get(http, "/metrics", Some(testkit::ADMIN_TOKEN)).await;
    assert!(metrics.contains("\nfm_pipeline_telemetry_held 1\n"), "{metrics}");

    // Space again: what was held is stored and acknowledged.
    std::fs::remove_file(disk.path().join("filler-2")).unwrap();
    std::fs::remove_file(disk.path().join("filler-1")).unwrap();
    for (what, mut c) in [("the held sample", held), ("the alarm", alarm)] {
        let s = tokio::time::timeout(Duration::from_secs(20), c.wait()).await;
        assert!(
            matches!(s, Ok(Ok(s)) if s.success()),
            "{what} was never acknowledged: {s:?}"
        );
    }
    assert_eq!(ready(http).await.0, 200);
    child.kill();
    // The alarm stored while the disk was full is there after a kill.
    let mut child = spawn(&config);
    assert_eq!(ready(http).await.0, 200);
    let seen = alerted(http, "fire_alarm").await;
    assert!(seen.contains("P-2") && seen.contains("P-3"), "{seen:?}");
    let (_, body) = get(
        http,
        "/api/v1/series?device=P-1&metric=network_pressure_mpa&from=0",
        Some(testkit::ADMIN_TOKEN),
    )
    .await;
    assert_eq!(body.matches("\"ts\"").count(), 2, "both samples stored: {body}");
    child.kill();
}
