//! The embedded broker ([`crate::broker`]) wired to the lanes: a node's
//! publish goes straight in, with its PUBACK owed until the commit.

use std::time::Duration;

use tokio::sync::mpsc;

use crate::app::shared::Shared;
use crate::ingest::acks::Done;
use crate::ingest::lanes::{Input, Lanes, Publish, priority_lane};

/// The lane of a node's publish on the embedded broker: the gateway takes
/// every topic of the node-to-gateway shape (`fm/v1/{site}/{class}/{device}/{kind}`,
/// a bad kind included, so it is refused and counted); commands and the
/// gateway's own notifications are only routed to their subscribers.
pub(crate) fn node_lane(topic: &str) -> crate::broker::Lane {
    use crate::broker::Lane;
    let mut parts = topic.split('/');
    let shape = parts.next() == Some("fm") && parts.next() == Some("v1");
    let rest: Vec<&str> = parts.collect();
    match (shape, rest.as_slice()) {
        (true, [_, _, _, "cmd"]) | (false, _) => Lane::None,
        (true, [_, _, _, kind]) if priority_lane(kind) => Lane::Priority,
        (true, [_, _, _, _]) => Lane::Bulk,
        (true, _) => Lane::None,
    }
}

/// The embedded broker's sockets, bound before anything else can fail.
pub(crate) struct Listeners {
    /// Plain MQTT.
    plain: tokio::net::TcpListener,
    /// MQTTS, with its acceptor.
    tls: Option<(tokio::net::TcpListener, tokio_rustls::TlsAcceptor)>,
    /// Their settings.
    pub(crate) mqtt: crate::app::config::MqttConfig,
}

impl Listeners {
    /// Binds `mqtt.listen`, and `mqtt.tls_listen` with its certificate.
    ///
    /// # Errors
    /// A port taken, a certificate or key that cannot be used.
    pub(crate) async fn bind(mqtt: &crate::app::config::MqttConfig) -> anyhow::Result<Listeners> {
        use anyhow::Context as _;
        let plain = tokio::net::TcpListener::bind(mqtt.listen)
            .await
            .with_context(|| format!("mqtt.listen {} is not available", mqtt.listen))?;
        let tls = match (mqtt.tls_listen, &mqtt.tls_cert_file, &mqtt.tls_key_file) {
            (Some(addr), Some(cert), Some(key)) => {
                let acceptor = crate::ingest::access::tls_acceptor(cert, key)?;
                let l = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("mqtt.tls_listen {addr} is not available"))?;
                Some((l, acceptor))
            }
            _ => None,
        };
        Ok(Listeners {
            plain,
            tls,
            mqtt: mqtt.clone(),
        })
    }
}

/// The embedded broker on `listener`, its nodes' publishes forwarded into
/// the lanes (the broker hands them over with their PUBACK still owed), and
/// the gateway's own publishing client of it (notifications). The gateway
/// is subscribed from the first instant: nothing a node sends can miss it.
pub(crate) async fn start_embedded(
    listeners: Listeners,
    access: std::sync::Arc<crate::ingest::access::Access>,
    mut client_loop: rumqttc::EventLoop,
    lanes: &Lanes,
    control: &mpsc::Sender<crate::ops::alerts::Control>,
    shared: &Shared,
) -> Vec<tokio::task::JoinHandle<()>> {
    let (ptx, prx) = mpsc::channel(64);
    let (btx, brx) = mpsc::channel(64);
    let (stop, stopped) = tokio::sync::watch::channel(());
    let mut stopped_tls = stopped.clone();
    let mut stopped = stopped;
    let auth = listeners.mqtt.effective_auth();
    let (broker, served) = crate::broker::Broker::start(
        listeners.plain,
        crate::broker::Settings {
            authenticate: access.authenticator(),
            ..crate::broker::Settings::default()
        },
        crate::broker::Ingress {
            priority: ptx,
            bulk: btx,
            lane: node_lane,
        },
        async move {
            let _ = stopped.changed().await;
        },
    );
    let served_tls = listeners.tls.map(|(l, acceptor)| {
        tracing::info!(listen = ?l.local_addr().ok(), "embedded MQTT broker serving TLS too");
        broker.serve_tls(l, acceptor, async move {
            let _ = stopped_tls.changed().await;
        })
    });
    shared.set_broker(broker.clone(), access);
    tracing::info!(?auth, "embedded MQTT broker: authentication");
    shared.metrics().mqtt_subscribed.set(1);
    let _ = control.send(crate::ops::alerts::Control::Uplink(true)).await;
    tracing::info!("embedded MQTT broker serving; a node's PUBACK waits for the gateway's commit");
    let forward = |mut rx: mpsc::Receiver<crate::broker::Inbound>, priority: bool| {
        let lanes = lanes.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            while let Some(i) = rx.recv().await {
                let msg = Publish {
                    topic: i.topic,
                    payload: i.payload,
                    received_ms: shared.clock().now_ms(),
                    ack: i.ack.map(Done::Node),
                };
                if !lanes.send_to(priority, Input::Mqtt(msg), shared.metrics()).await {
                    break;
                }
            }
        })
    };
    let publisher = tokio::spawn(async move {
        // Keeps the notification client connected; it subscribes to nothing.
        loop {
            if let Err(e) = client_loop.poll().await {
                tracing::debug!(error = %e, "notification client of the embedded broker: reconnecting");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
    let stats = {
        let metrics = shared.metrics().clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                every.tick().await;
                metrics.broker.copy(broker.stats());
            }
        })
    };
    let closer = tokio::spawn(async move {
        // Ends with the others (aborted at shutdown): the broker stops too.
        let _stop = stop;
        let _ = served.await;
        if let Some(t) = served_tls {
            let _ = t.await;
        }
    });
    vec![forward(prx, true), forward(brx, false), publisher, stats, closer]
}
