//! The plants: what the sensors of a node would see, from physics. Each model
//! is pure and deterministic: stepped by `step(dt_ms)` on a virtual clock,
//! seeded for its randomness, faults injected and cleared on demand. None
//! knows about volts or buses: the simulated peripherals turn what a model
//! reports into what a pin, an ADC or an angle sensor would read.

pub mod charger;
pub mod elevator;
pub mod firewater;
