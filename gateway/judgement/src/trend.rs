//! One indicator's trend: a baseline (mean and spread) and a one-sided
//! CUSUM in the direction that is worse, fed one value per bucket.
//!
//! Why CUSUM on an EWMA baseline: a wearing door or a slowly leaking
//! network moves an indicator by a little every day; a threshold on one
//! day's value either fires on noise or sees the drift only when it is
//! large. CUSUM adds up the evidence of small, persistent shifts (Page,
//! 1954) and is the textbook detector of a change in mean with the fastest
//! detection for a given false-alarm rate (Lorden, 1971). It needs one
//! number of state per indicator, so it is incremental: no history is
//! scanned again. The baseline learns only while the indicator is in
//! control, so a drift is not learnt as the new normal while it is judged.

use serde::{Deserialize, Serialize};

use crate::config::Settings;

/// Which way an indicator gets worse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Worse {
    /// Higher is worse (cycles per hour, door time).
    Up,
    /// Lower is worse.
    Down,
}

/// Where an indicator stands, for a reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Still learning its baseline.
    Learning,
    /// Within its normal.
    Steady,
    /// Evidence of a worsening is adding up (CUSUM past half its level).
    Drifting,
    /// Worse than its normal beyond doubt (CUSUM past its level).
    Degrading,
    /// Better than its normal.
    Improving,
}

impl Direction {
    /// The name in the API.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Learning => "learning",
            Direction::Steady => "steady",
            Direction::Drifting => "drifting",
            Direction::Degrading => "degrading",
            Direction::Improving => "improving",
        }
    }
}

/// The trend state of one indicator.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Trend {
    /// Buckets seen.
    pub n: u32,
    /// The baseline mean.
    pub mean: f64,
    /// The baseline variance.
    pub var: f64,
    /// The upper CUSUM, in standard deviations.
    pub cusum: f64,
    /// The last bucket's value and when that bucket began.
    pub last: Option<(f64, i64)>,
    /// Since when the CUSUM has been above zero (the change's estimated start).
    pub rising_since: Option<i64>,
    /// When it crossed its level; `None` while in control.
    pub alarm_at: Option<i64>,
}

/// What one bucket did to a trend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing to report.
    Quiet,
    /// It crossed its level: degrading.
    Alarm,
    /// It came back in control.
    Cleared,
}

impl Trend {
    /// The spread assumed: the baseline's, but never below `floor` (the
    /// indicator's own resolution) nor `min_rel_sigma` of the mean: a
    /// perfectly steady week must not make every later wobble a change.
    #[must_use]
    pub fn sigma(&self, s: &Settings, floor: f64) -> f64 {
        self.var
            .max(0.0)
            .sqrt()
            .max(s.min_rel_sigma * self.mean.abs())
            .max(floor)
    }

    /// Takes the value of the bucket that began at `at`.
    #[allow(clippy::many_single_char_names)] // the textbook's x, z, s, d, a
    pub fn push(&mut self, x: f64, at: i64, worse: Worse, floor: f64, s: &Settings) -> Step {
        if !x.is_finite() {
            return Step::Quiet;
        }
        self.last = Some((x, at));
        if self.n < s.warmup {
            // Welford's running mean and variance over the warm-up.
            self.n += 1;
            let d = x - self.mean;
            self.mean += d / f64::from(self.n);
            let m2 = self.var * f64::from(self.n - 1) + d * (x - self.mean);
            self.var = m2 / f64::from(self.n);
            return Step::Quiet;
        }
        self.n = self.n.saturating_add(1);
        let sigma = self.sigma(s, floor);
        let sign = match worse {
            Worse::Up => 1.0,
            Worse::Down => -1.0,
        };
        let z = sign * (x - self.mean) / sigma;
        let before = self.cusum;
        self.cusum = (self.cusum + z - s.cusum_k).max(0.0);
        if before == 0.0 && self.cusum > 0.0 {
            self.rising_since = Some(at);
        }
        let mut step = Step::Quiet;
        if self.cusum > s.cusum_h && self.alarm_at.is_none() {
            self.alarm_at = Some(at);
            step = Step::Alarm;
        }
        if self.cusum == 0.0 {
            self.rising_since = None;
            if self.alarm_at.take().is_some() {
                step = Step::Cleared;
            }
        }
        if self.alarm_at.is_none() && self.cusum < s.cusum_h / 2.0 {
            // Not suspect: the baseline follows slow, harmless change
            // (seasons, occupancy) with an exponentially weighted mean. It
            // takes every such bucket, high or low (learning only from the
            // low ones would pull it down and make the next high day look
            // like a change), clipped to two spreads so one odd day moves it
            // little.
            let a = s.ewma_alpha;
            let d = (x - self.mean).clamp(-2.0 * sigma, 2.0 * sigma);
            self.mean += a * d;
            self.var = (1.0 - a) * (self.var + a * d * d);
        }
        step
    }

    /// Where it stands.
    #[must_use]
    pub fn direction(&self, worse: Worse, floor: f64, s: &Settings) -> Direction {
        if self.n < s.warmup || self.last.is_none() {
            return Direction::Learning;
        }
        if self.alarm_at.is_some() {
            return Direction::Degrading;
        }
        if self.cusum >= s.cusum_h / 2.0 {
            return Direction::Drifting;
        }
        let sign = match worse {
            Worse::Up => 1.0,
            Worse::Down => -1.0,
        };
        match self.last {
            Some((x, _)) if sign * (x - self.mean) < -self.sigma(s, floor) => Direction::Improving,
            _ => Direction::Steady,
        }
    }
}
