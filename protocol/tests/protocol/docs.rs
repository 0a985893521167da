//! `docs/protocol.md` is tested: its golden examples decode to the values below,
//! its `mosquitto_pub` lines work against a real broker, and its tables are the
//! ones the code prints. Run with `FM_BLESS_DOCS=1` to rewrite the generated
//! tables after changing the code.

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use protocol::metric::Unit;
use protocol::modbus::map_for;
use protocol::{
    Ack, Birth, Cmd, CmdArgs, Data, Death, Detail, DeviceClass, Event, EventCode, Message, Metric, MetricInfo, Named,
    Op, PortMetric, PortReadings, Readings, Timestamp, Topic, V1, decode,
};

fn doc_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/protocol.md")
}

fn doc() -> String {
    std::fs::read_to_string(doc_path()).expect("docs/protocol.md")
}

const TS: Timestamp = Timestamp::from_millis(1_763_798_400_000);

/// The command key of the signed examples in docs/protocol.md (bytes 0x00 to
/// 0x1f), and what the golden `cmd` carries.
pub(crate) const GOLDEN_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
pub(crate) const GOLDEN_CTR: u64 = 1042;
pub(crate) const GOLDEN_EXP: Timestamp = Timestamp::from_millis(1_763_798_430_000);
pub(crate) const GOLDEN_MAC: &str = "cbcb9a4bae794d98b1b0c167dc463951cfb545b375be44309b23e8bd9d746544";

/// The values the golden examples in the docs must decode to.
pub(crate) fn golden_message(name: &str) -> Message {
    match name {
        "elevator-birth" => Message::Birth(Birth {
            v: V1,
            seq: 0,
            ts: TS,
            hist: false,
            bdseq: 12,
            fw: "1.4.2".try_into().unwrap(),
            model: "FM-EL-200".try_into().unwrap(),
            cfg: "9f2c1a7e".try_into().unwrap(),
            interval_s: 10,
            rated_speed_mps: Some(1.75),
            floors: Some(18),
            ports: None,
        }),
        "elevator-data" => {
            let mut m = Readings::new();
            m.set(Metric::Running, true).unwrap();
            m.set(Metric::Direction, 1u32).unwrap();
            m.set(Metric::Floor, 7).unwrap();
            m.set(Metric::DoorZone, false).unwrap();
            m.set(Metric::DoorClosed, true).unwrap();
            m.set(Metric::Occupied, true).unwrap();
            m.set(Metric::ServiceMode, 1u32).unwrap();
            m.set(Metric::SpeedMps, 1.02).unwrap();
            m.set(Metric::LoadPct, 35.0).unwrap();
            m.set(Metric::PowerOk, true).unwrap();
            Message::Data(Data {
                v: V1,
                seq: 42,
                ts: TS,
                hist: false,
                bdseq: Some(12),
                m,
                ports: protocol::Bounded::new(),
            })
        }
        "elevator-event" => Message::Event(Event {
            v: V1,
            seq: 43,
            ts: TS.saturating_add(Duration::from_secs(20)),
            hist: false,
            bdseq: Some(12),
            code: Named::Known(EventCode::Trapped),
            active: true,
            detail: {
                let mut d = Detail::new();
                d.set("floor", 7).unwrap();
                d.set("door_zone", false).unwrap();
                d
            },
        }),
        "death" => Message::Death(Death { v: V1, bdseq: 12 }),
        "firepump-data" => {
            let mut m = Readings::new();
            m.set(Metric::PumpRunning, false).unwrap();
            m.set(Metric::StartSignal, false).unwrap();
            m.set(Metric::AutoMode, true).unwrap();
            m.set(Metric::OutletPressureMpa, 0.62).unwrap();
            m.set(Metric::NetworkPressureMpa, 0.28).unwrap();
            m.set(Metric::TankLevelM, 3.4).unwrap();
            m.set(Metric::MainPowerOk, true).unwrap();
            m.set(Metric::BackupPowerOk, true).unwrap();
            Message::Data(Data {
                v: V1,
                seq: 311,
                ts: TS,
                hist: true,
                bdseq: Some(5),
                m,
                ports: protocol::Bounded::new(),
            })
        }
        "charger-data" => {
            let mut m = Readings::new();
            m.set(Metric::Smoke, false).unwrap();
            m.set(Metric::AmbientTempC, 24.5).unwrap();
            m.set(Metric::MainsVoltageV, 228.0).unwrap();
            m.set(Metric::LeakageMa, 3.0).unwrap();
            let mut p1 = PortReadings::new(1);
            p1.readings.set(PortMetric::State, 1u32).unwrap();
            p1.readings.set(PortMetric::PowerW, 182.5).unwrap();
            p1.readings.set(PortMetric::CurrentA, 0.83).unwrap();
            p1.readings.set(PortMetric::TempC, 38.0).unwrap();
            p1.readings.set(PortMetric::EnergyWh, 240.0).unwrap();
            p1.readings.set(PortMetric::SessionS, 5400u32).unwrap();
            let mut p4 = PortReadings::new(4);
            p4.readings.set(PortMetric::State, 4u32).unwrap();
            p4.readings.set(PortMetric::PowerW, 0.0).unwrap();
            p4.readings.set(PortMetric::TempC, 67.5).unwrap();
            let ports = protocol::Bounded::from_slice(&[p1, p4]).unwrap();
            Message::Data(Data {
                v: V1,
                seq: 9001,
                ts: TS,
                hist: false,
                bdseq: None,
                m,
                ports,
            })
        }
        "charger-event" => Message::Event(Event {
            v: V1,
            seq: 9002,
            ts: TS,
            hist: false,
            bdseq: None,
            code: Named::Known(EventCode::OverTemperature),
            active: true,
            detail: {
                let mut d = Detail::new();
                d.set("port", 4u8).unwrap();
                d.set("temp_c", 67.5).unwrap();
                d.set("cut_off", true).unwrap();
                d
            },
        }),
        "charger-cmd" => Message::Cmd(Cmd {
            v: V1,
            seq: 17,
            ts: TS,
            hist: false,
            bdseq: None,
            id: "wo-2211-clear-4".try_into().unwrap(),
            op: Named::Known(Op::Clear),
            args: CmdArgs {
                port: Some(4),
                name: None,
                value: None,
                hold: None,
            },
            ctr: Some(GOLDEN_CTR),
            exp: Some(GOLDEN_EXP),
            mac: Some(protocol::cmdauth::Mac::from_hex(GOLDEN_MAC).unwrap()),
        }),
        "charger-ack" => Message::Ack(Ack {
            v: V1,
            seq: 9003,
            ts: TS,
            hist: false,
            bdseq: None,
            id: "wo-2211-clear-4".try_into().unwrap(),
            ok: false,
            error: Some("port 4 still above 60 C".try_into().unwrap()),
        }),
        other => panic!("no golden message {other}"),
    }
}

const GOLDEN: &[&str] = &[
    "elevator-birth",
    "death",
    "elevator-data",
    "firepump-data",
    "charger-data",
    "elevator-event",
    "charger-event",
    "charger-cmd",
    "charger-ack",
];

/// `(name, topic, json)` for every `<!-- golden: NAME TOPIC -->` block.
fn golden_blocks(doc: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        let Some(rest) = line.trim().strip_prefix("<!-- golden:") else {
            continue;
        };
        let mut parts = rest.trim_end_matches("-->").split_whitespace();
        let (name, topic) = (parts.next().unwrap().to_owned(), parts.next().unwrap().to_owned());
        assert_eq!(
            lines.next().map(str::trim),
            Some("```json"),
            "golden {name}: a ```json block must follow"
        );
        let json: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
        out.push((name, topic, json.join("\n")));
    }
    out
}

#[test]
fn golden_examples_decode_to_the_expected_values() {
    let doc = doc();
    let blocks = golden_blocks(&doc);
    let names: Vec<&str> = blocks.iter().map(|b| b.0.as_str()).collect();
    assert_eq!(
        names, GOLDEN,
        "every golden message is shown in docs/protocol.md, once, in this order"
    );
    for (name, topic, json) in &blocks {
        let topic = Topic::parse(topic).unwrap_or_else(|e| panic!("{name}: {e}"));
        let msg = decode(topic.kind, json.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(msg, golden_message(name), "{name}");
        if let Message::Data(d) = &msg {
            for r in d.m.iter() {
                let m = r.name.known().unwrap();
                assert!(
                    m.class().is_none_or(|c| c == topic.class),
                    "{name}: {m} is not a {} metric",
                    topic.class
                );
            }
        }
    }
}

/// `(topic, payload)` of every `mosquitto_pub` line.
fn mosquitto_lines(doc: &str) -> Vec<(String, String, String)> {
    doc.lines()
        .filter(|l| l.starts_with("mosquitto_pub "))
        .map(|l| {
            let quoted = |flag: &str| {
                let start = l.find(&format!("{flag} '")).unwrap_or_else(|| panic!("{flag} in {l}")) + flag.len() + 2;
                let end = l[start..].find('\'').unwrap() + start;
                l[start..end].to_owned()
            };
            (l.to_owned(), quoted("-t"), quoted("-m"))
        })
        .collect()
}

#[test]
fn mosquitto_pub_lines_carry_valid_topics_and_payloads() {
    let lines = mosquitto_lines(&doc());
    assert!(lines.len() >= 6, "docs show a line per message kind");
    for (line, topic, payload) in &lines {
        let t = Topic::parse(topic).unwrap_or_else(|e| panic!("{line}: {e}"));
        decode(t.kind, payload.as_bytes()).unwrap_or_else(|e| panic!("{line}: {e}"));
        let qos = u8::from(line.contains(" -q 1 "));
        assert!(
            qos >= t.kind.min_qos(),
            "{line}: {} needs QoS {}",
            t.kind,
            t.kind.min_qos()
        );
    }
}

/// Sends every documented `mosquitto_pub` line through a real Mosquitto and
/// checks what a subscriber receives. The test command installs Mosquitto;
/// `FM_SKIP_BROKER_TESTS=1` skips this on a machine without it.
#[test]
fn mosquitto_pub_lines_work_against_a_real_broker() {
    if std::env::var_os("FM_SKIP_BROKER_TESTS").is_some() {
        eprintln!("skipped: FM_SKIP_BROKER_TESTS is set");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let broker = testkit::Mosquitto::start(dir.path());
    let port = broker.port;
    let lines = mosquitto_lines(&doc());
    // `-d` prints the SUBACK, so publishing starts only once the subscription is live.
    // stdbuf: mosquitto_sub block-buffers a pipe, which would hide the SUBACK.
    let mut sub = Command::new("stdbuf")
        .args(["-oL", "mosquitto_sub"])
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-q",
            "1",
            "-v",
            "-d",
            "-t",
            "fm/v1/+/+/+/+",
        ])
        .args(["-C", &lines.len().to_string(), "-W", "20"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub");
    let mut out = BufReader::new(sub.stdout.take().unwrap()).lines().map(Result::unwrap);
    assert!(
        out.by_ref().any(|l| l.contains("SUBACK")),
        "no SUBACK from mosquitto_sub"
    );
    let out = out.filter(|l| l.starts_with("fm/v1/"));
    for (line, _, _) in &lines {
        let cmd = line.replace("-p 1883", &format!("-p {port}"));
        let ok = Command::new("sh").arg("-c").arg(&cmd).status().unwrap().success();
        assert!(ok, "failed: {cmd}");
    }
    // Separate publisher processes: compare what arrived, not the order it arrived in.
    let mut got: Vec<(String, String)> = out
        .take(lines.len())
        .map(|l| {
            let (t, p) = l.split_once(' ').unwrap_or_else(|| panic!("subscriber printed {l:?}"));
            (t.to_owned(), p.to_owned())
        })
        .collect();
    let mut sent: Vec<(String, String)> = lines.iter().map(|(_, t, p)| (t.clone(), p.clone())).collect();
    got.sort();
    sent.sort();
    assert_eq!(got, sent, "the broker delivered every documented message unchanged");
    let _ = sub.wait();
}

fn metrics_table() -> String {
    let mut s = String::from("| metric | class | value | unit | binary id |\n|---|---|---|---|---|\n");
    let unit = |u: Unit| if u.symbol().is_empty() { "—" } else { u.symbol() };
    for m in Metric::ALL {
        writeln!(
            s,
            "| `{m}` | {} | {} | {} | {} |",
            m.class().map_or("any", DeviceClass::as_str),
            m.kind(),
            unit(m.unit()),
            m.id()
        )
        .unwrap();
    }
    for m in PortMetric::ALL {
        writeln!(
            s,
            "| `ports[].{m}` | charger | {} | {} | {} |",
            m.kind(),
            unit(m.unit()),
            m.id()
        )
        .unwrap();
    }
    s
}

fn codes_table() -> String {
    let mut s =
        String::from("| code | class | severity | GB/T 24476 | 中文 | binary id |\n|---|---|---|---|---|---|\n");
    for c in EventCode::ALL {
        let class = c.class().map_or("any", DeviceClass::as_str);
        let gbt = c.gbt24476().map_or_else(|| "—".to_owned(), |n| format!("{n:02}"));
        writeln!(
            s,
            "| `{c}` | {class} | {} | {gbt} | {} | {} |",
            c.severity(),
            c.label_zh(),
            c.id()
        )
        .unwrap();
    }
    s
}

fn modbus_table(class: DeviceClass) -> String {
    let mut s = String::new();
    map_for(class).write_markdown(&mut s).unwrap();
    s
}

/// Replaces the text between `<!-- BEGIN name -->` and `<!-- END name -->`.
fn with_region(doc: &str, name: &str, body: &str) -> String {
    let begin = format!("<!-- BEGIN {name} -->\n");
    let end = format!("<!-- END {name} -->");
    let b = doc
        .find(&begin)
        .unwrap_or_else(|| panic!("docs/protocol.md lacks {begin}"))
        + begin.len();
    let e = doc[b..]
        .find(&end)
        .unwrap_or_else(|| panic!("docs/protocol.md lacks {end}"))
        + b;
    format!("{}{body}{}", &doc[..b], &doc[e..])
}

#[test]
fn generated_tables_match_the_code() {
    let doc = doc();
    let mut expected = doc.clone();
    expected = with_region(&expected, "metrics", &metrics_table());
    expected = with_region(&expected, "codes", &codes_table());
    for class in DeviceClass::ALL {
        expected = with_region(&expected, &format!("modbus-{class}"), &modbus_table(*class));
    }
    if expected != doc {
        if std::env::var_os("FM_BLESS_DOCS").is_some() {
            std::fs::write(doc_path(), &expected).unwrap();
            return;
        }
        let first = doc.lines().zip(expected.lines()).position(|(a, b)| a != b).unwrap_or(0);
        panic!(
            "docs/protocol.md tables differ from the code at line {}; rerun with FM_BLESS_DOCS=1\n  doc : {:?}\n  code: {:?}",
            first + 1,
            doc.lines().nth(first),
            expected.lines().nth(first)
        );
    }
}

#[test]
fn every_code_and_metric_is_documented() {
    let doc = doc();
    for c in EventCode::ALL {
        assert!(doc.contains(&format!("`{c}`")), "{c}");
    }
    for m in Metric::ALL {
        assert!(doc.contains(&format!("`{m}`")), "{m}");
        let _ = m.kind();
    }
}
