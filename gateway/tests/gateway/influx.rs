//! The InfluxDB sink against a real server speaking the v2 write API
//! (VictoriaMetrics): points arrive; during an outage they wait in the spool
//! and drain in order afterwards.

use std::time::Duration;

use gateway::app::config::Config;
use gateway::ingest::ingest;
use gateway::store::influx::{Spool, lines};
use testkit::{VictoriaMetrics, free_port};

#[test]
fn line_protocol_layout() {
    let p = r#"{"v":1,"seq":1,"ts":1763798400000,"hist":true,"m":{"smoke":false,"leakage_ma":3.5},"ports":[{"port":4,"temp_c":41}]}"#;
    let inc = ingest("fm/v1/lakeside/charger/BAY-07/data", p.as_bytes(), 0).unwrap();
    let got = lines(&inc);
    assert_eq!(
        got,
        [
            "charger,site=lakeside,device=BAY-07,hist=true smoke=0.0,leakage_ma=3.5 1763798400000",
            "charger,site=lakeside,device=BAY-07,port=4,hist=true temp_c=41.0 1763798400000",
        ]
    );
    let birth = ingest("fm/v1/s/elevator/E/death", br#"{"v":1,"bdseq":1}"#, 0).unwrap();
    assert!(lines(&birth).is_empty());
}

#[test]
fn the_spool_keeps_order_across_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let s = Spool::open(dir.path()).unwrap();
    s.append(b"a x=1.0 1\n").unwrap();
    s.append(b"b x=2.0 2\n").unwrap();
    let s = Spool::open(dir.path()).unwrap();
    assert_eq!(s.len().unwrap(), 2);
    // A reopened spool numbers after what it found: the next file is the newest.
    s.append(b"c x=3.0 3\n").unwrap();
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| std::path::Path::new(n).extension().is_some_and(|x| x == "lp"))
        .collect();
    names.sort();
    let newest = std::fs::read_to_string(dir.path().join(names.last().unwrap())).unwrap();
    assert_eq!(names.len(), 3);
    assert_eq!(newest, "c x=3.0 3\n");
}

async fn http(port: u16, path: &str, token: Option<&str>) -> String {
    crate::http::get(port, path, token).await.1
}

/// The timestamps VictoriaMetrics holds for `firepump_tank_level_m`.
async fn exported(vm: u16) -> Vec<i64> {
    let body = http(vm, "/api/v1/export?match[]=firepump_tank_level_m", None).await;
    let mut ts: Vec<i64> = body
        .lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .flat_map(|v| v["timestamps"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t.as_i64())
        .collect();
    ts.sort_unstable();
    ts
}

async fn wait_export(vm: u16, n: usize) -> Vec<i64> {
    let mut got = Vec::new();
    for _ in 0..150 {
        got = exported(vm).await;
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    got
}

async fn publish(mqtt: u16, seq: i64, ts: i64) {
    let p = format!(r#"{{"v":1,"seq":{seq},"ts":{ts},"m":{{"tank_level_m":{seq}}}}}"#);
    assert!(crate::http::try_publish(mqtt, "fm/v1/lakeside/firepump/PUMP-B2/data", &p).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_spooled_and_drained_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut vm = VictoriaMetrics::start(dir.path());
    let (mqtt, http_port) = (free_port(), free_port());
    let cfg = crate::http::base_config(mqtt, http_port, &dir.path().join("data"))
        + &format!(
            r#"[influx]
url = "http://127.0.0.1:{vm}"
org = "fm"
bucket = "telemetry"
batch_points = 2
flush_ms = 100
"#,
            vm = vm.port
        );
    let config = Config::parse(std::path::Path::new("t.toml"), &cfg).unwrap();
    let gw = crate::http::start(config).await;
    testkit::wait_port(mqtt);
    let base = gateway::app::run::now_ms() - 60_000;
    // The gateway subscribes once connected to its own broker: repeat the first until stored.
    for _ in 0..100 {
        publish(mqtt, 1, base + 1).await;
        if http(
            http_port,
            "/api/v1/series?device=PUMP-B2&metric=tank_level_m&from=0",
            Some(testkit::ADMIN_TOKEN),
        )
        .await
        .contains("\"ts\"")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for seq in 2..=5 {
        publish(mqtt, seq, base + seq).await;
    }
    let got = wait_export(vm.port, 5).await;
    assert_eq!(got, (1..=5).map(|s| base + s).collect::<Vec<_>>());

    // Outage: the server goes away while data keeps coming.
    vm.stop();
    for seq in 6..=10 {
        publish(mqtt, seq, base + seq).await;
    }
    let mut spooled = 0;
    for _ in 0..100 {
        let m = http(http_port, "/metrics", Some(testkit::ADMIN_TOKEN)).await;
        spooled = m
            .lines()
            .find(|l| l.starts_with("fm_influx_spool_batches "))
            .and_then(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
            .unwrap_or(0);
        if spooled >= 2 && m.contains("fm_influx_retries_total") && !m.contains("fm_influx_retries_total 0") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(spooled >= 2, "the outage's batches wait in the spool ({spooled})");
    // Live processing goes on meanwhile: the store has everything.
    let stored = http(
        http_port,
        "/api/v1/series?device=PUMP-B2&metric=tank_level_m&from=0",
        Some(testkit::ADMIN_TOKEN),
    )
    .await;
    assert_eq!(stored.matches("\"ts\"").count(), 10, "{stored}");

    vm.start_again();
    let got = wait_export(vm.port, 10).await;
    assert_eq!(
        got,
        (1..=10).map(|s| base + s).collect::<Vec<_>>(),
        "every point, once, after the outage"
    );
    let m = http(http_port, "/metrics", Some(testkit::ADMIN_TOKEN)).await;
    // The ten samples (each once: above), and the overview's counts the
    // gateway writes once a minute (`fm_gateway_state`, docs/storage.md).
    let written = m
        .lines()
        .find_map(|l| l.strip_prefix("fm_influx_points_written_total "))
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert!(written.is_some_and(|n| n >= 10), "{m}");
    assert!(m.contains("fm_influx_points_dropped_total 0"), "{m}");
    gw.stop().await;
}
