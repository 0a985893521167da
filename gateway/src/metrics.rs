//! The gateway's Prometheus metrics: every message in, every rejection by
//! reason, every loss and duplicate, store writes and queue depth. Nothing is
//! dropped without a counter here.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
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

/// All metrics, cheap to clone (the handles share their values).
#[derive(Clone, Default)]
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
            "Messages the store failed to write",
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
        r
    }
}
