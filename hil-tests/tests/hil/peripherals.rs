//! The firmware's own class glue (`firmware::io`) and drivers over the
//! simulated peripherals: contacts debounce, the AS5600 driver reads an
//! angle over "I²C" and the speed estimator turns it into car speed, the
//! MCP3208 driver reads volts over "SPI" that the firmware converts back
//! into the physics, relays follow the logic, and electrical faults (a
//! missing magnet, a cut loop, a converter off the bus) reach the firmware
//! as the faults they are.

use firmware::charger::{ChargerConfig, ChargerNode};
use firmware::drivers::mcp3208::Mcp3208;
use firmware::elevator::{ElevatorConfig, ElevatorNode};
use firmware::firepump::{FirepumpConfig, FirepumpNode};
use firmware::hal::Millis;
use firmware::io::{ChargerIo, ChargerWiring, ClassIo, ElevatorIo, FirepumpIo, FirepumpWiring, LatchStore, VREF};
use sim::peripherals::{SimAs5600, SimInput, SimMcp3208, SimOutput};
use sim::wiring::{divider_volts, loop_volts, ntc_volts, shunt_volts};

const METRES_PER_TURN: f32 = std::f32::consts::PI * 0.3;

fn inputs() -> [SimInput; 8] {
    std::array::from_fn(|_| SimInput::new(true))
}

#[test]
fn the_elevator_glue_reads_debounced_contacts_and_speed_from_the_sheave() {
    let pins = inputs();
    let sensor = SimAs5600::new();
    let mut io = ElevatorIo::new(pins.clone(), sensor.clone(), METRES_PER_TURN, false);
    // Doors closed (contact 0) and in the zone (1); the car moves up at
    // 1.5 m/s: the sheave turns 1.5 / (π·0.3) turns a second.
    pins[0].contact(true);
    pins[1].contact(true);
    let mut turns = 0.0f64;
    for t in (0..=200).step_by(10) {
        sensor.set_turns(turns);
        io.tick(Millis(t));
        turns += 1.5 / f64::from(METRES_PER_TURN) * 0.01;
    }
    let i = io.inputs(Millis(200));
    assert!(i.door_closed && i.door_zone && !i.occupied);
    let speed = i.speed_mps.unwrap();
    assert!((speed - 1.5).abs() < 0.02, "{speed}");
    // A contact that bounces for less than the debounce time is ignored.
    pins[2].contact(true);
    io.tick(Millis(210));
    pins[2].contact(false);
    io.tick(Millis(220));
    assert!(!io.inputs(Millis(220)).occupied);
    // The magnet gone: no speed, not a wrong one.
    sensor.magnet.set(false);
    io.tick(Millis(230));
    assert_eq!(io.inputs(Millis(230)).speed_mps, None);
    // Off the bus: the same.
    sensor.magnet.set(true);
    sensor.present.set(false);
    io.tick(Millis(240));
    assert_eq!(io.inputs(Millis(240)).speed_mps, None);
    let _ = ElevatorNode::new(ElevatorConfig::default());
}

#[test]
fn the_fire_pump_glue_reads_pressures_back_and_drives_the_test_output() {
    let w = FirepumpWiring::REFERENCE;
    let adc = SimMcp3208::new(VREF);
    adc.set(0, loop_volts(&w.outlet, Some(0.65)));
    adc.set(1, loop_volts(&w.network, Some(0.35)));
    adc.set(2, loop_volts(&w.tank, Some(2.9)));
    let out = SimOutput::new();
    let mut io = FirepumpIo::new(inputs(), Mcp3208::new(adc.clone(), VREF), w, out.clone()).unwrap();
    let i = io.inputs(Millis(0));
    let near = |a: Option<f32>, b: f32| (a.unwrap() - b).abs() < 0.01;
    assert!(near(i.outlet_pressure_mpa, 0.65), "{i:?}");
    assert!(near(i.network_pressure_mpa, 0.35), "{i:?}");
    assert!(near(i.tank_level_m, 2.9), "{i:?}");
    // A cut loop is a fault (no value), not zero pressure.
    adc.set(1, loop_volts(&w.network, None));
    assert_eq!(io.inputs(Millis(0)).network_pressure_mpa, None);
    // The converter off the bus: every transducer reads as missing.
    adc.present.set(false);
    let i = io.inputs(Millis(0));
    assert_eq!((i.outlet_pressure_mpa, i.tank_level_m), (None, None));
    // The test output follows the logic (off at rest).
    io.apply(&FirepumpNode::new(FirepumpConfig::default()));
    assert!(!out.level.get());
}

#[derive(Clone, Default)]
struct Latches(std::rc::Rc<std::cell::Cell<u64>>);

impl LatchStore for Latches {
    fn store(&mut self, latches: u64) {
        self.0.set(latches);
    }
}

#[test]
fn the_charger_glue_reads_ports_and_bay_and_switches_relays() {
    let w = ChargerWiring::REFERENCE;
    let adcs: [SimMcp3208; 3] = std::array::from_fn(|_| SimMcp3208::new(VREF));
    adcs[0].set(2, shunt_volts(&w.current, 3.8));
    adcs[1].set(2, ntc_volts(&w.ntc, 42.0));
    adcs[2].set(0, loop_volts(&w.leakage, Some(12.0)));
    adcs[2].set(1, divider_volts(&w.mains, 221.0));
    adcs[2].set(2, ntc_volts(&w.ntc, 25.0));
    let relays: Vec<SimOutput> = (0..8).map(|_| SimOutput::new()).collect();
    let smoke = SimInput::new(true);
    let latches = Latches::default();
    let mut io = ChargerIo::new(
        smoke.clone(),
        adcs.clone().map(|a| Mcp3208::new(a, VREF)),
        w,
        relays.clone(),
        latches.clone(),
    )
    .unwrap();
    let i = io.inputs(Millis(0));
    let near = |a: Option<f32>, b: f32, tol: f32| (a.unwrap() - b).abs() < tol;
    assert!(near(i.ports[2].current_a, 3.8, 0.01), "{:?}", i.ports[2]);
    assert!(near(i.ports[2].temp_c, 42.0, 0.2), "{:?}", i.ports[2]);
    assert!(near(i.leakage_ma, 12.0, 0.05), "{i:?}");
    assert!(near(i.mains_voltage_v, 221.0, 0.2), "{i:?}");
    assert!(near(i.ambient_temp_c, 25.0, 0.2), "{i:?}");
    // Relays are off until the logic powers a port.
    assert!(relays.iter().all(|r| !r.level.get()));
    io.apply(&ChargerNode::new(ChargerConfig::default(), 8));
    assert_eq!(latches.0.get(), 0);
    // Smoke: debounced like every contact.
    smoke.contact(true);
    for t in (0..=60).step_by(10) {
        io.tick(Millis(t));
    }
    assert!(io.inputs(Millis(60)).smoke);
}
