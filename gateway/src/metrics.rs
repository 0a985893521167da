//! The gateway's Prometheus metrics: every message in, every rejection by
//! reason, every loss and duplicate, store writes and queue depth. Nothing is
//! dropped without a counter here.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// A `kind` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// Message kind.
    pub kind: String,
}

/// A `reason` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why.
    pub reason: String,
}

/// The `change` label of alert changes and work-order intents.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChangeLabel {
    /// `fired`, `resolved`, ... or `open`, `close`.
    pub change: String,
}

/// Labels of a notification delivery outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabel {
    /// `webhook`, `mqtt`, `email`, `none`.
    pub channel: String,
    /// `delivered` or `dead_letter`.
    pub result: String,
}

/// Labels of an upstream delivery's outcome (`fm_upstream_deliveries_total`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabel {
    /// The connector (`elevator:wuhan-96333`).
    pub connector: String,
    /// `delivered` or `dead_letter`.
    pub result: String,
}

/// A `connector` label (upstream platforms).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectorLabel {
    /// The connector.
    pub connector: String,
}

/// Labels of a command to a node (`fm_commands_total`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabel {
    /// `cut_off`, `clear`, `self_test`, `set_threshold`, `hold_doors`.
    pub op: String,
    /// `sent`, `acked`, `refused` or `expired`.
    pub status: String,
}

/// A `device` label for Modbus slaves.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModbusLabel {
    /// The device id.
    pub device: String,
}

/// `device` and `outcome` labels for Modbus requests.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModbusOutcomeLabel {
    /// The device id.
    pub device: String,
    /// `ok`, `exception` (the slave refused), `timeout` or `transport`.
    pub outcome: String,
}

fn poll_buckets() -> Histogram {
    Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0])
}

/// The pipeline's latency is mostly under a millisecond (docs/performance.md):
/// buckets from 50 µs, so a p99 rule (`histogram_quantile`) can tell 0.2 ms
/// from 0.9 ms, up to the seconds a backlog takes.
fn pipeline_buckets() -> Histogram {
    Histogram::new([
        0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
    ])
}

/// `class` and `status` of devices (`fm_devices`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeviceLabel {
    /// `elevator`, `firepump`, `charger`.
    pub class: String,
    /// `online`, `offline`, `stale`.
    pub status: String,
}

/// `severity` of open alerts (`fm_alerts_open_by_severity`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SeverityLabel {
    /// `critical`, `major`, `minor`, `info`.
    pub severity: String,
}

/// `version` of the running binary (`fm_build_info`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabel {
    /// The crate's version.
    pub version: String,
    /// The Rust it was built with, as the toolchain file pins it.
    pub rust: String,
}

/// All metrics, cheap to clone (the handles share their values).
#[derive(Clone)]
pub struct Metrics {
    /// Messages accepted, by kind.
    pub ingested: Family<KindLabel, Counter>,
    /// Publishes refused, by reason.
    pub rejected: Family<ReasonLabel, Counter>,
    /// Messages found missing from device sessions.
    pub lost: Counter,
    /// Duplicates dropped.
    pub duplicates: Counter,
    /// Late messages that filled their gap.
    pub reordered: Counter,
    /// Messages from devices whose clock is off by more than 5 minutes.
    pub skewed: Counter,
    /// Values written to the store.
    pub stored: Counter,
    /// Messages the store failed to write (disk full, I/O): logged and counted.
    pub store_errors: Counter,
    /// Messages waiting for the pipeline.
    pub queue_depth: Gauge,
    /// MQTT connection losses.
    pub mqtt_disconnects: Counter,
    /// 1 while the broker has acknowledged the gateway's subscription (it
    /// receives what nodes send), 0 before and after a connection loss.
    pub mqtt_subscribed: Gauge,
    /// Modbus requests by device and outcome.
    pub modbus_requests: Family<ModbusOutcomeLabel, Counter>,
    /// 1 while a Modbus slave answers, 0 while its breaker is open.
    pub modbus_up: Family<ModbusLabel, Gauge>,
    /// Duration of one poll of one device.
    pub modbus_poll_seconds: Histogram,
    /// Points written to InfluxDB.
    pub influx_written: Counter,
    /// Points InfluxDB refused with 400 (kept in `spool/rejected`).
    pub influx_rejected: Counter,
    /// Writes that failed and will be retried.
    pub influx_retries: Counter,
    /// Points lost because the spool could not be written (disk full).
    pub influx_dropped: Counter,
    /// Batches waiting in the spool.
    pub influx_spooled: Gauge,
    /// From receipt to stored, per message: the pipeline's latency.
    pub pipeline_seconds: Histogram,
    /// Alert changes by kind.
    pub alert_changes: Family<ChangeLabel, Counter>,
    /// Open alerts (pending, firing, acknowledged).
    pub alerts_open: Gauge,
    /// Open alerts by severity.
    pub alerts_open_by_severity: Family<SeverityLabel, Gauge>,
    /// Devices by class and status, counted when `/metrics` is read.
    pub devices: Family<DeviceLabel, Gauge>,
    /// Always 1, labelled with the version: which build answers.
    pub build_info: Family<BuildLabel, Gauge>,
    /// Grouped notifications due.
    pub notifications: Counter,
    /// Work-order intents by `open` / `close`.
    pub work_order_intents: Family<ChangeLabel, Counter>,
    /// Alert changes the store failed to write.
    pub alert_store_errors: Counter,
    /// Events a slow `/api/v1/events` reader missed.
    pub events_lagged: Counter,
    /// Messages waiting in the priority lane (events, births, controls).
    pub priority_queue_depth: Gauge,
    /// Work-order changes by record kind.
    pub work_order_changes: Family<ChangeLabel, Counter>,
    /// Open work orders.
    pub work_orders_open: Gauge,
    /// Notifications handed to the outbox.
    pub notifications_queued: Counter,
    /// Delivery outcomes by channel and result.
    pub deliveries: Family<DeliveryLabel, Counter>,
    /// Notifications that will never arrive (dead letters), each also a record.
    pub dead_letters: Counter,
    /// Commands to nodes sent, and their outcomes, by op and status.
    pub commands: Family<CommandLabel, Counter>,
    /// Upstream rows delivered or dead, by connector (each also a record).
    pub upstream_deliveries: Family<UpstreamLabel, Counter>,
    /// Upstream rows that will never reach their platform.
    pub upstream_dead_letters: Counter,
    /// Upstream attempts that failed and are tried again, by connector.
    pub upstream_retries: Family<ConnectorLabel, Counter>,
    /// Supervision records written.
    pub records: Counter,
    /// Records, order and alert changes waiting for a failed store to take
    /// them again.
    pub unstored: Gauge,
    /// Changes dropped because the store refused them for too long.
    pub unstored_dropped: Counter,
    /// Transactions committed by the pipeline (one per batch).
    pub commits: Counter,
    /// Inbox compaction steps (samples moved into `points`, a range of series each).
    pub compactions: Counter,
    /// How long a compaction step took inside its commit.
    pub compaction_seconds: Histogram,
    /// Commits that failed in a row (0 while the store takes writes).
    pub commit_failures: Gauge,
    /// How long the message taken last had waited since its receipt, ms (0 when idle).
    pub pipeline_lag_ms: Gauge,
    /// Free bytes on the data directory's file system.
    pub disk_free_bytes: Gauge,
    /// 1 while telemetry is held back (low disk or a failing store).
    pub telemetry_held: Gauge,
    /// The embedded broker's counters.
    pub broker: BrokerMetrics,
    /// The HTTP API's connections, timeouts and refusals.
    pub http: HttpMetrics,
    /// Sparkplug B ingest: messages, refusals, unmapped metrics, rebirth requests.
    pub sparkplug: crate::ingest::sparkplug::SparkplugMetrics,
}

/// The embedded broker's counters, copied from its [`crate::broker::Stats`].
#[derive(Clone, Default)]
pub struct BrokerMetrics {
    /// Connected clients.
    pub connections: Gauge,
    /// Connections accepted.
    pub connects: Counter,
    /// Connections refused (limit, authentication).
    pub refused: Counter,
    /// Publishes received from clients.
    pub received: Counter,
    /// Publishes delivered to subscribers.
    pub delivered: Counter,
    /// QoS 0 publishes dropped for a full subscriber queue.
    pub dropped_qos0: Counter,
    /// QoS 1 publishes dropped for a full subscriber or session queue.
    pub dropped_qos1: Counter,
    /// Retained messages not kept (limit).
    pub dropped_retained: Counter,
    /// Connections closed for a protocol error.
    pub protocol_errors: Counter,
    /// Wills published.
    pub wills: Counter,
    /// Refusals by reason (CONNECTs, publishes, subscriptions, wills).
    pub denied: Family<ReasonLabel, Counter>,
    /// Addresses the failed-login limiter forgot to make room.
    pub auth_evicted: Counter,
}

impl BrokerMetrics {
    /// Brings the counters up to the broker's totals.
    pub fn copy(&self, s: &crate::broker::Stats) {
        use std::sync::atomic::Ordering::Relaxed;
        let up = |c: &Counter, total: u64| c.inc_by(total.saturating_sub(c.get()));
        self.connections.set(s.connections.load(Relaxed));
        up(&self.connects, s.connects_total.load(Relaxed));
        up(&self.refused, s.refused_total.load(Relaxed));
        up(&self.received, s.received_total.load(Relaxed));
        up(&self.delivered, s.delivered_total.load(Relaxed));
        up(&self.dropped_qos0, s.dropped_qos0_total.load(Relaxed));
        up(&self.dropped_qos1, s.dropped_qos1_total.load(Relaxed));
        up(&self.dropped_retained, s.dropped_retained_total.load(Relaxed));
        up(&self.protocol_errors, s.protocol_errors_total.load(Relaxed));
        up(&self.wills, s.wills_total.load(Relaxed));
        for d in crate::identity::Denial::ALL {
            let c = self.denied.get_or_create(&ReasonLabel {
                reason: d.label().into(),
            });
            up(&c, s.denied(d));
        }
    }

    fn register(&self, r: &mut Registry) {
        r.register(
            "mqtt_denied",
            "What the embedded broker refused, by reason: logins, publishes and subscriptions outside a device's own topics, wills",
            self.denied.clone(),
        );
        let r = r.sub_registry_with_prefix("broker");
        r.register(
            "connections",
            "Clients connected to the embedded broker",
            self.connections.clone(),
        );
        r.register("connects", "Connections accepted", self.connects.clone());
        r.register(
            "refused",
            "Connections refused (limit, authentication)",
            self.refused.clone(),
        );
        r.register("received", "Publishes received from clients", self.received.clone());
        r.register(
            "delivered",
            "Publishes delivered to subscribers",
            self.delivered.clone(),
        );
        r.register(
            "dropped_qos0",
            "QoS 0 publishes dropped for a full subscriber queue",
            self.dropped_qos0.clone(),
        );
        r.register(
            "dropped_qos1",
            "QoS 1 publishes dropped for a full subscriber or offline-session queue",
            self.dropped_qos1.clone(),
        );
        r.register(
            "dropped_retained",
            "Retained messages not kept (limit)",
            self.dropped_retained.clone(),
        );
        r.register(
            "protocol_errors",
            "Connections closed for a protocol error",
            self.protocol_errors.clone(),
        );
        r.register("wills", "Wills published", self.wills.clone());
        r.register(
            "auth_clients_evicted",
            "Addresses the failed-login limiter forgot to make room (65,536 at most)",
            self.auth_evicted.clone(),
        );
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            ingested: Family::default(),
            rejected: Family::default(),
            lost: Counter::default(),
            duplicates: Counter::default(),
            reordered: Counter::default(),
            skewed: Counter::default(),
            stored: Counter::default(),
            store_errors: Counter::default(),
            queue_depth: Gauge::default(),
            mqtt_disconnects: Counter::default(),
            mqtt_subscribed: Gauge::default(),
            modbus_requests: Family::default(),
            modbus_up: Family::default(),
            modbus_poll_seconds: poll_buckets(),
            influx_written: Counter::default(),
            influx_rejected: Counter::default(),
            influx_retries: Counter::default(),
            influx_dropped: Counter::default(),
            influx_spooled: Gauge::default(),
            pipeline_seconds: pipeline_buckets(),
            alert_changes: Family::default(),
            alerts_open: Gauge::default(),
            alerts_open_by_severity: Family::default(),
            devices: Family::default(),
            build_info: {
                let f: Family<BuildLabel, Gauge> = Family::default();
                f.get_or_create(&BuildLabel {
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    rust: env!("CARGO_PKG_RUST_VERSION").to_owned(),
                })
                .set(1);
                f
            },
            notifications: Counter::default(),
            work_order_intents: Family::default(),
            alert_store_errors: Counter::default(),
            events_lagged: Counter::default(),
            priority_queue_depth: Gauge::default(),
            work_order_changes: Family::default(),
            work_orders_open: Gauge::default(),
            notifications_queued: Counter::default(),
            deliveries: Family::default(),
            dead_letters: Counter::default(),
            commands: Family::default(),
            upstream_deliveries: Family::default(),
            upstream_dead_letters: Counter::default(),
            upstream_retries: Family::default(),
            records: Counter::default(),
            unstored: Gauge::default(),
            unstored_dropped: Counter::default(),
            commits: Counter::default(),
            compactions: Counter::default(),
            compaction_seconds: poll_buckets(),
            commit_failures: Gauge::default(),
            pipeline_lag_ms: Gauge::default(),
            disk_free_bytes: Gauge::default(),
            telemetry_held: Gauge::default(),
            broker: BrokerMetrics::default(),
            http: HttpMetrics::default(),
            sparkplug: crate::ingest::sparkplug::SparkplugMetrics::default(),
        }
    }
}

impl Metrics {
    /// Registers every metric under `fm_`.
    #[must_use]
    pub fn register(&self) -> Registry {
        let mut r = Registry::with_prefix("fm");
        r.register("ingest_messages", "Messages accepted, by kind", self.ingested.clone());
        r.register("ingest_rejected", "Publishes refused, by reason", self.rejected.clone());
        r.register(
            "ingest_lost",
            "Messages missing from device sessions (seq gaps)",
            self.lost.clone(),
        );
        r.register(
            "ingest_duplicates",
            "Duplicate messages dropped",
            self.duplicates.clone(),
        );
        r.register(
            "ingest_reordered",
            "Late messages that filled their gap",
            self.reordered.clone(),
        );
        r.register(
            "ingest_clock_skewed",
            "Messages from devices with a skewed clock",
            self.skewed.clone(),
        );
        r.register(
            "store_values",
            "Values written to the time-series store",
            self.stored.clone(),
        );
        r.register(
            "store_errors",
            "Batch commits the store failed (each is retried)",
            self.store_errors.clone(),
        );
        r.register(
            "pipeline_queue_depth",
            "Messages waiting for the pipeline",
            self.queue_depth.clone(),
        );
        r.register(
            "mqtt_disconnects",
            "MQTT connection losses",
            self.mqtt_disconnects.clone(),
        );
        r.register(
            "mqtt_subscribed",
            "1 while the broker has acknowledged the gateway's subscription",
            self.mqtt_subscribed.clone(),
        );
        r.register(
            "pipeline_seconds",
            "From receipt to stored, per message",
            self.pipeline_seconds.clone(),
        );
        r.register(
            "modbus_requests",
            "Modbus requests by device and outcome",
            self.modbus_requests.clone(),
        );
        r.register("modbus_up", "1 while a Modbus slave answers", self.modbus_up.clone());
        r.register(
            "modbus_poll_seconds",
            "Duration of one poll of one device",
            self.modbus_poll_seconds.clone(),
        );
        r.register(
            "influx_points_written",
            "Points written to InfluxDB",
            self.influx_written.clone(),
        );
        r.register(
            "influx_points_rejected",
            "Points InfluxDB refused (400), kept in spool/rejected",
            self.influx_rejected.clone(),
        );
        r.register(
            "influx_retries",
            "InfluxDB writes that failed and will be retried",
            self.influx_retries.clone(),
        );
        r.register(
            "influx_points_dropped",
            "Points lost because the spool could not be written",
            self.influx_dropped.clone(),
        );
        r.register(
            "influx_spool_batches",
            "Batches waiting in the InfluxDB spool",
            self.influx_spooled.clone(),
        );
        self.register_pipeline(&mut r);
        self.broker.register(&mut r);
        self.http.register(&mut r);
        self.sparkplug.register(&mut r);
        self.register_alerting(&mut r);
        self.register_dispatch(&mut r);
        r
    }

    /// The group commit and readiness.
    fn register_pipeline(&self, r: &mut Registry) {
        r.register(
            "store_commits",
            "Transactions committed (one per batch)",
            self.commits.clone(),
        );
        r.register(
            "store_compaction_steps",
            "Inbox compaction steps: samples of a range of series moved, sorted, into points",
            self.compactions.clone(),
        );
        r.register(
            "store_compaction_step_seconds",
            "How long a compaction step took inside its commit",
            self.compaction_seconds.clone(),
        );
        r.register(
            "store_commit_failures",
            "Commits failed in a row; messages stay unacknowledged meanwhile",
            self.commit_failures.clone(),
        );
        r.register(
            "pipeline_lag_ms",
            "How long the last message taken had waited since receipt",
            self.pipeline_lag_ms.clone(),
        );
        r.register(
            "store_disk_free_bytes",
            "Free bytes on the data directory's file system",
            self.disk_free_bytes.clone(),
        );
        r.register(
            "pipeline_telemetry_held",
            "1 while telemetry is held back at the broker (low disk or failing store)",
            self.telemetry_held.clone(),
        );
    }

    /// The alerting side's metrics.
    fn register_dispatch(&self, r: &mut Registry) {
        r.register(
            "work_order_changes",
            "Work-order changes by record kind",
            self.work_order_changes.clone(),
        );
        r.register("work_orders_open", "Open work orders", self.work_orders_open.clone());
        r.register(
            "notifications_queued",
            "Messages handed to the notification outbox",
            self.notifications_queued.clone(),
        );
        r.register(
            "notification_deliveries",
            "Delivery outcomes by channel and result",
            self.deliveries.clone(),
        );
        r.register(
            "notification_dead_letters",
            "Messages that will never arrive (each is also a supervision record)",
            self.dead_letters.clone(),
        );
        r.register(
            "upstream_deliveries",
            "Upstream platform deliveries by connector and result (each is also a supervision record)",
            self.upstream_deliveries.clone(),
        );
        r.register(
            "upstream_dead_letters",
            "Upstream rows that will never reach their platform",
            self.upstream_dead_letters.clone(),
        );
        r.register(
            "upstream_retries",
            "Upstream attempts that failed and are tried again, by connector",
            self.upstream_retries.clone(),
        );
        r.register(
            "commands",
            "Commands to nodes: sent, and their outcomes (acked, refused, expired), by op",
            self.commands.clone(),
        );
        r.register("records", "Supervision records written", self.records.clone());
        r.register(
            "unstored_changes",
            "Records and changes waiting for the store to take them again",
            self.unstored.clone(),
        );
        r.register(
            "unstored_dropped",
            "Changes dropped after the store refused them too long (logged)",
            self.unstored_dropped.clone(),
        );
    }

    fn register_alerting(&self, r: &mut Registry) {
        r.register("alert_changes", "Alert changes by kind", self.alert_changes.clone());
        r.register(
            "alerts_open",
            "Open alerts (pending, firing, acknowledged)",
            self.alerts_open.clone(),
        );
        r.register(
            "alerts_open_by_severity",
            "Open alerts (pending, firing, acknowledged) by severity",
            self.alerts_open_by_severity.clone(),
        );
        r.register(
            "devices",
            "Devices by class and status (online, offline after a death, stale after 3 silent intervals)",
            self.devices.clone(),
        );
        r.register(
            "build_info",
            "The running build: version and Rust (always 1)",
            self.build_info.clone(),
        );
        r.register("notifications", "Grouped notifications due", self.notifications.clone());
        r.register(
            "work_order_intents",
            "Work-order intents by open and close",
            self.work_order_intents.clone(),
        );
        r.register(
            "alert_store_errors",
            "Alert changes or alerting state the store failed to write",
            self.alert_store_errors.clone(),
        );
        r.register(
            "events_lagged",
            "Events a slow /api/v1/events reader missed (it is told how many)",
            self.events_lagged.clone(),
        );
        r.register(
            "pipeline_priority_queue_depth",
            "Messages waiting in the priority lane (events, births, controls)",
            self.priority_queue_depth.clone(),
        );
    }
}

/// The HTTP API's connections and refusals (`fm_http_*`; docs/api-hardening.md).
#[derive(Clone, Default)]
pub struct HttpMetrics {
    /// Connections accepted.
    pub connections: Counter,
    /// Connections open now.
    pub open: Gauge,
    /// Connections closed at once because `max_connections` were open.
    pub refused: Counter,
    /// Connections closed at once because their address held
    /// `max_connections_per_client`.
    pub refused_client: Counter,
    /// Connections closed because no whole request head (or TLS handshake)
    /// arrived within `header_timeout`, kept-alive idle ones included.
    pub header_timeouts: Counter,
    /// TLS handshakes that failed (plain HTTP to the TLS port, a client
    /// that does not trust the certificate).
    pub tls_failures: Counter,
    /// Requests with a token the gateway does not know.
    pub auth_failures: Counter,
    /// Requests answered 429 because their client address sent too many
    /// unknown tokens.
    pub auth_limited: Counter,
    /// Client addresses the failure limiter forgot to make room.
    pub auth_evicted: Counter,
    /// Requests refused 413: a body over `max_body_bytes`.
    pub body_too_large: Counter,
    /// Requests refused 408: a body slower than `body_timeout`.
    pub body_timeouts: Counter,
}

impl HttpMetrics {
    fn register(&self, r: &mut Registry) {
        let r = r.sub_registry_with_prefix("http");
        r.register("connections", "HTTP connections accepted", self.connections.clone());
        r.register("connections_open", "HTTP connections open", self.open.clone());
        r.register(
            "connections_refused",
            "HTTP connections closed at once: max_connections were open",
            self.refused.clone(),
        );
        r.register(
            "connections_refused_per_client",
            "HTTP connections closed at once: their address held max_connections_per_client",
            self.refused_client.clone(),
        );
        r.register(
            "header_timeouts",
            "HTTP connections closed: no request head (or TLS handshake) within header_timeout, idle ones included",
            self.header_timeouts.clone(),
        );
        r.register(
            "tls_handshake_failures",
            "TLS handshakes that failed on the HTTP API",
            self.tls_failures.clone(),
        );
        r.register(
            "auth_failures",
            "HTTP requests with an unknown token",
            self.auth_failures.clone(),
        );
        r.register(
            "auth_rate_limited",
            "HTTP requests answered 429: their client address sent too many unknown tokens",
            self.auth_limited.clone(),
        );
        r.register(
            "auth_clients_evicted",
            "Client addresses the auth failure limiter forgot to make room",
            self.auth_evicted.clone(),
        );
        r.register(
            "body_too_large",
            "HTTP requests refused 413: body over max_body_bytes",
            self.body_too_large.clone(),
        );
        r.register(
            "body_timeouts",
            "HTTP requests refused 408: body slower than body_timeout",
            self.body_timeouts.clone(),
        );
    }
}
