//! Sensor conversions and their wiring faults.

use firmware::debounce::{Debouncer, Held};
use firmware::hal::Millis;
use firmware::sensors::{LoopTransducer, Ntc, SensorFault, Shunt};

#[test]
fn loop_transducer_maps_4_to_20_ma_and_flags_broken_loops() {
    let t = LoopTransducer {
        shunt_ohms: 150.0,
        at_4ma: 0.0,
        at_20ma: 1.6,
    };
    assert!((t.convert(0.6).unwrap() - 0.0).abs() < 1e-6); // 4 mA
    assert!((t.convert(1.8).unwrap() - 0.8).abs() < 1e-5); // 12 mA
    assert!((t.convert(3.0).unwrap() - 1.6).abs() < 1e-5); // 20 mA
    assert_eq!(t.convert(0.3), Err(SensorFault::Open)); // 2 mA
    assert_eq!(t.convert(3.3), Err(SensorFault::Short)); // 22 mA
}

#[test]
fn ntc_reads_25_c_at_its_nominal_resistance_and_flags_rails() {
    let ntc = Ntc {
        r25_ohms: 10_000.0,
        beta: 3950.0,
        pullup_ohms: 10_000.0,
        vref: 3.3,
    };
    assert!((ntc.convert(1.65).unwrap() - 25.0).abs() < 0.01);
    // Hotter: lower resistance, lower voltage.
    let hot = ntc.convert(0.5).unwrap();
    assert!(hot > 60.0 && hot < 80.0, "{hot}");
    assert_eq!(ntc.convert(0.0), Err(SensorFault::Short));
    assert_eq!(ntc.convert(3.3), Err(SensorFault::Open));
}

#[test]
fn shunt_converts_and_never_goes_negative() {
    let s = Shunt { ohms: 0.01, gain: 50.0 };
    assert!((s.convert(2.5) - 5.0).abs() < 1e-6);
    assert_eq!(s.convert(-0.1), 0.0);
}

#[test]
fn debouncer_ignores_bounces_shorter_than_its_window() {
    let mut d = Debouncer::new(50, false);
    assert!(!d.update(true, Millis(0)));
    assert!(!d.update(false, Millis(20))); // bounce
    assert!(!d.update(true, Millis(30)));
    assert!(!d.update(true, Millis(79)));
    assert!(d.update(true, Millis(80)));
    assert!(d.update(false, Millis(100)));
    assert!(!d.update(false, Millis(150)));
}

#[test]
fn held_measures_continuous_truth() {
    let mut h = Held::new();
    assert!(!h.update(true, 1000, Millis(0)));
    assert!(!h.update(true, 1000, Millis(999)));
    assert!(h.update(true, 1000, Millis(1000)));
    assert!(!h.update(false, 1000, Millis(1001)));
    assert!(!h.update(true, 1000, Millis(1500)));
    assert_eq!(h.held_ms(Millis(2000)), 500);
}
