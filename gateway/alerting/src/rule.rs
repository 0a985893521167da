//! Rules as data: what to watch, when it fires, when it clears.

use serde::{Deserialize, Serialize};

/// How a value is compared with a threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cmp {
    /// Value above the threshold.
    Gt,
    /// Value at or above the threshold.
    Ge,
    /// Value below the threshold.
    Lt,
    /// Value at or below the threshold.
    Le,
}

impl Cmp {
    /// Whether `value` is on the alerting side of `threshold`.
    #[must_use]
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Cmp::Gt => value > threshold,
            Cmp::Ge => value >= threshold,
            Cmp::Lt => value < threshold,
            Cmp::Le => value <= threshold,
        }
    }

    /// Whether the comparison looks upward (a clear threshold must then be lower).
    #[must_use]
    pub const fn upward(self) -> bool {
        matches!(self, Cmp::Gt | Cmp::Ge)
    }
}

/// A threshold rule on one metric: fire when the condition has held for
/// `for_ms`; while firing, stay until the value is back past `clear` (the
/// hysteresis), then hold `keep_firing_for_ms` more before resolving. With
/// `absent_after_ms`, a series silent that long is marked no-data: an explicit
/// state, never taken as resolved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// Stable id: alert state is keyed by it across restarts and reloads.
    pub id: String,
    /// The event code the alert raises (`low_pressure`, `over_temperature`, ...).
    pub code: String,
    /// The metric watched.
    pub metric: String,
    /// The comparison.
    pub cmp: Cmp,
    /// The threshold.
    pub threshold: f64,
    /// The clear threshold (hysteresis); `None` clears at `threshold`.
    pub clear: Option<f64>,
    /// How long the condition must hold before firing.
    pub for_ms: i64,
    /// How long a firing alert stays after its condition ended.
    pub keep_firing_for_ms: i64,
    /// Silence after which the series counts as no-data.
    pub absent_after_ms: Option<i64>,
}

/// A rule that cannot work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleError {
    /// The rule's id.
    pub rule: String,
    /// What is wrong.
    pub problem: String,
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rule `{}`: {}", self.rule, self.problem)
    }
}

impl std::error::Error for RuleError {}

impl Rule {
    /// Checks the rule's numbers.
    ///
    /// # Errors
    /// A [`RuleError`] naming the rule.
    pub fn validate(&self) -> Result<(), RuleError> {
        let bad = |p: &str| {
            Err(RuleError {
                rule: self.id.clone(),
                problem: p.to_owned(),
            })
        };
        if self.id.is_empty() {
            return bad("the id is empty");
        }
        if !self.threshold.is_finite() {
            return bad("the threshold is not a finite number");
        }
        if self.for_ms < 0 || self.keep_firing_for_ms < 0 || self.absent_after_ms.is_some_and(|a| a <= 0) {
            return bad("durations must not be negative (and absence must be positive)");
        }
        if let Some(c) = self.clear {
            let wrong_side = if self.cmp.upward() {
                c > self.threshold
            } else {
                c < self.threshold
            };
            if !c.is_finite() || wrong_side {
                return bad("the clear threshold must be on the safe side of the threshold");
            }
        }
        Ok(())
    }

    /// Whether a value still counts as the alert condition, given whether the
    /// alert is already firing (then the clear threshold applies).
    #[must_use]
    pub fn active(&self, value: f64, firing: bool) -> bool {
        let t = if firing {
            self.clear.unwrap_or(self.threshold)
        } else {
            self.threshold
        };
        self.cmp.holds(value, t)
    }
}
