//! From physics to volts: the inverse of the firmware's sensor conversions
//! (`firmware::sensors`), with the reference board's scaling
//! (`firmware::io::FirepumpWiring::REFERENCE`, `ChargerWiring::REFERENCE`), so
//! what a simulated transducer puts on a converter's input is what the real
//! one would, and the firmware's own conversion brings the physics back.

use firmware::sensors::{Divider, LoopTransducer, Ntc, Shunt};

/// The volts across a 4–20 mA loop's shunt for `value` (clamped to the
/// loop's 4–20 mA); `None` is an open loop (0 mA: a cut cable), which the
/// firmware reads as a sensor fault.
#[must_use]
pub fn loop_volts(t: &LoopTransducer, value: Option<f32>) -> f32 {
    let Some(value) = value else { return 0.0 };
    let span = t.at_20ma - t.at_4ma;
    let ma = (4.0 + (value - t.at_4ma) / span * 16.0).clamp(4.0, 20.0);
    ma / 1000.0 * t.shunt_ohms
}

/// The divider's volts for an NTC at `temp_c` (β equation, the thermistor to
/// ground under its pull-up).
#[must_use]
pub fn ntc_volts(n: &Ntc, temp_c: f32) -> f32 {
    let t = f64::from(temp_c) + 273.15;
    let r = f64::from(n.r25_ohms) * (f64::from(n.beta) * (1.0 / t - 1.0 / 298.15)).exp();
    #[allow(clippy::cast_possible_truncation)]
    let v = (f64::from(n.vref) * r / (r + f64::from(n.pullup_ohms))) as f32;
    v
}

/// The amplified shunt volts for `amps`.
#[must_use]
pub fn shunt_volts(s: &Shunt, amps: f32) -> f32 {
    (amps * s.ohms * s.gain).max(0.0)
}

/// The divided-down volts for `value`.
#[must_use]
pub fn divider_volts(d: &Divider, value: f32) -> f32 {
    value / d.ratio
}
