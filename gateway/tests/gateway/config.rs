//! `gateway check`: errors name the file, line, column and field.

use std::path::Path;

use gateway::app::config::Config;

fn err(text: &str) -> String {
    Config::parse(Path::new("site.toml"), text).unwrap_err().to_string()
}

#[test]
fn an_empty_file_is_the_embedded_default() {
    let mut c = Config::parse(Path::new("empty.toml"), "").unwrap();
    // The text is kept, for the record of configuration changes.
    assert_eq!(
        c.source.take(),
        Some((Path::new("empty.toml").to_owned(), String::new()))
    );
    assert_eq!(c, Config::default());
    assert_eq!(c.mqtt.listen.to_string(), "127.0.0.1:1883");
    assert!(c.mqtt.broker.is_none());
}

#[test]
fn a_full_file_parses() {
    let c = Config::parse(
        Path::new("site.toml"),
        r#"
[mqtt]
listen = "0.0.0.0:1883"
[mqtt.broker]
host = "broker.local"
port = 8883
client_id = "gw-1"
username = "gw"
password = "secret"
share_group = "gateways"
[http]
listen = "127.0.0.1:9090"
[storage]
data_dir = "/var/lib/fm"
retention_days = 30
"#,
    )
    .unwrap();
    let b = c.mqtt.broker.unwrap();
    assert_eq!(
        (b.host.as_str(), b.port, b.share_group.as_deref()),
        ("broker.local", 8883, Some("gateways"))
    );
    assert_eq!(c.storage.retention_days, 30);
}

#[test]
fn type_errors_name_line_column_and_field() {
    let e = err("[http]\nlisten = \"not an address\"\n");
    assert!(e.starts_with("site.toml:2:10: field `http.listen`: "), "{e}");
    assert!(e.contains("invalid socket address"), "{e}");

    let e = err("[storage]\nretention_days = -3\n");
    assert!(e.starts_with("site.toml:2:"), "{e}");
    assert!(e.contains("storage.retention_days"), "{e}");
}

#[test]
fn unknown_fields_are_refused_with_their_place() {
    let e = err("[mqtt]\nlisen = \"127.0.0.1:1\"\n");
    assert!(
        e.starts_with("site.toml:2:1: field `mqtt.lisen`: unknown field `lisen`"),
        "{e}"
    );
    let e = err("[nosuch]\n");
    assert!(e.contains("unknown field `nosuch`"), "{e}");
}

#[test]
fn rules_across_fields_name_the_field_and_its_line() {
    let e = err("[storage]\ndata_dir = \"d\"\nretention_days = 0\n");
    assert_eq!(
        e,
        "site.toml:3:1: field `storage.retention_days`: must be at least 1 day"
    );
    let e = err("[mqtt.broker]\nhost = \"b\"\npassword = \"x\"\n");
    assert_eq!(e, "site.toml:3:1: field `mqtt.broker.password`: needs `username` too");
    let e = err("[mqtt.broker]\nhost = \"b\"\nshare_group = \"a/b\"\n");
    assert!(e.contains("mqtt.broker.share_group"), "{e}");
}

#[test]
fn a_missing_file_is_named() {
    let e = Config::load(Path::new("/nonexistent/fm.toml")).unwrap_err().to_string();
    assert!(e.starts_with("/nonexistent/fm.toml: cannot read"), "{e}");
}

#[test]
fn the_check_command_exits_2_naming_the_problem_and_0_when_fine() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[http]\nlisten = \"nowhere\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.toml:2:10: field `http.listen`: invalid socket address syntax"),
        "{stderr}"
    );

    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[storage]\nretention_days = 30\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["check", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn tls_settings_are_checked_with_their_files() {
    let e = err("[mqtt.broker]\nhost = \"b\"\ntls = true\n");
    assert!(
        e.contains("field `mqtt.broker.ca_file`: is required with `tls = true`"),
        "{e}"
    );
    let e = err("[mqtt.broker]\nhost = \"b\"\ntls = true\nca_file = \"/nonexistent/ca.pem\"\n");
    assert!(
        e.starts_with("site.toml:4:1: field `mqtt.broker.ca_file`: /nonexistent/ca.pem:"),
        "{e}"
    );
    let e = err("[mqtt.broker]\nhost = \"b\"\nclient_cert_file = \"/etc/hostname\"\n");
    assert!(e.contains("give both `client_cert_file` and `client_key_file`"), "{e}");
}

#[test]
fn alerting_mistakes_name_their_line_and_field() {
    let text = r#"
[alerting]
group_wait = "30s"

[[alerting.overrides]]
class = "firepump"
params = { low_pressure_mpa = 0.10 }

[[alerting.overrides]]
site = "lakeside"
params = { trapped_outside_zone = 20 }
"#;
    let e = err(text);
    assert_eq!(
        e,
        "site.toml:11:1: field `alerting.overrides[1].params.trapped_outside_zone`: `trapped_outside_zone` takes a duration such as \"20s\""
    );
    let e = err(
        "[[alerting.rules]]\nid = \"lakeside.hot\"\nclass = \"charger\"\ncode = \"over_temperature\"\nscope = \"port\"\nwhen = \"temp_c >= \"\n",
    );
    assert!(
        e.starts_with("site.toml:6:1: field `alerting.rules[0].when`: rule `lakeside.hot`, field `when`"),
        "{e}"
    );
    assert!(e.contains("the condition ends too early"), "{e}");
    let e = err("[alerting]\nflap_starts = 1\n");
    assert_eq!(e, "site.toml:2:1: field `alerting.flap_starts`: must be 2 to 20");
    // A valid alerting section passes.
    Config::parse(Path::new("site.toml"), &text.replace("20 }", "\"25s\" }")).unwrap();
}

#[test]
fn dispatch_contacts_and_tokens_mistakes_name_their_line_and_field() {
    let people = "[[contacts]]\nid = \"acme\"\nmqtt = true\n";
    // A deadline that is not a duration.
    let e = err(&format!(
        "{people}[dispatch]\n[[dispatch.sla]]\nclass = \"elevator\"\nrespond = \"soon\"\n"
    ));
    assert!(
        e.starts_with("site.toml:7:1: field `dispatch.sla[0].respond`: `soon` is not a duration"),
        "{e}"
    );
    // An assignment naming somebody who is not a contact.
    let e = err(&format!(
        "{people}[[dispatch.assign]]\nsite = \"lakeside\"\ncontractor = \"acme\"\nbackup = \"nobody\"\n"
    ));
    assert_eq!(
        e,
        "site.toml:7:1: field `dispatch.assign[0].backup`: `nobody` is not one of the [[contacts]]"
    );
    // A site named twice, a site id that is no topic level, a name left empty.
    let site = "[[sites]]\nid = \"lakeside\"\nname = \"湖畔花园\"\n";
    let e = err(&format!("{site}{site}"));
    assert_eq!(e, "site.toml:5:1: field `sites[1].id`: `lakeside` is configured twice");
    let e = err("[[sites]]\nid = \"lake side\"\nname = \"湖畔花园\"\n");
    assert!(e.starts_with("site.toml:2:1: field `sites[0].id`:"), "{e}");
    let e = err("[[sites]]\nid = \"lakeside\"\nname = \" \"\n");
    assert_eq!(e, "site.toml:3:1: field `sites[0].name`: must not be empty");
    // A contact twice; an e-mail with no SMTP server.
    let e = err(&format!("{people}{people}"));
    assert_eq!(e, "site.toml:5:1: field `contacts[1].id`: `acme` is configured twice");
    let e = err("[[contacts]]\nid = \"pm\"\nemail = \"pm@example.com\"\n");
    assert!(
        e.contains("field `contacts[0].email`: e-mail needs [notify.smtp]"),
        "{e}"
    );
    // Tokens: too short, and a contractor token without its contractor.
    let e = err("[[http.tokens]]\nname = \"x\"\ntoken = \"short\"\nrole = \"auditor\"\n");
    assert_eq!(
        e,
        "site.toml:3:1: field `http.tokens[0].token`: must be at least 16 characters"
    );
    let e = err("[[http.tokens]]\nname = \"x\"\ntoken = \"0123456789abcdef\"\nrole = \"contractor\"\n");
    assert!(e.contains("field `http.tokens[0].contractor`"), "{e}");
    let e = err("[[http.tokens]]\nname = \"x\"\ntoken = \"0123456789abcdef\"\nrole = \"boss\"\n");
    assert!(e.starts_with("site.toml:4:"), "{e}");
    assert!(e.contains("unknown variant `boss`"), "{e}");
    // A token given by its SHA-256: malformed, both forms at once, neither,
    // and the same token twice in different forms.
    let e = err("[[http.tokens]]\nname = \"x\"\ntoken_sha256 = \"abc\"\nrole = \"auditor\"\n");
    assert!(
        e.contains("field `http.tokens[0].token_sha256`: must be 64 hex digits"),
        "{e}"
    );
    let sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"; // sha256("test")
    let e = err(&format!(
        "[[http.tokens]]\nname = \"x\"\ntoken = \"0123456789abcdef\"\ntoken_sha256 = \"{sha}\"\nrole = \"auditor\"\n"
    ));
    assert!(e.contains("give `token` or `token_sha256`, one of them"), "{e}");
    let e = err("[[http.tokens]]\nname = \"x\"\nrole = \"auditor\"\n");
    assert!(e.contains("give `token` or `token_sha256`, one of them"), "{e}");
    let plain = "0123456789abcdef";
    let same = format!(
        "[[http.tokens]]\nname = \"x\"\ntoken = \"{plain}\"\nrole = \"auditor\"\n[[http.tokens]]\nname = \"y\"\ntoken_sha256 = \"{}\"\nrole = \"auditor\"\n",
        sha256_hex(plain)
    );
    assert!(err(&same).contains("is the same as another token's"));
    // Notification and record settings.
    let e = err("[notify]\nfirst_retry = \"0s\"\n");
    assert_eq!(e, "site.toml:2:1: field `notify.first_retry`: must be longer than zero");
    let e = err("[records]\ncheckpoint_records = 0\n");
    assert_eq!(
        e,
        "site.toml:2:1: field `records.checkpoint_records`: must be at least 1"
    );
    // And a whole valid section passes.
    Config::parse(
        Path::new("site.toml"),
        &format!(
            "{people}[[http.tokens]]\nname = \"acme-app\"\ntoken = \"0123456789abcdef\"\nrole = \"contractor\"\ncontractor = \"acme\"\n[[dispatch.assign]]\ncontractor = \"acme\"\n[[dispatch.sla]]\nclass = \"charger\"\ncodes = [\"smoke\"]\narrive = \"8m\"\n"
        ),
    )
    .unwrap();
}

/// SHA-256 as hex, as `sha256sum` prints it (through the gateway's own function).
fn sha256_hex(text: &str) -> String {
    hex::encode(gateway::api::auth::digest(text))
}
