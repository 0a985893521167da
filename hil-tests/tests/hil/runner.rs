//! The scenario runner itself: files are checked before anything runs, with
//! errors that name the file, line and field; the library covers every
//! canonical code and every link fault; a scenario whose expectation does
//! not hold fails, with what was measured, in the table, in the JUnit
//! report and in the exit code.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use hil_tests::bench::{ClockMode, RunOptions};
use hil_tests::scenario::{self, Expectation, Happening, LinkAction};
use protocol::{DeviceClass, EventCode};

fn library() -> Vec<PathBuf> {
    scenario::library(&Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")).unwrap()
}

fn problem(text: &str) -> String {
    scenario::parse(Path::new("lab/bad.toml"), text)
        .unwrap_err()
        .to_string()
}

const DEVICE: &str = "duration = \"1m\"\n[[device]]\nsite = \"s\"\nid = \"EL-1\"\nclass = \"elevator\"\n";
const EXPECT: &str = "[[expect]]\nno_alerts = true\n";

#[test]
fn a_bad_file_is_refused_with_its_file_line_and_field() {
    let cases = [
        (
            format!("{DEVICE}[[at]]\nt = \"5s\"\ndevice = \"EL-1\"\ndo = \"inject\"\nfault = \"meltdown\"\n{EXPECT}"),
            "lab/bad.toml:10: at[0].fault: `meltdown` is not a fault of an elevator: expected one of stuck_between_floors",
        ),
        (
            format!("{DEVICE}[[at]]\nt = \"5s\"\ndevice = \"EL-9\"\ndo = \"call\"\nfloor = 3\n{EXPECT}"),
            "lab/bad.toml:8: at[0].device: no device `EL-9` is declared",
        ),
        (
            format!("{DEVICE}[[at]]\nt = \"soon\"\ndevice = \"EL-1\"\ndo = \"call\"\nfloor = 3\n{EXPECT}"),
            "lab/bad.toml:7: at[0].t: `soon` is not a duration",
        ),
        (
            DEVICE.to_owned(),
            "lab/bad.toml: expect: a scenario needs at least one [[expect]]",
        ),
        (
            format!("{DEVICE}[[at]]\nt = \"5s\"\ndo = \"broker_restart\"\n{EXPECT}"),
            "lab/bad.toml:1: broker: `broker_restart` needs `broker = \"mosquitto\"`",
        ),
        (
            format!(
                "{DEVICE}[[expect]]\nalert = \"trapped\"\ndevice = \"EL-1\"\nafter = \"nowhere\"\nwithin = \"25s\"\n"
            ),
            "lab/bad.toml:9: expect[0].after: `nowhere` is neither a step's label nor a condition",
        ),
        (
            format!("{DEVICE}[[expect]]\nalert = \"trapped\"\ndevice = \"EL-1\"\nwithin = \"25s\"\ncolour = \"red\"\n"),
            "lab/bad.toml:10: expect[0]: unknown field `colour`",
        ),
        (
            format!("{DEVICE}link = \"modbus-rtu\"\n{EXPECT}"),
            "lab/bad.toml:2: device[0].bus: a `modbus-rtu` device names its `bus`",
        ),
        (
            format!("{DEVICE}node = \"sensor\"\nlink = \"modbus-tcp\"\n{EXPECT}"),
            "lab/bad.toml:6: device[0].node: a plain sensor reports over MQTT",
        ),
    ];
    for (text, want) in cases {
        let got = problem(&text);
        assert!(got.starts_with(want), "\n got: {got}\nwant: {want}…");
    }
}

/// The command steps and expectations of issue 16 are checked like the rest.
#[test]
fn a_bad_command_step_or_expectation_is_refused_with_its_line_and_field() {
    let api = "[[at]]\nt = \"5s\"\ndevice = \"EL-1\"\ndo = \"api_command\"\n";
    let cases = [
        (
            format!("{DEVICE}{api}op = \"reboot\"\nas = \"x\"\n{EXPECT}"),
            "lab/bad.toml:10: at[0].op: `reboot` is not an op (cut_off, clear, self_test, set_threshold, hold_doors)",
        ),
        (
            format!("{DEVICE}{api}op = \"hold_doors\"\nhold = true\n{EXPECT}"),
            "lab/bad.toml:6: at[0].as: an `api_command` has a name for expectations",
        ),
        (
            format!("{DEVICE}{api}op = \"cut_off\"\nas = \"x\"\nsign = \"forged\"\n{EXPECT}"),
            "lab/bad.toml:12: at[0]: unknown field `sign`",
        ),
        (
            format!("{DEVICE}[[expect]]\ncommand = \"cut-9\"\nstatus = \"acked\"\nwithin = \"2s\"\n"),
            "lab/bad.toml:7: expect[0].command: `cut-9` is neither an `api_command` step's name nor an op",
        ),
        (
            format!("{DEVICE}[[expect]]\ncommand = \"self_test\"\nstatus = \"acked\"\nwithin = \"2s\"\n"),
            "lab/bad.toml:6: expect[0].device: a command named by its op needs the `device` it was sent to",
        ),
        (
            format!(
                "{DEVICE}{api}op = \"hold_doors\"\nhold = true\nas = \"h\"\n[[expect]]\ncommand = \"h\"\nstatus = \"done\"\nwithin = \"2s\"\n"
            ),
            "lab/bad.toml:15: expect[0].status: `done` is not a command status (sent, acked, refused, expired)",
        ),
        (
            format!(
                "{DEVICE}{api}op = \"hold_doors\"\nhold = true\nas = \"h\"\n[[expect]]\ncommand = \"h\"\nstatus = \"acked\"\n"
            ),
            "lab/bad.toml:13: expect[0].within: say how long settling may take",
        ),
    ];
    for (text, want) in cases {
        let got = problem(&text);
        assert!(got.starts_with(want), "\n got: {got}\nwant: {want}…");
    }
}

#[test]
fn every_file_of_the_library_checks() {
    let files = library();
    assert!(files.len() >= 40, "{} scenarios", files.len());
    for f in files {
        scenario::load(&f).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn the_library_covers_every_canonical_code_offline_and_every_link_fault() {
    let mut codes = BTreeSet::new();
    let mut faults = BTreeSet::new();
    let mut normal_day = false;
    for f in library() {
        let s = scenario::load(&f).unwrap();
        for e in &s.expects {
            if let Expectation::Alert { code, .. } = &e.what {
                codes.insert(code.clone());
            }
        }
        for st in &s.steps {
            if let Happening::Link(a) = &st.what {
                faults.insert(match a {
                    LinkAction::Drop => "drop",
                    LinkAction::Delay { .. } => "delay",
                    LinkAction::Partition => "partition",
                    LinkAction::Mute => "slave timeout",
                    LinkAction::Restore => "restore",
                    LinkAction::Skew { .. } => "clock skew",
                    LinkAction::BrokerRestart => "broker restart",
                });
            }
        }
        normal_day |= s.duration.as_secs() >= 86_400
            && s.expects
                .iter()
                .any(|e| matches!(&e.what, Expectation::NoAlerts { devices, except } if devices.is_empty() && except.is_empty()));
    }
    let canonical: Vec<&str> = [DeviceClass::Elevator, DeviceClass::Firepump, DeviceClass::Charger]
        .into_iter()
        .flat_map(EventCode::of_class)
        // Alerts are held states; one-shot events (the self-test report) are records.
        .filter(|c| c.is_state())
        .map(EventCode::as_str)
        .chain(["offline"])
        .collect();
    let missing: Vec<&&str> = canonical.iter().filter(|c| !codes.contains(**c)).collect();
    assert!(missing.is_empty(), "no scenario expects {missing:?}");
    for f in [
        "drop",
        "delay",
        "partition",
        "broker restart",
        "slave timeout",
        "clock skew",
    ] {
        assert!(faults.contains(f), "no scenario injects {f}");
    }
    assert!(normal_day, "no day-long scenario expects no alert at all");
}

/// A scenario that cannot pass: the trapped passenger raised within 5 s.
const IMPOSSIBLE: &str = r#"
name = "impossible"
duration = "1m"
[[device]]
site = "lakeside"
id = "EL-3"
class = "elevator"
[[at]]
t = "1s"
device = "EL-3"
do = "call"
floor = 1
[[at]]
t = "4500ms"
device = "EL-3"
do = "board"
people = 2
[[at]]
t = "5s"
device = "EL-3"
do = "call"
floor = 9
[[at]]
t = "14s"
device = "EL-3"
do = "inject"
fault = "stuck_between_floors"
label = "stuck"
[[expect]]
alert = "trapped"
device = "EL-3"
after = "stuck"
within = "5s"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expectation_that_does_not_hold_fails_with_what_was_measured() {
    let s = scenario::parse(Path::new("impossible.toml"), IMPOSSIBLE).unwrap();
    let r = hil_tests::run(&s, &RunOptions::default()).await;
    assert!(!r.passed());
    let o = &r.outcomes[0];
    assert!(!o.passed);
    let took = o.measured.expect("trapped was raised, later");
    assert!(took.as_secs() >= 20 && took.as_secs() <= 25, "{took:?}");
    assert_eq!(o.detail, format!("took {}", humantime::format_duration(took)));
    // The run itself was sound.
    assert!(r.outcomes[1].passed, "{:?}", r.outcomes[1]);
    assert!(hil_tests::report::table(&[r], false).contains("FAIL impossible"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_scenario_measures_the_same_in_virtual_time() {
    let s = scenario::parse(Path::new("impossible.toml"), IMPOSSIBLE).unwrap();
    let options = RunOptions {
        clock: ClockMode::Virtual,
        ..RunOptions::default()
    };
    let a = hil_tests::run(&s, &options).await;
    let b = hil_tests::run(&s, &options).await;
    assert_eq!(a.outcomes[0].measured, b.outcomes[0].measured);
}

#[test]
fn the_runner_exits_non_zero_and_writes_the_failure_into_junit() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("impossible.toml");
    std::fs::write(&file, IMPOSSIBLE).unwrap();
    let ok = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/elevator-alarm-button.toml");
    let junit = dir.path().join("hil.xml");
    let out = Command::new(env!("CARGO_BIN_EXE_hil"))
        .args(["run", "--plain", "--junit"])
        .arg(&junit)
        .arg(&ok)
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("PASS elevator-alarm-button"), "{table}");
    assert!(table.contains("FAIL impossible"), "{table}");
    assert!(table.contains("2 scenarios, 1 failed"), "{table}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains(r#"<testsuite name="impossible" tests="2""#), "{xml}");
    assert!(xml.contains(r#"failures="1""#), "{xml}");
    assert!(xml.contains("<failure message=\"took "), "{xml}");
    assert!(xml.contains(r#"<property name="allowed_ms" value="5000"/>"#), "{xml}");

    // A file that does not check: exit 2, nothing run.
    std::fs::write(&file, "duration = \"1m\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hil"))
        .args(["run", "--plain"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("impossible.toml: device: a scenario needs at least one [[device]]")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scenario_runs_in_wall_time_for_a_lab_watching() {
    // Six seconds of a charging bay in wall time, on the gateway's own clock
    // and ticker: smoke at 3 s is cut on the node and raised at once.
    let text = r#"
duration = "6s"
[[device]]
site = "lab"
id = "BAY-1"
class = "charger"
ports = 2
[[at]]
t = "500ms"
device = "BAY-1"
do = "plug"
port = 1
[[at]]
t = "3s"
device = "BAY-1"
do = "inject"
fault = "smoke"
label = "smoke"
[[expect]]
cut = "all"
device = "BAY-1"
after = "smoke"
within = "160ms"
[[expect]]
alert = "smoke"
device = "BAY-1"
after = "smoke"
within = "2s"
"#;
    let s = scenario::parse(Path::new("wall.toml"), text).unwrap();
    let started = std::time::Instant::now();
    let r = hil_tests::run(
        &s,
        &RunOptions {
            clock: ClockMode::Real,
            ..RunOptions::default()
        },
    )
    .await;
    assert!(
        started.elapsed().as_secs_f64() >= 6.0,
        "wall time: {:?}",
        started.elapsed()
    );
    assert_eq!(r.clock, "real");
    assert!(
        r.passed(),
        "{}",
        hil_tests::report::table(std::slice::from_ref(&r), false)
    );
}

#[test]
fn what_the_scenario_adds_to_the_gateway_is_checked_by_the_gateway_at_its_line() {
    let text = format!("gateway = '''\n[[contacts]]\nid = \"acme\"\ncolour = \"red\"\n'''\n{DEVICE}{EXPECT}");
    let got = problem(&text);
    assert!(
        got.starts_with("lab/bad.toml:4: gateway.contacts.colour: unknown field `colour`"),
        "{got}"
    );
}
