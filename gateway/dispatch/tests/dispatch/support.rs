//! Builders shared by the tests.

use alerting::{AlertView, DataState, State, WorkOrderIntent};
use dispatch::{Desk, Out, Policy, PolicyConfig};

pub(crate) const MIN: i64 = 60_000;
pub(crate) const HOUR: i64 = 60 * MIN;
pub(crate) const DAY: i64 = 24 * HOUR;
/// 2026-12-01T00:00:00Z.
pub(crate) const T0: i64 = 1_796_083_200_000;

pub(crate) fn alert(id: u64, class: &str, device: &str, code: &str, since: i64) -> AlertView {
    AlertView {
        id,
        site: "lakeside".into(),
        class: class.into(),
        device: device.into(),
        code: code.into(),
        port: None,
        severity: protocol::Severity::Critical,
        state: State::Firing,
        since,
        fired_at: Some(since),
        acked_at: None,
        acked_by: None,
        resolved_at: None,
        flapping: false,
        data: DataState::Fresh,
        inhibited_by: None,
        maintenance: false,
        sources: vec!["elevator.trapped_outside_zone".into()],
        building: Some("3号楼".into()),
        evidence: Vec::new(),
        label_zh: std::borrow::Cow::default(),
    }
}

pub(crate) fn open(a: &AlertView) -> WorkOrderIntent {
    WorkOrderIntent::Open { alert: a.clone() }
}

pub(crate) fn close(a: &AlertView, at: i64) -> WorkOrderIntent {
    let mut a = a.clone();
    a.state = State::Resolved;
    a.resolved_at = Some(at);
    WorkOrderIntent::Close { alert: a }
}

/// The policy of the tests: lakeside's lifts go to acme, backup city-lifts,
/// manager pm-lake; the bureau is wuhan-bureau.
pub(crate) fn policy() -> Policy {
    let text = r#"
bureau = "wuhan-bureau"
no_builtin_duties = true
[[assign]]
site = "lakeside"
contractor = "acme"
backup = "city-lifts"
manager = "pm-lake"
"#;
    let cfg: PolicyConfig = toml::from_str(text).expect("policy");
    cfg.build().expect("valid")
}

pub(crate) fn desk() -> Desk {
    Desk::new(policy())
}

/// Changes (record kinds) of the outputs, in order.
pub(crate) fn kinds(out: &[Out]) -> Vec<String> {
    out.iter()
        .filter_map(|o| match o {
            Out::Order { change, order } => Some(change.record_kind(order).to_owned()),
            _ => None,
        })
        .collect()
}

/// Who was told what, in order.
pub(crate) fn tells(out: &[Out]) -> Vec<(String, &'static str)> {
    out.iter()
        .filter_map(|o| match o {
            Out::Tell(t) => Some((t.to.clone(), t.kind)),
            _ => None,
        })
        .collect()
}

/// A restart: everything the gateway persists, through JSON, into a new desk.
pub(crate) fn restart(d: &Desk) -> Desk {
    let state = serde_json::to_string(d.state()).expect("state");
    let orders = serde_json::to_string(&d.open().cloned().collect::<Vec<_>>()).expect("orders");
    let mut n = Desk::new(d.policy().clone());
    n.restore(
        serde_json::from_str(&state).expect("state back"),
        serde_json::from_str(&orders).expect("orders back"),
    );
    n
}
