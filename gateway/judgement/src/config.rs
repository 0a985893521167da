//! `[judgement]`: every threshold and window of the judgement from
//! history, as the configuration file writes them, and the [`Settings`]
//! the core runs on. docs/judgement.md gives the reason for each default.

use serde::Deserialize;

/// `[judgement]` in the gateway's configuration.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JudgementConfig {
    /// Judge from history at all.
    pub enabled: bool,
    /// The sliding window of `frequent_faults` (`30d`).
    pub fault_window: String,
    /// Faults within the window that make a device's faults frequent (3).
    pub fault_threshold: u32,
    /// Faults dispatched within this long of the first of them are one
    /// incident and count once (`1h`): one power cut that strands a car
    /// outside the door zone with people in it is three codes and one fault.
    pub fault_incident: String,
    /// Codes whose orders are not faults of the device (`offline`: the
    /// node's link, not the lift).
    pub fault_ignore: Vec<String>,
    /// The length of a trend bucket (`1d`): one value per indicator per bucket.
    pub bucket: String,
    /// The share of a bucket a device must have been heard for its rates to
    /// count (0.25): a day mostly silent is left out, not read as a quiet day.
    pub min_coverage: f64,
    /// The longest silence between two samples still counted as observed
    /// (`10m`); edges across a longer one are not counted.
    pub gap: String,
    /// Buckets that set an indicator's baseline before it is judged (7).
    pub warmup: u32,
    /// The weight of a new bucket in the baseline (0.1).
    pub ewma_alpha: f64,
    /// CUSUM slack, in standard deviations (0.5).
    pub cusum_k: f64,
    /// CUSUM decision level, in standard deviations (6).
    pub cusum_h: f64,
    /// The least spread assumed, as a share of the baseline (0.05).
    pub min_rel_sigma: f64,
}

impl Default for JudgementConfig {
    fn default() -> Self {
        JudgementConfig {
            enabled: true,
            fault_window: "30d".into(),
            fault_threshold: 3,
            fault_incident: "1h".into(),
            fault_ignore: vec!["offline".into()],
            bucket: "1d".into(),
            min_coverage: 0.25,
            gap: "10m".into(),
            warmup: 7,
            ewma_alpha: 0.1,
            cusum_k: 0.5,
            cusum_h: 6.0,
            min_rel_sigma: 0.05,
        }
    }
}

/// What the core runs on: [`JudgementConfig`] checked, durations in ms.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// See [`JudgementConfig::enabled`].
    pub enabled: bool,
    /// See [`JudgementConfig::fault_window`] (ms).
    pub fault_window_ms: i64,
    /// See [`JudgementConfig::fault_threshold`].
    pub fault_threshold: u32,
    /// See [`JudgementConfig::fault_incident`] (ms).
    pub fault_incident_ms: i64,
    /// See [`JudgementConfig::fault_ignore`].
    pub fault_ignore: Vec<String>,
    /// See [`JudgementConfig::bucket`] (ms).
    pub bucket_ms: i64,
    /// See [`JudgementConfig::min_coverage`].
    pub min_coverage: f64,
    /// See [`JudgementConfig::gap`] (ms).
    pub gap_ms: i64,
    /// See [`JudgementConfig::warmup`].
    pub warmup: u32,
    /// See [`JudgementConfig::ewma_alpha`].
    pub ewma_alpha: f64,
    /// See [`JudgementConfig::cusum_k`].
    pub cusum_k: f64,
    /// See [`JudgementConfig::cusum_h`].
    pub cusum_h: f64,
    /// See [`JudgementConfig::min_rel_sigma`].
    pub min_rel_sigma: f64,
}

impl Default for Settings {
    fn default() -> Self {
        #[allow(clippy::unwrap_used)] // the defaults are checked by a test
        JudgementConfig::default().settings().unwrap()
    }
}

/// A field of `[judgement]` that is wrong, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("field `judgement.{field}`: {message}")]
pub struct ConfigError {
    /// The field (`fault_window`).
    pub field: &'static str,
    /// Why.
    pub message: String,
}

fn duration(field: &'static str, text: &str) -> Result<i64, ConfigError> {
    match humantime::parse_duration(text.trim()) {
        Ok(d) if !d.is_zero() => i64::try_from(d.as_millis()).map_err(|_| ConfigError {
            field,
            message: "is too long".into(),
        }),
        Ok(_) => Err(ConfigError {
            field,
            message: "must be longer than zero".into(),
        }),
        Err(e) => Err(ConfigError {
            field,
            message: format!("`{text}` is not a duration (30d, 1h): {e}"),
        }),
    }
}

fn within(field: &'static str, v: f64, lo: f64, hi: f64) -> Result<f64, ConfigError> {
    if v.is_finite() && v >= lo && v <= hi {
        Ok(v)
    } else {
        Err(ConfigError {
            field,
            message: format!("must be from {lo} to {hi}"),
        })
    }
}

impl JudgementConfig {
    /// The settings, or the first field that is wrong.
    ///
    /// # Errors
    /// [`ConfigError`] naming the field.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let bucket_ms = duration("bucket", &self.bucket)?;
        if bucket_ms < 60_000 {
            return Err(ConfigError {
                field: "bucket",
                message: "must be at least 1m".into(),
            });
        }
        if !(1..=100).contains(&self.fault_threshold) {
            return Err(ConfigError {
                field: "fault_threshold",
                message: "must be from 1 to 100".into(),
            });
        }
        if !(2..=1000).contains(&self.warmup) {
            return Err(ConfigError {
                field: "warmup",
                message: "must be from 2 to 1000".into(),
            });
        }
        Ok(Settings {
            enabled: self.enabled,
            fault_window_ms: duration("fault_window", &self.fault_window)?,
            fault_threshold: self.fault_threshold,
            fault_incident_ms: duration("fault_incident", &self.fault_incident)?,
            fault_ignore: self.fault_ignore.clone(),
            bucket_ms,
            min_coverage: within("min_coverage", self.min_coverage, 0.0, 1.0)?,
            gap_ms: duration("gap", &self.gap)?,
            warmup: self.warmup,
            ewma_alpha: within("ewma_alpha", self.ewma_alpha, 0.001, 1.0)?,
            cusum_k: within("cusum_k", self.cusum_k, 0.0, 10.0)?,
            cusum_h: within("cusum_h", self.cusum_h, 0.5, 100.0)?,
            min_rel_sigma: within("min_rel_sigma", self.min_rel_sigma, 0.0, 10.0)?,
        })
    }
}
