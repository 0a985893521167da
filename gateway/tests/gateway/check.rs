//! `gateway check` reports every problem of a file, each with its line and
//! field, not only the first.

use std::process::Command;

/// A file with many independent problems, each on a line of its own: the
/// number after `#` is the line.
const MANY: &str = r#"[mqtt]
listen = "127.0.0.1:1883"
bogus = 1                          # 3: unknown key
[http]
max_body_bytes = 10                # 5: out of range
header_timeout = "soon"            # 6: not a duration
listen = 8080                      # 7: wrong type
[storage]
retention_days = 0                 # 9: cross-field rule
[[contacts]]
id = "a b"                         # 11: bad id
[alerting]
flap_starts = 50                   # 13: out of range
[[alerting.overrides]]
site = "lakeside"
disable = ["no.such_rule"]         # 16: a rule that does not exist
[[alerting.overrides]]
site = "lakeside"
params = { no_such_param = 1 }     # 19: a parameter no rule has
[[dispatch.duties]]
class = "firepump"
duty = ""                          # 22: empty
every = "30d"
[records]
checkpoint_records = 0             # 25
"#;

fn gateway_check(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let said = String::from_utf8(out.stderr)
        .unwrap()
        .replace(path.to_str().unwrap(), "FILE");
    (out.status.code().unwrap(), said)
}

/// Every problem: one line each, naming file, line and field, in line order.
#[test]
fn every_problem_of_a_file_is_reported_with_its_line() {
    let (code, said) = gateway_check(MANY);
    assert_eq!(code, 2, "{said}");
    let lines: Vec<&str> = said.lines().filter(|l| l.starts_with("error: ")).collect();
    let expected = [
        (3, "mqtt.bogus", "unknown field"),
        (5, "http.max_body_bytes", "outside 1024"),
        (6, "http.header_timeout", "not a duration"),
        (7, "http.listen", "invalid type"),
        (9, "storage.retention_days", "at least 1 day"),
        (11, "contacts[0].id", "without spaces"),
        (13, "alerting.flap_starts", "2 to 20"),
        (16, "alerting.overrides[0]", "no.such_rule"),
        (19, "alerting.overrides[1].params", "no_such_param"),
        (22, "dispatch.duties[0].duty", "must name the duty"),
        (25, "records.checkpoint_records", "at least 1"),
    ];
    for (line, field, what) in expected {
        let at = format!("error: FILE:{line}:");
        let found = lines.iter().find(|l| l.starts_with(&at));
        let Some(found) = found else {
            panic!("nothing reported at line {line}:\n{said}");
        };
        assert!(found.contains(field) && found.contains(what), "line {line}: {found}");
    }
    assert_eq!(lines.len(), expected.len(), "one line per problem, no more:\n{said}");
    let numbers: Vec<usize> = lines
        .iter()
        .map(|l| l["error: FILE:".len()..].split(':').next().unwrap().parse().unwrap())
        .collect();
    assert!(numbers.is_sorted(), "by line: {numbers:?}");
    assert!(said.contains(&format!("FILE: {} problems", expected.len())), "{said}");
}

/// A syntax error stops the reading: it alone is reported, located.
#[test]
fn a_syntax_error_is_reported_alone() {
    let (code, said) =
        gateway_check("[http]\nmax_body_bytes = 10\nlisten = \"127.0.0.1:8080\n[storage]\nretention_days = 0\n");
    assert_eq!(code, 2);
    let lines: Vec<&str> = said.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(lines.len(), 1, "{said}");
    assert!(lines[0].starts_with("error: FILE:3:"), "{said}");
}

/// Secrets that cannot be read are each named, and the rest is still checked.
#[test]
fn every_unreadable_secret_is_named_with_the_other_problems() {
    let (code, said) = gateway_check(
        "[http]\nadmin_token_file = \"/nonexistent/admin-token\"\nmax_connections = 0\n\
         [[http.tokens]]\nname = \"ops\"\nrole = \"auditor\"\ntoken_env = \"FM_TEST_NO_SUCH_VARIABLE\"\n",
    );
    assert_eq!(code, 2);
    let lines: Vec<&str> = said.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(lines.len(), 3, "{said}");
    assert!(
        lines[0].starts_with("error: FILE:2:") && lines[0].contains("/nonexistent/admin-token"),
        "{said}"
    );
    assert!(
        lines[1].starts_with("error: FILE:3:") && lines[1].contains("http.max_connections"),
        "{said}"
    );
    assert!(
        lines[2].starts_with("error: FILE:7:") && lines[2].contains("FM_TEST_NO_SUCH_VARIABLE"),
        "{said}"
    );
}

/// A file whose secrets are read from files: every problem the text has is
/// still named with its line. Before, the secrets' table was read instead
/// of the text, and only its first problem came out, with no line.
#[test]
fn secrets_read_from_files_hide_no_problem_and_no_line() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cr3t-token-0123456789\n").unwrap();
    let (code, said) = gateway_check(&format!(
        "[http]\n[[http.tokens]]\nname = \"ops\"\nrole = \"auditor\"\ntoken_file = \"{}\"\n\
         [storage]\nretention = \"30d\"\n[notify]\natempts = 3\n",
        token.display()
    ));
    assert_eq!(code, 2, "{said}");
    let lines: Vec<&str> = said.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(lines.len(), 2, "{said}");
    assert!(
        lines[0].starts_with("error: FILE:7:") && lines[0].contains("storage.retention"),
        "{said}"
    );
    assert!(
        lines[1].starts_with("error: FILE:9:") && lines[1].contains("notify.atempts"),
        "{said}"
    );
    assert!(!said.contains("s3cr3t"), "the secret is never printed: {said}");
}

/// A good file: `ok`, exit 0; and the library's first problem is the first by line.
#[test]
fn a_good_file_is_ok_and_parse_gives_the_first_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ok.toml");
    std::fs::write(&path, "[storage]\nretention_days = 30\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).ends_with(": ok\n"));

    let e = gateway::app::config::Config::parse(std::path::Path::new("x.toml"), MANY).unwrap_err();
    assert_eq!((e.line, e.field.as_deref()), (Some(3), Some("mqtt.bogus")));
}
