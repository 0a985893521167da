//! Device identity on the embedded broker (CONTRACT §8), with real
//! processes: devices provisioned over the API and by the offline CLI,
//! `mosquitto_pub`/`mosquitto_sub` with and without their credentials, over
//! plain TCP and TLS (a password, or a pinned client certificate).

use std::time::Duration;

use gateway::app::config::{Config, MqttAuth};
use testkit::free_port;

/// A gateway whose embedded broker wants device credentials.
fn config(dir: &std::path::Path) -> Config {
    let mut c = Config::default();
    c.mqtt.listen = ([127, 0, 0, 1], free_port()).into();
    c.mqtt.auth = Some(MqttAuth::Devices);
    c.http.listen = ([127, 0, 0, 1], free_port()).into();
    c.storage.data_dir = dir.join("data");
    c
}

/// `mosquitto_pub` of one QoS 1 message with `extra` arguments (credentials,
/// TLS); whether it succeeded, and what it said.
async fn pub_with(port: u16, extra: &[&str], topic: &str, payload: &str) -> (bool, String) {
    let out = crate::http::mosquitto_pub(port, topic, payload)
        .args(extra)
        .stderr(std::process::Stdio::piped())
        .output()
        .await
        .expect("mosquitto_pub is not installed: run scripts/install-test-deps.sh");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The counter `fm_mqtt_denied_total{reason}` (the broker's counters are
/// copied into /metrics once a second: waits for it to reach `at_least`).
async fn denied(http: u16, reason: &str, at_least: u64) -> u64 {
    let line = format!("fm_mqtt_denied_total{{reason=\"{reason}\"}} ");
    let mut n = 0;
    for _ in 0..100 {
        let m = crate::http::body(http, "/metrics").await;
        n = m
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if n >= at_least {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    n
}

struct Device {
    username: String,
    password: String,
}

async fn provision(http: u16, site: &str, class: &str, device: &str, extra: &str) -> Device {
    let body = format!(r#"{{"site":"{site}","class":"{class}","device":"{device}"{extra}}}"#);
    let (status, answer) = crate::http::post(http, "/api/v1/devices", &body).await;
    assert_eq!(status, 201, "{answer}");
    let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(v["username"], format!("{site}/{device}"));
    assert_eq!(v["cmd_key"].as_str().unwrap().len(), 64);
    Device {
        username: v["username"].as_str().unwrap().into(),
        password: v["password"].as_str().unwrap().into(),
    }
}

fn birth(bdseq: u32) -> String {
    format!(r#"{{"v":1,"seq":0,"ts":0,"bdseq":{bdseq},"fw":"1","model":"m","cfg":"c","interval_s":60}}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_provisioned_devices_connect_and_only_on_their_own_topics() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let (mqtt, http) = (cfg.mqtt.listen.port(), cfg.http.listen.port());
    let gw = crate::http::start(cfg).await;
    let lift = provision(http, "lakeside", "elevator", "EL-1", "").await;
    let pump = provision(http, "lakeside", "firepump", "PUMP-1", "").await;
    // Provisioned twice: refused unless rotating.
    let (status, _) = crate::http::post(
        http,
        "/api/v1/devices",
        r#"{"site":"lakeside","class":"elevator","device":"EL-1"}"#,
    )
    .await;
    assert_eq!(status, 409);
    let mine = ["-u", lift.username.as_str(), "-P", lift.password.as_str()];
    let own = "fm/v1/lakeside/elevator/EL-1/birth";

    // Nobody without credentials, with a wrong password, or an unknown user.
    let (ok, said) = pub_with(mqtt, &[], own, &birth(1)).await;
    assert!(!ok, "anonymous publish taken: {said}");
    let (ok, _) = pub_with(mqtt, &["-u", &lift.username, "-P", "guess"], own, &birth(1)).await;
    assert!(!ok);
    let (ok, _) = pub_with(mqtt, &["-u", "lakeside/EL-9", "-P", &lift.password], own, &birth(1)).await;
    assert!(!ok);
    assert!(denied(http, "no_credentials", 1).await >= 1);
    assert!(denied(http, "bad_credentials", 2).await >= 2);

    // The device on its own topic: taken, judged, registered.
    let (ok, said) = pub_with(mqtt, &mine, own, &birth(1)).await;
    assert!(ok, "{said}");
    crate::http::wait_for(http, "/api/v1/devices", |b| b.contains("EL-1")).await;

    // The lift's credentials forging the pump's self-test and a command to a
    // charging bay: acknowledged (MQTT 3.1.1 cannot refuse a publish), never
    // judged. mosquitto_pub returns after the PUBACK, so the refusal is counted.
    let forged = r#"{"v":1,"seq":1,"ts":1,"code":"self_test","active":false,"detail":{"ok":true}}"#;
    let (ok, _) = pub_with(mqtt, &mine, "fm/v1/lakeside/firepump/PUMP-1/event", forged).await;
    assert!(ok);
    let cmd = r#"{"v":1,"seq":1,"ts":1,"id":"x","op":"clear","args":{"port":1}}"#;
    let (ok, _) = pub_with(mqtt, &mine, "fm/v1/lakeside/charger/CH-1/cmd", cmd).await;
    assert!(ok);
    let (ok, _) = pub_with(mqtt, &mine, "fm/v1/lakeside/elevator/EL-2/birth", &birth(1)).await;
    assert!(ok);
    assert!(denied(http, "publish", 3).await >= 3);
    let devices = crate::http::body(http, "/api/v1/devices").await;
    assert!(!devices.contains("EL-2") && !devices.contains("PUMP-1"), "{devices}");
    let records = crate::http::body(http, "/api/v1/records?limit=1000").await;
    assert!(
        !records.contains("self_test"),
        "a forged self-test was recorded: {records}"
    );

    // Reading every node's commands: the subscription is refused (SUBACK 0x80).
    let sub = tokio::process::Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &mqtt.to_string(),
            "-t",
            "fm/v1/+/+/+/cmd",
            "-C",
            "1",
            "-W",
            "1",
        ])
        .args(mine)
        .output()
        .await
        .unwrap();
    assert!(sub.stdout.is_empty());
    assert!(denied(http, "subscribe", 1).await >= 1);

    // A will on another device's death: the CONNECT is refused.
    let (ok, _) = pub_with(
        mqtt,
        &[
            &mine[..],
            &[
                "--will-topic",
                "fm/v1/lakeside/firepump/PUMP-1/death",
                "--will-payload",
                "{}",
            ],
        ]
        .concat(),
        own,
        &birth(2),
    )
    .await;
    assert!(!ok);
    assert!(denied(http, "will", 1).await >= 1);

    // Client ids are per device: the pump may use the id the lift's node
    // uses (its session is keyed with its own user name).
    let pump_creds = [
        "-u",
        pump.username.as_str(),
        "-P",
        pump.password.as_str(),
        "-i",
        "hil-lakeside-EL-1",
    ];
    let (ok, said) = pub_with(mqtt, &pump_creds, "fm/v1/lakeside/firepump/PUMP-1/birth", &birth(1)).await;
    assert!(ok, "{said}");
    // Nor the gateway's own.
    let (ok, _) = pub_with(
        mqtt,
        &[&mine[..], &["-i", "fm-gateway-alarms"]].concat(),
        own,
        &birth(3),
    )
    .await;
    assert!(!ok);
    assert!(denied(http, "reserved", 1).await >= 1);

    // Provisioning is a record, without its secrets.
    let records = crate::http::body(http, "/api/v1/records?limit=1000").await;
    assert!(records.contains("device_provisioned"), "{records}");
    assert!(!records.contains(&lift.password) && !records.contains(&pump.password));
    let listed = crate::http::body(http, "/api/v1/devices/credentials").await;
    assert!(listed.contains("lakeside/EL-1") && !listed.contains(&lift.password) && !listed.contains("argon2"));

    // Revoked: refused at once, and recorded.
    let (status, body) = crate::http::request(http, "DELETE", "/api/v1/devices/lakeside/EL-1", "").await;
    assert_eq!(status, 204, "{body}");
    let (ok, _) = pub_with(mqtt, &mine, own, &birth(4)).await;
    assert!(!ok, "a revoked device still connects");
    let (status, _) = crate::http::request(http, "DELETE", "/api/v1/devices/lakeside/EL-1", "").await;
    assert_eq!(status, 404);
    let records = crate::http::body(http, "/api/v1/records?limit=1000").await;
    assert!(records.contains("device_revoked"));
    // Rotating the pump: the old password stops working, the new one works.
    let rotated = provision(http, "lakeside", "firepump", "PUMP-1", r#","rotate":true"#).await;
    assert_ne!(rotated.password, pump.password);
    let (ok, _) = pub_with(
        mqtt,
        &pump_creds[..4],
        "fm/v1/lakeside/firepump/PUMP-1/birth",
        &birth(2),
    )
    .await;
    assert!(!ok);
    let new_creds = ["-u", rotated.username.as_str(), "-P", rotated.password.as_str()];
    let (ok, said) = pub_with(mqtt, &new_creds, "fm/v1/lakeside/firepump/PUMP-1/birth", &birth(3)).await;
    assert!(ok, "{said}");
    let verify = crate::http::body(http, "/api/v1/records/verify").await;
    assert!(verify.contains("\"ok\":true"), "{verify}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guesser_is_refused_without_a_check_after_ten_failures() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let (mqtt, http) = (cfg.mqtt.listen.port(), cfg.http.listen.port());
    let gw = crate::http::start(cfg).await;
    let lift = provision(http, "lakeside", "elevator", "EL-1", "").await;
    let own = "fm/v1/lakeside/elevator/EL-1/birth";
    for _ in 0..12 {
        let (ok, _) = pub_with(mqtt, &["-u", &lift.username, "-P", "guess"], own, &birth(1)).await;
        assert!(!ok);
    }
    assert!(denied(http, "rate_limited", 2).await >= 2);
    // From the same address, even the right password waits for the allowance to refill.
    let (ok, _) = pub_with(mqtt, &["-u", &lift.username, "-P", &lift.password], own, &birth(1)).await;
    assert!(!ok, "the limit is per address, before any check");
    gw.stop().await;
}

/// `openssl` in `dir`.
fn openssl(dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A self-signed client certificate `name.pem`/`name.key`; its SHA-256 (hex).
fn client_cert(dir: &std::path::Path, name: &str) -> String {
    let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &pem,
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    let fp = openssl(dir, &["x509", "-in", &pem, "-noout", "-fingerprint", "-sha256"]);
    fp.trim().rsplit('=').next().unwrap().replace(':', "").to_lowercase()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtts_with_a_password_or_a_pinned_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let tls = testkit::Tls::generate(dir.path());
    let mut cfg = config(dir.path());
    let tls_port = free_port();
    cfg.mqtt.tls_listen = Some(([127, 0, 0, 1], tls_port).into());
    cfg.mqtt.tls_cert_file = Some(tls.cert.clone());
    cfg.mqtt.tls_key_file = Some(tls.key.clone());
    let http = cfg.http.listen.port();
    let gw = crate::http::start(cfg).await;
    let good = client_cert(dir.path(), "bay");
    let _other = client_cert(dir.path(), "stranger");
    let bay = provision(
        http,
        "lakeside",
        "charger",
        "CH-1",
        &format!(r#","certificate_sha256":"{good}""#),
    )
    .await;
    let ca = tls.ca.to_str().unwrap();
    let topic = "fm/v1/lakeside/charger/CH-1/birth";
    // A password over TLS.
    let (ok, said) = pub_with(
        tls_port,
        &["--cafile", ca, "-u", &bay.username, "-P", &bay.password],
        topic,
        &birth(1),
    )
    .await;
    assert!(ok, "{said}");
    // The pinned certificate, no password.
    let cert = dir.path().join("bay.pem");
    let key = dir.path().join("bay.key");
    let (ok, said) = pub_with(
        tls_port,
        &[
            "--cafile",
            ca,
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
        topic,
        &birth(2),
    )
    .await;
    assert!(ok, "{said}");
    // A certificate nobody pinned.
    let (cert, key) = (dir.path().join("stranger.pem"), dir.path().join("stranger.key"));
    let (ok, _) = pub_with(
        tls_port,
        &[
            "--cafile",
            ca,
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
        topic,
        &birth(3),
    )
    .await;
    assert!(!ok);
    assert!(denied(http, "certificate", 1).await >= 1);
    // Plain MQTT to the TLS port: no session.
    let (ok, _) = pub_with(tls_port, &["-u", &bay.username, "-P", &bay.password], topic, &birth(4)).await;
    assert!(!ok);
    crate::http::wait_for(http, "/api/v1/devices", |b| b.contains("CH-1")).await;
    gw.stop().await;
}

#[test]
fn anonymous_beyond_loopback_must_be_written_out() {
    let parse = |text: &str| gateway::app::config::Config::parse(std::path::Path::new("gw.toml"), text);
    let open = parse("[mqtt]\nlisten = \"0.0.0.0:1883\"\nauth = \"none\"\n").unwrap_err();
    assert_eq!(open.field.as_deref(), Some("mqtt.auth"));
    assert_eq!(open.line, Some(3));
    assert!(open.message.contains("allow_anonymous"), "{open}");
    let meant = parse("[mqtt]\nlisten = \"0.0.0.0:1883\"\nauth = \"none\"\nallow_anonymous = true\n").unwrap();
    assert_eq!(meant.mqtt.effective_auth(), MqttAuth::None);
    // Unset: devices beyond loopback, none on it (the zero-setup demo).
    let lan = parse("[mqtt]\nlisten = \"0.0.0.0:1883\"\n").unwrap();
    assert_eq!(lan.mqtt.effective_auth(), MqttAuth::Devices);
    assert_eq!(Config::default().mqtt.effective_auth(), MqttAuth::None);
    let err = parse("[mqtt]\ntls_listen = \"127.0.0.1:8883\"\n").unwrap_err();
    assert_eq!(err.field.as_deref(), Some("mqtt.tls_cert_file"));
}

#[test]
fn the_offline_cli_provisions_lists_and_revokes_and_refuses_while_a_gateway_runs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let bin = env!("CARGO_BIN_EXE_gateway");
    let run = |args: &[&str]| {
        std::process::Command::new(bin)
            .args(args)
            .arg("--data-dir")
            .arg(&data)
            .output()
            .unwrap()
    };
    let add = run(&[
        "devices", "add", "--site", "lakeside", "--class", "firepump", "--device", "PUMP-1",
    ]);
    assert!(add.status.success(), "{}", String::from_utf8_lossy(&add.stderr));
    let v: serde_json::Value = serde_json::from_slice(&add.stdout).unwrap();
    let password = v["password"].as_str().unwrap().to_owned();
    assert_eq!(v["username"], "lakeside/PUMP-1");
    let again = run(&[
        "devices", "add", "--site", "lakeside", "--class", "firepump", "--device", "PUMP-1",
    ]);
    assert_eq!(again.status.code(), Some(2));
    let bad = run(&[
        "devices",
        "add",
        "--site",
        "Lake Side",
        "--class",
        "firepump",
        "--device",
        "P",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("`site`"));
    let list = run(&["devices", "list"]);
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(
        listed.contains("lakeside/PUMP-1") && !listed.contains(&password),
        "{listed}"
    );
    let revoke = run(&["devices", "revoke", "--site", "lakeside", "--device", "PUMP-1"]);
    assert!(revoke.status.success(), "{}", String::from_utf8_lossy(&revoke.stderr));
    let list = run(&["devices", "list"]);
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert!(v[0]["revoked"].is_i64(), "{v}");
    // Both changes are signed records, and the chain verifies.
    let verify = std::process::Command::new(bin)
        .args(["records", "verify", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "{out}");
    assert!(out.contains("\"count\": 2"), "{out}");
    // While something holds the data directory (a running gateway), writers refuse.
    let lock = gateway::store::DataDirLock::take(&data).unwrap();
    let busy = run(&[
        "devices", "add", "--site", "lakeside", "--class", "elevator", "--device", "EL-1",
    ]);
    assert_eq!(busy.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&busy.stderr).contains("a gateway is running"));
    drop(lock);
}

/// Behind an outside Mosquitto (docs/security.md): the nodes' listener with
/// a password file and the ACL `gateway devices mosquitto-acl` writes, client
/// ids forced to the user name; the gateway on a listener of its own. A
/// device writes only its own topics, reads only its own commands, and
/// cannot take the gateway's session by claiming its client id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outside_mosquitto_with_the_generated_acl_holds_devices_to_their_topics() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let bin = env!("CARGO_BIN_EXE_gateway");
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(bin)
            .args(args)
            .arg("--data-dir")
            .arg(&data)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let mut devices = Vec::new();
    for (class, device) in [("elevator", "EL-1"), ("firepump", "PUMP-1")] {
        let v: serde_json::Value = serde_json::from_str(&cli(&[
            "devices", "add", "--site", "lakeside", "--class", class, "--device", device,
        ]))
        .unwrap();
        devices.push((
            v["username"].as_str().unwrap().to_owned(),
            v["password"].as_str().unwrap().to_owned(),
        ));
    }
    let acl = dir.path().join("nodes.acl");
    std::fs::write(&acl, cli(&["devices", "mosquitto-acl"])).unwrap();
    let passwd = |file: &std::path::Path, user: &str, pw: &str| {
        let ok = std::process::Command::new("mosquitto_passwd")
            .args(["-b"])
            .arg(file)
            .args([user, pw])
            .status()
            .unwrap();
        assert!(ok.success());
    };
    let nodes_pw = dir.path().join("nodes.pw");
    std::fs::write(&nodes_pw, "").unwrap();
    for (u, p) in &devices {
        passwd(&nodes_pw, u, p);
    }
    let gw_pw = dir.path().join("gateway.pw");
    std::fs::write(&gw_pw, "").unwrap();
    passwd(&gw_pw, "fm-gateway", "gateway-secret-0123456789");
    let (nodes, gw_port) = (free_port(), free_port());
    let listeners = format!(
        "per_listener_settings true\n\
         listener {nodes} 127.0.0.1\nallow_anonymous false\npassword_file {}\nacl_file {}\nuse_username_as_clientid true\n\
         listener {gw_port} 127.0.0.1\nallow_anonymous false\npassword_file {}\n",
        nodes_pw.display(),
        acl.display(),
        gw_pw.display()
    );
    let broker = testkit::Mosquitto::start_with_listeners(dir.path(), nodes, &listeners);
    let mut cfg = Config::default();
    cfg.mqtt.broker = Some(gateway::app::config::BrokerConfig {
        host: "127.0.0.1".into(),
        port: gw_port,
        client_id: "fm-gateway".into(),
        username: Some("fm-gateway".into()),
        password: Some("gateway-secret-0123456789".into()),
        share_group: None,
        tls: false,
        ca_file: None,
        client_cert_file: None,
        client_key_file: None,
    });
    cfg.http.listen = ([127, 0, 0, 1], free_port()).into();
    cfg.storage.data_dir = data.clone();
    let http = cfg.http.listen.port();
    let gw = crate::http::start(cfg).await;
    crate::http::wait_for(http, "/readyz", |b| b.contains("true")).await;
    let (lift_u, lift_p) = &devices[0];
    let lift = ["-u", lift_u.as_str(), "-P", lift_p.as_str()];
    // Its own birth arrives (repeated until the gateway's session is subscribed).
    let mut seen = false;
    for _ in 0..100 {
        let (ok, said) = pub_with(nodes, &lift, "fm/v1/lakeside/elevator/EL-1/birth", &birth(1)).await;
        assert!(ok, "{said}\n{}", broker.log());
        if crate::http::body(http, "/api/v1/devices").await.contains("EL-1") {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen, "{}", broker.log());
    // The lift forging the pump's birth and a command: Mosquitto drops both.
    // Then a marker of its own, after them on the same broker: once it is
    // stored, the forgeries would have been too.
    pub_with(nodes, &lift, "fm/v1/lakeside/firepump/PUMP-1/birth", &birth(1)).await;
    let cmd = r#"{"v":1,"seq":1,"ts":1,"id":"x","op":"clear","args":{"port":1}}"#;
    pub_with(nodes, &lift, "fm/v1/lakeside/charger/CH-1/cmd", cmd).await;
    let data = r#"{"v":1,"seq":1,"ts":5,"bdseq":1,"m":{"floor":3}}"#;
    pub_with(nodes, &lift, "fm/v1/lakeside/elevator/EL-1/data", data).await;
    crate::http::wait_for(http, "/api/v1/series?device=EL-1&metric=floor&from=0&to=10", |b| {
        b.contains("\"ts\":5")
    })
    .await;
    let devices_now = crate::http::body(http, "/api/v1/devices").await;
    assert!(!devices_now.contains("PUMP-1"), "{devices_now}");
    // Claiming the gateway's client id on the nodes' listener: the id is
    // replaced by the user name, so the gateway's session stays; a later
    // message of the lift still arrives.
    let (ok, said) = pub_with(
        nodes,
        &[&lift[..], &["-i", "fm-gateway"]].concat(),
        "fm/v1/lakeside/elevator/EL-1/data",
        r#"{"v":1,"seq":2,"ts":6,"bdseq":1,"m":{"floor":4}}"#,
    )
    .await;
    assert!(ok, "{said}");
    let body = crate::http::wait_for(http, "/api/v1/series?device=EL-1&metric=floor&from=0&to=10", |b| {
        b.contains("\"ts\":6")
    })
    .await;
    assert!(body.contains("\"ts\":6"), "{body}");
    let m = crate::http::body(http, "/metrics").await;
    assert!(
        m.contains("fm_mqtt_disconnects_total 0"),
        "the gateway's session was taken over:\n{m}"
    );
    // Anonymous is refused on both listeners; the gateway's password is not a node's.
    assert!(!pub_with(nodes, &[], "fm/v1/lakeside/elevator/EL-1/data", data).await.0);
    assert!(
        !pub_with(gw_port, &lift, "fm/v1/lakeside/elevator/EL-1/data", data)
            .await
            .0
    );
    gw.stop().await;
}

#[test]
fn secrets_come_from_files_or_the_environment_and_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("broker.pw");
    std::fs::write(&secret, "s3cret-from-a-file\n").unwrap();
    let text = format!(
        "[mqtt.broker]\nhost = \"h\"\nusername = \"u\"\npassword_file = \"{}\"\n",
        secret.display()
    );
    let parse = |t: &str| gateway::app::config::Config::parse(std::path::Path::new("gw.toml"), t);
    let c = parse(&text).unwrap();
    assert_eq!(c.mqtt.broker.unwrap().password.as_deref(), Some("s3cret-from-a-file"));
    let missing =
        parse("[mqtt.broker]\nhost = \"h\"\nusername = \"u\"\npassword_file = \"/nonexistent/pw\"\n").unwrap_err();
    assert_eq!(missing.field.as_deref(), Some("mqtt.broker.password_file"));
    assert_eq!(missing.line, Some(4));
    assert!(missing.message.contains("/nonexistent/pw"), "{missing}");
    let both = parse(&format!(
        "[mqtt.broker]\nhost = \"h\"\nusername = \"u\"\npassword = \"x\"\npassword_file = \"{}\"\n",
        secret.display()
    ))
    .unwrap_err();
    assert!(both.message.contains("not both"), "{both}");
    // A key that is not a secret keeps its meaning: `host_env` is unknown.
    let unknown = parse("[mqtt.broker]\nhost = \"h\"\nhost_env = \"X\"\n").unwrap_err();
    assert!(unknown.message.contains("host_env"), "{unknown}");
    // From the environment (set for a child process: `set_var` is unsafe,
    // and the workspace forbids unsafe code), checked by `gateway check`.
    let file = dir.path().join("gw.toml");
    std::fs::write(
        &file,
        "[[http.tokens]]\nname = \"ops\"\nrole = \"engineer\"\ntoken_env = \"FM_TEST_OPS_TOKEN\"\n",
    )
    .unwrap();
    let check = |env: Option<&str>| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"));
        c.args(["check", "--config"]).arg(&file).env_remove("FM_TEST_OPS_TOKEN");
        if let Some(v) = env {
            c.env("FM_TEST_OPS_TOKEN", v);
        }
        c.output().unwrap()
    };
    let with = check(Some("token-from-the-environment"));
    assert!(with.status.success(), "{}", String::from_utf8_lossy(&with.stderr));
    let without = check(None);
    assert_eq!(without.status.code(), Some(2));
    let said = String::from_utf8_lossy(&without.stderr);
    assert!(
        said.contains("http.tokens[0].token_env") && said.contains("FM_TEST_OPS_TOKEN"),
        "{said}"
    );
}

#[test]
fn a_short_admin_token_is_refused_at_start() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["run", "--mqtt-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
        .env("GATEWAY_ADMIN_TOKEN", "admin")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("at least 16"), "{said}");
}
