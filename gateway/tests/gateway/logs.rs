//! The binary's logs as an operator's tools see them: plain text when
//! standard error is not a terminal (a pipe, a file, journald), colour on a
//! real terminal unless `NO_COLOR` is set, and one JSON object a line with
//! `--log-format json` or `GATEWAY_LOG_FORMAT=json`.

use std::process::{Command, Stdio};

use testkit::free_port;

const BIN: &str = env!("CARGO_BIN_EXE_gateway");

/// Starts `gateway run` with `args` and `envs` on free ports, stderr piped,
/// waits until it serves HTTP, stops it with SIGTERM; its standard error.
fn run_and_stop(args: &[&str], envs: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (mqtt, http) = (free_port(), free_port());
    let child = Command::new(BIN)
        .arg("run")
        .args(args)
        .args(["--mqtt-listen", &format!("127.0.0.1:{mqtt}")])
        .args(["--http-listen", &format!("127.0.0.1:{http}")])
        .arg("--data-dir")
        .arg(dir.path())
        .env("GATEWAY_ADMIN_TOKEN", testkit::ADMIN_TOKEN)
        .env_remove("NO_COLOR")
        .env_remove("GATEWAY_LOG_FORMAT")
        .env_remove("RUST_LOG")
        .envs(envs.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    testkit::wait_port(http);
    // Serving requests: its SIGTERM handler is in place by then.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while testkit::http_get(http, "/healthz", None).0 != 200 {
        assert!(std::time::Instant::now() < deadline, "no /healthz");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn text_logs_into_a_pipe_have_no_colour() {
    let text = run_and_stop(&[], &[]);
    assert!(text.contains("record chain opened"), "{text}");
    assert!(!text.contains('\u{1b}'), "escape codes in piped logs: {text:?}");
}

#[test]
fn json_logs_are_one_object_a_line_with_level_target_and_fields() {
    for (args, envs) in [
        (&["--log-format", "json"][..], &[][..]),
        (&[][..], &[("GATEWAY_LOG_FORMAT", "json")][..]),
    ] {
        let text = run_and_stop(args, envs);
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        assert!(lines.len() >= 2, "{text}");
        for l in &lines {
            assert!(l["timestamp"].is_string(), "{l}");
            assert!(
                matches!(l["level"].as_str(), Some("ERROR" | "WARN" | "INFO" | "DEBUG" | "TRACE")),
                "{l}"
            );
            assert!(l["target"].as_str().is_some_and(|t| !t.is_empty()), "{l}");
            assert!(l["fields"]["message"].is_string(), "{l}");
        }
        let chain = lines
            .iter()
            .find(|l| l["fields"]["message"] == "record chain opened")
            .unwrap_or_else(|| panic!("no `record chain opened` line: {text}"));
        assert_eq!(chain["level"], "INFO");
        assert!(chain["target"].as_str().unwrap().starts_with("gateway"), "{chain}");
        assert_eq!(chain["fields"]["records"].as_u64(), Some(0), "{chain}");
    }
}

#[test]
fn a_bad_log_format_is_a_usage_error() {
    let out = Command::new(BIN)
        .args(["run", "--log-format", "xml"])
        .env_remove("GATEWAY_LOG_FORMAT")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("xml"));
}

/// On a real terminal (util-linux `script` gives the gateway a pty): colour,
/// unless `NO_COLOR` is set.
#[test]
fn a_terminal_gets_colour_unless_no_color_is_set() {
    for (no_color, coloured) in [(None, true), (Some("1"), false)] {
        let dir = tempfile::tempdir().unwrap();
        let (mqtt, http) = (free_port(), free_port());
        // The shell inside the pty starts the gateway, polls its port
        // (bounded), then stops it with SIGTERM.
        let inner = format!(
            "{BIN} run --mqtt-listen 127.0.0.1:{mqtt} --http-listen 127.0.0.1:{http} --data-dir {} & pid=$!; \
             i=0; until curl -sf -o /dev/null http://127.0.0.1:{http}/healthz || [ $i -ge 200 ]; do i=$((i+1)); sleep 0.05; done; \
             kill -TERM $pid; wait $pid",
            dir.path().display()
        );
        let mut cmd = Command::new("script");
        cmd.args(["-qec", &format!("bash -c '{inner}'"), "/dev/null"])
            .env("GATEWAY_ADMIN_TOKEN", testkit::ADMIN_TOKEN)
            .env("TERM", "xterm")
            .env_remove("NO_COLOR")
            .env_remove("GATEWAY_LOG_FORMAT")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        if let Some(v) = no_color {
            cmd.env("NO_COLOR", v);
        }
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("record chain opened"), "{text}");
        assert_eq!(text.contains('\u{1b}'), coloured, "NO_COLOR={no_color:?}: {text:?}");
    }
}
