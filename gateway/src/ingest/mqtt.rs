//! The gateway as a client of an outside broker: two persistent sessions,
//! telemetry (`data`, `death`) and alarms (`event`, `birth`, `ack`), so an
//! alarm never waits behind a backlog of samples at the broker. With the
//! embedded broker the alarm session's client is the gateway's publisher of
//! notifications ([`crate::ingest::embedded`]).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

use crate::app::config::Config;
use crate::app::shared::Shared;
use crate::ingest::acks::Acker;
use crate::ingest::embedded::start_embedded;
use crate::ingest::lanes::{Input, Lanes, Publish};

/// The kinds the alarm session takes: they never wait behind telemetry,
/// not even in the broker's queue to the gateway. Deaths go with the data,
/// so a will is never judged before the samples the node sent ahead of it.
pub const ALARM_KINDS: [&str; 3] = ["event", "birth", "ack"];

/// The kinds the telemetry session takes.
pub const TELEMETRY_KINDS: [&str; 2] = ["data", "death"];

/// One of the gateway's two sessions with its broker: telemetry, and
/// alarms (events, births, acks) on a connection of their own, so a backlog
/// of samples at the broker or in the telemetry lane never delays an alarm.
pub(crate) struct Session {
    pub(crate) opts: MqttOptions,
    pub(crate) filters: Vec<String>,
    /// Its bit in the subscribed mask.
    pub(crate) bit: u8,
}

/// The two sessions: telemetry under the configured client id, alarms
/// under the same id with `-alarms`.
pub(crate) fn sessions(config: &Config) -> anyhow::Result<[Session; 2]> {
    let (host, port, client_id, share) = if let Some(b) = &config.mqtt.broker {
        (b.host.clone(), b.port, b.client_id.clone(), b.share_group.clone())
    } else {
        let l = config.mqtt.listen;
        let host = if l.ip().is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            l.ip().to_string()
        };
        (host, l.port(), "fm-gateway".to_owned(), None)
    };
    let filters = |kinds: &[&str]| -> Vec<String> {
        kinds
            .iter()
            .map(|k| {
                let f = format!("fm/v1/+/+/+/{k}");
                share.as_ref().map_or(f.clone(), |g| format!("$share/{g}/{f}"))
            })
            .collect()
    };
    let options = |id: String| -> anyhow::Result<MqttOptions> {
        let mut o = MqttOptions::new(id, &host, port);
        if let Some(b) = &config.mqtt.broker {
            if let (Some(u), Some(p)) = (&b.username, &b.password) {
                o.set_credentials(u, p);
            } else if let Some(u) = &b.username {
                o.set_credentials(u, "");
            }
            if b.tls {
                o.set_transport(rumqttc::Transport::tls_with_config(tls_config(b)?));
            }
        }
        // A persistent session: QoS 1 messages queued while the gateway is away are kept.
        o.set_clean_session(false);
        o.set_keep_alive(Duration::from_secs(30));
        o.set_max_packet_size(256 * 1024, 256 * 1024);
        o.set_manual_acks(true);
        Ok(o)
    };
    Ok([
        Session {
            opts: options(client_id.clone())?,
            filters: filters(&TELEMETRY_KINDS),
            bit: 1,
        },
        Session {
            opts: options(format!("{client_id}-alarms"))?,
            filters: filters(&ALARM_KINDS),
            bit: 2,
        },
    ])
}

/// The TLS settings of an outside broker, from its PEM files.
pub(crate) fn tls_config(b: &crate::app::config::BrokerConfig) -> anyhow::Result<rumqttc::TlsConfiguration> {
    // rumqttc leaves the crypto provider to us: ring (aws-lc, its default, is a slow C build).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let read = |f: &std::path::Path| std::fs::read(f).with_context(|| format!("reading {}", f.display()));
    let ca = match &b.ca_file {
        Some(f) => read(f)?,
        None => bail!("mqtt.broker.ca_file is required with tls"),
    };
    let client_auth = match (&b.client_cert_file, &b.client_key_file) {
        (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
        _ => None,
    };
    Ok(rumqttc::TlsConfiguration::Simple {
        ca,
        alpn: None,
        client_auth,
    })
}

/// The gateway's MQTT clients: made before the pipeline (its courier
/// publishes notifications on the alarm session, which never waits on the
/// telemetry's back-pressure) and started after it.
pub(crate) struct Clients {
    pub(crate) sessions: [(Session, rumqttc::EventLoop, Acker); 2],
    /// The secret the gateway's own client logs in to its embedded broker
    /// with: made at every start, known to nobody else.
    gateway_password: String,
}

impl Clients {
    pub(crate) fn new(config: &Config) -> anyhow::Result<Clients> {
        let gateway_password = crate::app::run::random_token()?;
        let [telemetry, mut alarms] = sessions(config)?;
        if config.mqtt.broker.is_none() {
            alarms
                .opts
                .set_credentials(crate::ingest::access::GATEWAY_USER, gateway_password.clone());
        }
        let client = |s: Session| {
            let (client, eventloop) = AsyncClient::new(s.opts.clone(), 1024);
            let acker = Acker {
                client,
                order: Arc::default(),
            };
            (s, eventloop, acker)
        };
        Ok(Clients {
            sessions: [client(telemetry), client(alarms)],
            gateway_password,
        })
    }

    /// The secret the gateway's own clients log in to the embedded broker
    /// with (the Sparkplug host session is one of them).
    pub(crate) fn gateway_password(&self) -> String {
        self.gateway_password.clone()
    }

    /// The client notifications are published with.
    pub(crate) fn notifier(&self) -> AsyncClient {
        self.sessions[1].2.client.clone()
    }

    /// With the embedded broker (`listener`), the broker and the notifier's
    /// connection to it; otherwise the telemetry and alarm sessions.
    pub(crate) async fn start(
        self,
        listener: Option<crate::ingest::embedded::Listeners>,
        lanes: &Lanes,
        control: &mpsc::Sender<crate::ops::alerts::Control>,
        shared: &Shared,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let [telemetry, alarms] = self.sessions;
        if let Some(listener) = listener {
            let access = crate::ingest::access::Access::new(
                &listener.mqtt,
                shared.data_dir(),
                &self.gateway_password,
                shared.metrics().broker.auth_evicted.clone(),
            );
            return start_embedded(listener, access, alarms.1, lanes, control, shared).await;
        }
        let subscribed = Arc::new(std::sync::atomic::AtomicU8::new(0));
        let task = |(s, eventloop, acker): (Session, rumqttc::EventLoop, Acker), uplink| {
            tokio::spawn(mqtt_task(
                eventloop,
                acker,
                s.filters,
                (s.bit, subscribed.clone()),
                lanes.clone(),
                uplink,
                shared.clone(),
            ))
        };
        // The telemetry session tells the engine when the broker comes and goes.
        let telemetry = task(telemetry, Some(control.clone()));
        let (s, eventloop, acker) = alarms;
        let alarms = on_own_thread(mqtt_task(
            eventloop,
            acker,
            s.filters,
            (s.bit, subscribed.clone()),
            lanes.clone(),
            None,
            shared.clone(),
        ))
        .await;
        vec![telemetry, alarms]
    }
}

/// Runs the alarm session on a thread of its own (a current-thread runtime):
/// under a burst the runtime's workers are busy with the telemetry session,
/// and an alarm waited its turn among their tasks (behind Mosquitto, alarm
/// p50 97 ms and p99 168 ms at QoS 0; on a thread of its own 19 and 105 ms:
/// docs/performance.md). The handle stops it when aborted (its stop signal
/// is dropped). Should the thread or its runtime not start, the session runs
/// on the shared runtime as before: slower alarms, never none.
async fn on_own_thread<F>(session: F) -> tokio::task::JoinHandle<()>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<bool>();
    let slot = Arc::new(std::sync::Mutex::new(Some(session)));
    let taken = slot.clone();
    let started = std::thread::Builder::new().name("mqtt-alarms".into()).spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            let _ = ready_tx.send(false);
            return;
        };
        let Some(session) = taken.lock().ok().and_then(|mut s| s.take()) else {
            let _ = ready_tx.send(false);
            return;
        };
        let _ = ready_tx.send(true);
        rt.block_on(async {
            tokio::select! {
                () = session => {}
                _ = stop_rx => {}
            }
        });
    });
    let running = started.is_ok() && ready_rx.await.unwrap_or(false);
    if !running {
        tracing::error!("no thread of its own for the alarm session; it shares the runtime");
        if let Some(session) = slot.lock().ok().and_then(|mut s| s.take()) {
            return tokio::spawn(session);
        }
    }
    tokio::spawn(async move {
        let _stop = stop_tx;
        std::future::pending::<()>().await;
    })
}

/// Receives one session from the broker into the lanes; the telemetry
/// session (the one given `uplink`) tells the engine when the broker comes
/// and goes. `fm_mqtt_subscribed` is 1 once both sessions are subscribed.
pub(crate) async fn mqtt_task(
    mut eventloop: rumqttc::EventLoop,
    acker: Acker,
    filters: Vec<String>,
    (bit, subscribed): (u8, Arc<std::sync::atomic::AtomicU8>),
    lanes: Lanes,
    uplink: Option<mpsc::Sender<crate::ops::alerts::Control>>,
    shared: Shared,
) {
    use std::sync::atomic::Ordering;
    let metrics = shared.metrics().clone();
    let mark = |up: bool| {
        let mask = if up {
            subscribed.fetch_or(bit, Ordering::SeqCst) | bit
        } else {
            subscribed.fetch_and(!bit, Ordering::SeqCst) & !bit
        };
        metrics.mqtt_subscribed.set(i64::from(mask == 3));
    };
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                tracing::info!(filters = ?filters, "connected to the MQTT broker");
                acker.order().connected();
                if let Some(u) = &uplink {
                    let _ = u.send(crate::ops::alerts::Control::Uplink(true)).await;
                }
                let subs = filters
                    .iter()
                    .map(|f| rumqttc::SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
                if let Err(e) = acker.client.subscribe_many(subs).await {
                    tracing::error!(error = %e, "subscribe failed");
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => mark(true),
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let kind = p.topic.rsplit('/').next().unwrap_or_default().to_owned();
                let msg = Publish {
                    ack: acker.received(&p),
                    topic: p.topic,
                    payload: p.payload,
                    received_ms: shared.clock().now_ms(),
                };
                if !lanes.send(&kind, Input::Mqtt(msg), &metrics).await {
                    break;
                }
            }
            Ok(_) => {}
            Err(e) => {
                metrics.mqtt_disconnects.inc();
                mark(false);
                if let Some(u) = &uplink {
                    let _ = u.try_send(crate::ops::alerts::Control::Uplink(false));
                }
                tracing::warn!(error = %e, "MQTT connection lost; reconnecting");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
