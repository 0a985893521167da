//! Shared test support: messages, contacts, a scripted webhook receiver that
//! checks signatures the way a real receiver must, and deadline-bounded waits.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use hmac::{Hmac, Mac};
use notify::{Contact, Message, Outcome, RetryPolicy, WebhookTarget};
use sha2::Sha256;
use tokio::sync::{mpsc, watch};

/// Long enough for a loaded CI machine, short enough to fail a hung test.
pub(crate) const DEADLINE: Duration = Duration::from_secs(15);

/// An alert notification with Chinese text, as the gateway renders one.
pub(crate) fn message(id: &str) -> Message {
    Message {
        id: id.into(),
        kind: "alert_notification".into(),
        site: "wuhan-guanggu-1".into(),
        subject: "电梯困人 3号楼 2单元".into(),
        text: "3号楼 2单元电梯困人，请立即到场处理。\n告警时间 2025-06-01 08:30".into(),
        body: serde_json::json!({
            "alert": "elevator.trapped",
            "device": "31104201002019000123",
            "severity": "critical",
            "floor": 7
        }),
        notice: None,
    }
}

/// A contact reached only by webhook.
pub(crate) fn webhook_contact(id: &str, url: &str, secret: Option<&str>) -> Contact {
    Contact {
        id: id.into(),
        name: None,
        webhook: Some(WebhookTarget {
            url: url.into(),
            secret: secret.map(Into::into),
        }),
        email: None,
        mqtt: false,
        wecom: None,
        dingtalk: None,
        sms: Vec::new(),
    }
}

/// Retries in milliseconds so tests run fast.
pub(crate) fn fast_policy(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        attempts,
        first: Duration::from_millis(10),
        max: Duration::from_millis(40),
    }
}

/// The next outcome, failing the test if none comes within [`DEADLINE`].
pub(crate) async fn next_outcome(rx: &mut mpsc::UnboundedReceiver<Outcome>) -> Outcome {
    tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .expect("no outcome within the deadline")
        .expect("outcome stream ended")
}

/// `n` outcomes, sorted by message id.
pub(crate) async fn outcomes(rx: &mut mpsc::UnboundedReceiver<Outcome>, n: usize) -> Vec<Outcome> {
    let mut all = Vec::new();
    for _ in 0..n {
        all.push(next_outcome(rx).await);
    }
    all.sort_by(|a, b| (&a.id, a.channel).cmp(&(&b.id, b.channel)));
    all
}

/// Polls `cond` every few milliseconds until it holds or [`DEADLINE`] passes.
pub(crate) async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What the receiver answers to one request.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Step {
    /// Answer with this status.
    Status(u16),
    /// Hold the request until [`Hook::release`], then answer 200.
    Hang,
}

/// One request as the receiver saw it.
#[derive(Clone, Debug)]
pub(crate) struct Received {
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

#[derive(Default)]
struct HookState {
    /// Per path: what to answer next; an empty script answers 200.
    scripts: Mutex<HashMap<String, VecDeque<Step>>>,
    /// Per path: the secret whose signature the receiver demands.
    secrets: Mutex<HashMap<String, String>>,
    received: Mutex<HashMap<String, Vec<Received>>>,
    released: Mutex<Option<watch::Receiver<bool>>>,
}

/// A webhook receiver on 127.0.0.1:0: scripted answers per path, signature
/// checks (401 when wrong), and hanging requests for slow-receiver tests.
pub(crate) struct Hook {
    pub(crate) base: String,
    state: Arc<HookState>,
    release: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Hook {
    pub(crate) async fn start() -> Hook {
        let (release, released) = watch::channel(false);
        let state = Arc::new(HookState::default());
        *state.released.lock().unwrap() = Some(released);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new().fallback(handle).with_state(Arc::clone(&state));
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Hook {
            base,
            state,
            release,
            task,
        }
    }

    /// The URL of `path` on this receiver.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Answers requests to `path` with `steps` in order, then 200.
    pub(crate) fn script(&self, path: &str, steps: &[Step]) {
        self.state
            .scripts
            .lock()
            .unwrap()
            .insert(path.into(), steps.iter().copied().collect());
    }

    /// Requires a valid signature with `secret` on `path`.
    pub(crate) fn require_secret(&self, path: &str, secret: &str) {
        self.state.secrets.lock().unwrap().insert(path.into(), secret.into());
    }

    /// Lets every hanging request (and any later `Hang`) answer 200.
    pub(crate) fn release(&self) {
        self.release.send_replace(true);
    }

    /// The requests `path` has received so far.
    pub(crate) fn received(&self, path: &str) -> Vec<Received> {
        self.state
            .received
            .lock()
            .unwrap()
            .get(path)
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until `path` has received `n` requests.
    pub(crate) async fn wait_hits(&self, path: &str, n: usize) {
        until(&format!("{n} requests on {path}"), || self.received(path).len() >= n).await;
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        self.release();
        self.task.abort();
    }
}

async fn handle(
    State(state): State<Arc<HookState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let path = uri.path().to_owned();
    state
        .received
        .lock()
        .unwrap()
        .entry(path.clone())
        .or_default()
        .push(Received {
            headers: headers.clone(),
            body: body.clone(),
        });
    let secret = state.secrets.lock().unwrap().get(&path).cloned();
    if let Some(secret) = secret
        && !signature_ok(&secret, &headers, &body)
    {
        return (StatusCode::UNAUTHORIZED, "bad signature".into());
    }
    let step = state
        .scripts
        .lock()
        .unwrap()
        .get_mut(&path)
        .and_then(VecDeque::pop_front);
    match step.unwrap_or(Step::Status(200)) {
        Step::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap();
            (status, format!("scripted {code}"))
        }
        Step::Hang => {
            let released = state.released.lock().unwrap().clone();
            if let Some(mut released) = released {
                let _ = released.wait_for(|r| *r).await;
            }
            (StatusCode::OK, "released".into())
        }
    }
}

/// The receiver's check, written here independently of the crate's helper:
/// fresh timestamp, then HMAC-SHA256(secret, "<ts>.<raw body>") compared in
/// constant time.
pub(crate) fn signature_ok(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(ts), Some(sig)) = (header("x-fm-timestamp"), header("x-fm-signature")) else {
        return false;
    };
    let Ok(ts_secs) = ts.parse::<u64>() else {
        return false;
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    if now.abs_diff(ts_secs) > 300 {
        return false;
    }
    let Some(Ok(tag)) = sig.strip_prefix("sha256=").map(hex::decode) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&tag).is_ok()
}
