//! The fire water plant on its own, on a virtual clock: normal operation stays
//! clear of every threshold the gateway judges with, and each fault shows the
//! signature the node and the gateway look for. Where it proves the point, the
//! real `FirepumpNode` is fed the plant's sensors directly (no peripherals) to
//! show the plant crosses its thresholds.

use firmware::firepump::{FirepumpConfig, FirepumpInputs, FirepumpNode};
use firmware::hal::Millis;
use proptest::prelude::*;
use protocol::EventCode;
use sim::physics::firewater::{FireWaterConfig, FireWaterFault as F, FireWaterSensors, FireWaterSim};

/// The node's and the gateway's thresholds (`gateway/alerting/packs/firepump.toml`).
const LOW_PRESSURE_MPA: f32 = 0.07;
const FAIL_TO_START_MS: u32 = 120_000;
const LOW_TANK_M: f32 = 1.0;

const DT: u32 = 100;

fn sim() -> FireWaterSim {
    FireWaterSim::new(FireWaterConfig::default(), 7)
}

/// Steps `ms` of virtual time in 100 ms steps, handing `f` the elapsed time and
/// each sample.
fn run(sim: &mut FireWaterSim, ms: u32, mut f: impl FnMut(u32, &FireWaterSensors)) {
    let mut t = 0;
    while t < ms {
        sim.step(DT);
        t += DT;
        f(t, &sim.sensors());
    }
}

/// Steps in 100 ms steps until `pred` holds, for at most `ms`: the elapsed
/// time then.
fn first(sim: &mut FireWaterSim, ms: u32, mut pred: impl FnMut(&FireWaterSensors) -> bool) -> Option<u32> {
    let mut t = 0;
    while t < ms {
        sim.step(DT);
        t += DT;
        if pred(&sim.sensors()) {
            return Some(t);
        }
    }
    None
}

fn inputs(s: &FireWaterSensors) -> FirepumpInputs {
    FirepumpInputs {
        pump_running: s.pump_running,
        pump_fault: s.pump_fault,
        auto_mode: s.auto_mode,
        start_signal: s.start_signal,
        jockey_running: s.jockey_running,
        main_power_ok: s.main_power_ok,
        backup_power_ok: s.backup_power_ok,
        cabinet_self_test: s.cabinet_self_test,
        outlet_pressure_mpa: Some(s.outlet_pressure_mpa),
        network_pressure_mpa: Some(s.network_pressure_mpa),
        tank_level_m: Some(s.tank_level_m),
    }
}

/// The plant and the real node, the node's test output wired to the cabinet's
/// remote-test input.
struct Rig {
    sim: FireWaterSim,
    node: FirepumpNode,
    now: u64,
}

impl Rig {
    fn new() -> Self {
        Rig {
            sim: sim(),
            node: FirepumpNode::new(FirepumpConfig::default()),
            now: 0,
        }
    }

    fn run(&mut self, ms: u32) {
        self.run_with(ms, |_| {});
    }

    /// Steps `ms` in 100 ms steps, the node sampling every step, handing `f`
    /// each sample.
    fn run_with(&mut self, ms: u32, mut f: impl FnMut(&FireWaterSensors)) {
        for _ in 0..ms / DT {
            self.sim.set_test_input(self.node.test_output());
            self.sim.step(DT);
            self.now += u64::from(DT);
            let s = self.sim.sensors();
            let _ = self.node.step(Millis(self.now), &inputs(&s));
            f(&s);
        }
    }
}

#[test]
fn new_plant_is_at_rest() {
    let s = sim().sensors();
    let c = FireWaterConfig::default();
    assert!(!s.pump_running && !s.pump_fault && !s.start_signal && !s.cabinet_self_test);
    assert!(s.auto_mode && s.main_power_ok && s.backup_power_ok);
    assert!((s.network_pressure_mpa - c.static_pressure_mpa).abs() <= 0.006);
    assert!(s.outlet_pressure_mpa < 0.1, "stopped pump: suction head only");
    assert!((s.tank_level_m - c.tank_capacity_m).abs() <= 0.006);
}

/// `Demand`: the pressure collapses through the main pump's start pressure, the
/// start signal follows at once, the pump runs after the star-delta delay, the
/// pressure recovers, and the fire start stays latched while the pump runs.
#[test]
fn demand_starts_the_main_pump_and_pressure_recovers() {
    let c = FireWaterConfig::default();
    let mut sim = sim();
    sim.inject(F::Demand);
    let below = first(&mut sim, 30_000, |s| s.network_pressure_mpa < c.main_start_mpa).expect("pressure collapses");
    assert!(below <= 10_000, "5 L/s against a 1 L/s jockey: {below} ms");
    // The switch sees the true pressure, the transducer adds ±0.005 MPa noise.
    let start = first(&mut sim, 1000, |s| s.start_signal);
    assert!(start.is_some(), "the pressure switch starts the pump");
    let running = first(&mut sim, c.main_start_delay_ms + 1000, |s| s.pump_running).expect("pump runs");
    assert!(
        running + 300 >= c.main_start_delay_ms,
        "star-delta delay respected: {running} ms"
    );
    let recovered = first(&mut sim, 10_000, |s| s.network_pressure_mpa > c.main_start_mpa).expect("recovers");
    assert!(recovered <= 5000, "{recovered} ms");
    // Running on: the start is latched, the pressure settles where the pump's
    // curve meets the demand (about 0.59 MPa), the jockey rests.
    run(&mut sim, 10_000, |_, s| {
        assert!(s.pump_running && s.network_pressure_mpa > c.main_start_mpa);
    });
    run(&mut sim, 300_000, |_, s| {
        assert!(s.pump_running && s.start_signal);
        assert!(
            s.network_pressure_mpa > c.main_start_mpa + 0.2,
            "{}",
            s.network_pressure_mpa
        );
        assert!(s.outlet_pressure_mpa > c.main_start_mpa + 0.2);
    });
    assert!(!sim.sensors().jockey_running);
    // The operator's stop: clearing the demand resets the latch.
    sim.clear(F::Demand);
    sim.step(DT);
    let s = sim.sensors();
    assert!(!s.pump_running && !s.start_signal);
}

/// `PumpFailToStart` + `Demand`: the start signal stands, the pump never runs for
/// well over the 2 min of GB 50974, the network stays below 0.07 MPa; the node
/// raises `pump_fail_to_start` and `low_pressure`. Once the starter is fixed,
/// the still-latched start runs the pump and the pressure recovers.
#[test]
fn pump_fail_to_start_with_demand() {
    let c = FireWaterConfig::default();
    let mut rig = Rig::new();
    rig.sim.inject(F::PumpFailToStart);
    rig.sim.inject(F::Demand);
    rig.run(20_000);
    assert!(rig.sim.sensors().start_signal);
    rig.run_with(FAIL_TO_START_MS + 30_000, |s| {
        assert!(s.start_signal && !s.pump_running && !s.pump_fault);
        assert!(s.network_pressure_mpa < LOW_PRESSURE_MPA, "{}", s.network_pressure_mpa);
    });
    assert!(rig.node.is_active(EventCode::PumpFailToStart));
    assert!(rig.node.is_active(EventCode::LowPressure));
    assert!(!rig.node.is_active(EventCode::PumpFault));

    rig.sim.clear(F::PumpFailToStart);
    let running = first(&mut rig.sim, c.main_start_delay_ms + 1000, |s| s.pump_running);
    assert!(running.is_some(), "the latched start runs the pump once it can");
    let up = first(&mut rig.sim, 10_000, |s| s.network_pressure_mpa > c.main_start_mpa);
    assert!(up.is_some());
}

/// `PumpFailToStart` + `FireAlarm`: the fire alarm's start signal stands, the pump
/// never runs; the jockey alone holds the network (no demand).
#[test]
fn pump_fail_to_start_on_fire_alarm() {
    let c = FireWaterConfig::default();
    let mut sim = sim();
    sim.inject(F::PumpFailToStart);
    sim.inject(F::FireAlarm);
    run(&mut sim, FAIL_TO_START_MS + 30_000, |_, s| {
        assert!(s.start_signal && !s.pump_running);
        assert!(s.network_pressure_mpa >= c.jockey_on_mpa - 0.03);
    });
}

/// `FireAlarm` alone: the start signal at once, the pump after the delay, and a
/// network with no demand pumped up towards the pump's head.
#[test]
fn fire_alarm_starts_the_main_pump() {
    let c = FireWaterConfig::default();
    let mut sim = sim();
    sim.inject(F::FireAlarm);
    sim.step(DT);
    assert!(sim.sensors().start_signal);
    let running = first(&mut sim, c.main_start_delay_ms + 1000, |s| s.pump_running).expect("runs");
    assert!(running + 300 >= c.main_start_delay_ms);
    run(&mut sim, 60_000, |_, _| {});
    let s = sim.sensors();
    assert!(s.network_pressure_mpa > c.jockey_off_mpa + 0.1 && s.network_pressure_mpa < c.main_head_mpa + 0.01);
    sim.clear(F::FireAlarm);
    sim.step(DT);
    assert!(!sim.sensors().pump_running && !sim.sensors().start_signal);
}

/// `ClosedValve` + `Demand`: the pump runs and its outlet builds to its head, but
/// the network stays collapsed.
#[test]
fn closed_valve_pump_runs_network_stays_low() {
    let c = FireWaterConfig::default();
    let mut sim = sim();
    sim.inject(F::ClosedValve);
    sim.inject(F::Demand);
    run(&mut sim, 30_000, |_, _| {});
    run(&mut sim, 120_000, |_, s| {
        assert!(s.pump_running && s.start_signal);
        assert!(
            s.outlet_pressure_mpa >= c.main_head_mpa - 0.01,
            "{}",
            s.outlet_pressure_mpa
        );
        assert!(s.network_pressure_mpa < LOW_PRESSURE_MPA, "{}", s.network_pressure_mpa);
    });
    // Opening the valve lets the running pump feed the network.
    sim.clear(F::ClosedValve);
    assert!(first(&mut sim, 5000, |s| s.network_pressure_mpa > c.main_start_mpa).is_some());
}

/// `TankDraining`: the level falls steadily, below a third of capacity (and the
/// gateway's 1.0 m) between 50 and 60 min, as documented; the node raises
/// `low_tank_level`.
#[test]
fn tank_draining_falls_below_a_third_within_the_hour() {
    let c = FireWaterConfig::default();
    let mut rig = Rig::new();
    rig.sim.inject(F::TankDraining);
    let mut last = rig.sim.sensors().tank_level_m;
    for _ in 0..50 {
        rig.run(60_000);
        let l = rig.sim.sensors().tank_level_m;
        assert!(l < last, "falls steadily: {l} after {last}");
        last = l;
    }
    assert!(last > c.tank_capacity_m / 3.0, "not before 50 min: {last}");
    rig.run(10 * 60_000);
    let l = rig.sim.sensors().tank_level_m;
    assert!(l < c.tank_capacity_m / 3.0 && l < LOW_TANK_M, "{l} after 60 min");
    assert!(rig.node.is_active(EventCode::LowTankLevel));
    // Nothing else moved: no pump call, pressure held.
    let s = rig.sim.sensors();
    assert!(!s.pump_running && !s.start_signal);
}

/// One supply lost: its contact drops, the transfer switch runs the pump from
/// the other. Both lost: the pump (and the jockey) cannot run; a supply back
/// runs the latched start.
#[test]
fn power_faults() {
    let c = FireWaterConfig::default();
    for lost in [F::MainPowerFault, F::BackupPowerFault] {
        let mut sim = sim();
        sim.inject(lost);
        sim.step(DT);
        let s = sim.sensors();
        assert_eq!(s.main_power_ok, lost != F::MainPowerFault);
        assert_eq!(s.backup_power_ok, lost != F::BackupPowerFault);
        sim.inject(F::Demand);
        assert!(
            first(&mut sim, 30_000, |s| s.pump_running).is_some(),
            "{lost:?}: runs on the other supply"
        );
    }

    let mut rig = Rig::new();
    rig.sim.inject(F::MainPowerFault);
    rig.sim.inject(F::BackupPowerFault);
    rig.sim.inject(F::Demand);
    rig.run(FAIL_TO_START_MS + 30_000);
    let s = rig.sim.sensors();
    assert!(!s.main_power_ok && !s.backup_power_ok);
    assert!(s.start_signal && !s.pump_running && !s.jockey_running);
    assert!(rig.node.is_active(EventCode::MainPowerFault));
    assert!(rig.node.is_active(EventCode::BackupPowerFault));
    assert!(rig.node.is_active(EventCode::PumpFailToStart));

    rig.sim.clear(F::BackupPowerFault);
    let running = first(&mut rig.sim, c.main_start_delay_ms + 1000, |s| s.pump_running);
    assert!(running.is_some(), "the backup supply runs the latched start");

    // Losing both supplies stops a running pump.
    rig.sim.inject(F::BackupPowerFault);
    rig.sim.step(DT);
    assert!(!rig.sim.sensors().pump_running);
}

/// `NotInAuto`: the auto contact drops; a demand collapses the pressure and the
/// start signal stands, but the pump does not start until auto is restored.
#[test]
fn not_in_auto_blocks_the_start() {
    let c = FireWaterConfig::default();
    let mut rig = Rig::new();
    rig.sim.inject(F::NotInAuto);
    rig.sim.step(DT);
    assert!(!rig.sim.sensors().auto_mode);
    rig.run(70_000);
    assert!(rig.node.is_active(EventCode::NotInAuto));
    // The jockey has its own controller: the network is held meanwhile.
    assert!(rig.sim.sensors().network_pressure_mpa >= c.jockey_on_mpa - 0.03);
    rig.sim.inject(F::Demand);
    rig.run_with(FAIL_TO_START_MS + 30_000, |s| assert!(!s.pump_running));
    assert!(rig.sim.sensors().start_signal);
    assert!(rig.sim.sensors().network_pressure_mpa < LOW_PRESSURE_MPA);
    rig.sim.clear(F::NotInAuto);
    assert!(first(&mut rig.sim, c.main_start_delay_ms + 1000, |s| s.pump_running).is_some());
}

/// `PumpFault`: the fault contact, a pump that cannot start, and a running pump
/// tripped.
#[test]
fn pump_fault_blocks_and_trips() {
    let c = FireWaterConfig::default();
    let mut rig = Rig::new();
    rig.sim.inject(F::PumpFault);
    rig.run(DT);
    assert!(rig.sim.sensors().pump_fault);
    assert!(rig.node.is_active(EventCode::PumpFault));
    rig.sim.inject(F::Demand);
    rig.run_with(60_000, |s| assert!(!s.pump_running && s.pump_fault));

    let mut sim = sim();
    sim.inject(F::Demand);
    assert!(first(&mut sim, 30_000, |s| s.pump_running).is_some());
    sim.inject(F::PumpFault);
    sim.step(DT);
    assert!(!sim.sensors().pump_running, "the cabinet trips a running pump");
    sim.clear(F::PumpFault);
    assert!(first(&mut sim, c.main_start_delay_ms + 1000, |s| s.pump_running).is_some());
}

/// The self-test (巡检) through the test input: self-test contact and start
/// signal on, the pump runs against the test line at its head without
/// disturbing the network, and after 60 s everything is back at rest.
#[test]
fn self_test_runs_the_pump_and_returns_to_rest() {
    let c = FireWaterConfig::default();
    let mut sim = sim();
    sim.set_test_input(true);
    sim.step(DT);
    sim.set_test_input(false); // a pulse is enough: the cabinet latches its run
    let s = sim.sensors();
    assert!(s.cabinet_self_test && s.start_signal && !s.pump_running);
    let mut ran = 0;
    let mut max_outlet = 0.0_f32;
    let over = first(&mut sim, 70_000, |s| {
        if s.pump_running {
            ran += DT;
            max_outlet = max_outlet.max(s.outlet_pressure_mpa);
        }
        if s.cabinet_self_test {
            assert!(s.start_signal);
        }
        assert!(s.network_pressure_mpa >= c.jockey_on_mpa - 0.03 && s.network_pressure_mpa <= c.jockey_off_mpa + 0.02);
        !s.cabinet_self_test
    })
    .expect("the run ends");
    assert!((59_000..=61_000).contains(&over), "{over} ms");
    assert!(ran >= 50_000, "the pump ran {ran} ms");
    assert!(max_outlet >= c.main_head_mpa - 0.01, "{max_outlet}");
    let s = sim.sensors();
    assert!(!s.pump_running && !s.start_signal && !s.cabinet_self_test);
    assert!(s.outlet_pressure_mpa < 0.1);
    // At rest again: a further minute changes nothing.
    run(&mut sim, 60_000, |_, s| assert!(!s.pump_running && !s.start_signal));
}

/// With `PumpFailToStart` the self-test still runs its 60 s but the pump never
/// does, and the outlet sees suction head only.
#[test]
fn self_test_with_pump_fail_to_start() {
    let mut sim = sim();
    sim.inject(F::PumpFailToStart);
    sim.set_test_input(true);
    let mut on = 0;
    run(&mut sim, 70_000, |_, s| {
        assert!(!s.pump_running && s.outlet_pressure_mpa < 0.1);
        if s.cabinet_self_test {
            on += DT;
        }
    });
    assert!((59_000..=61_000).contains(&on), "{on} ms");
    // Holding the input does not start another run: it takes a rising edge.
    assert!(!sim.sensors().cabinet_self_test);
}

/// The node's `self_test` command end to end: its test output starts the
/// cabinet's run, and it records a pass; with a pump that fails to start, a
/// failure.
#[test]
fn node_self_test_records_pass_and_fail() {
    for (fail, expected) in [(false, true), (true, false)] {
        let mut rig = Rig::new();
        if fail {
            rig.sim.inject(F::PumpFailToStart);
        }
        rig.run(1000);
        rig.node.start_self_test(Millis(rig.now)).expect("at rest, in auto");
        rig.run(130_000);
        assert_eq!(rig.node.self_tests(), (1, Some(expected)), "fail to start: {fail}");
        assert!(!rig.sim.sensors().cabinet_self_test);
    }
}

/// 24 h without a fault: the jockey alone holds the network above its start
/// pressure (less a margin), cycling a few times an hour; the main pump never
/// starts, the tank stays full, and the node raises nothing.
#[test]
fn normal_day() {
    let c = FireWaterConfig::default();
    let mut sim = sim();
    let mut node = FirepumpNode::new(FirepumpConfig::default());
    let mut starts_per_hour = [0_u32; 24];
    let mut jockey = sim.sensors().jockey_running;
    let mut min_p = f32::MAX;
    let mut t: u64 = 0;
    for _ in 0..(24 * 3600 * 1000 / DT) {
        sim.step(DT);
        t += u64::from(DT);
        let s = sim.sensors();
        if s.jockey_running && !jockey {
            starts_per_hour[usize::try_from(t / 3_600_000).unwrap().min(23)] += 1;
        }
        jockey = s.jockey_running;
        min_p = min_p.min(s.network_pressure_mpa);
        assert!(!s.pump_running && !s.start_signal, "main pump called at {t} ms");
        assert!(s.tank_level_m >= c.tank_capacity_m - 0.02, "tank at {}", s.tank_level_m);
        if t.is_multiple_of(1000) {
            let _ = node.step(Millis(t), &inputs(&s));
        }
    }
    assert!(min_p >= c.jockey_on_mpa - 0.03, "{min_p}");
    assert!(
        starts_per_hour.iter().all(|&n| (2..=8).contains(&n)),
        "{starts_per_hour:?}"
    );
    assert!(node.active_events().is_empty());
}

/// Same seed, same faults, same steps: the same samples; another seed: other
/// noise on the same physics.
#[test]
fn deterministic_with_the_same_seed() {
    let trace = |seed| {
        let mut sim = FireWaterSim::new(FireWaterConfig::default(), seed);
        let mut out = Vec::new();
        sim.inject(F::Demand);
        run(&mut sim, 60_000, |_, s| out.push(*s));
        sim.set_test_input(true);
        sim.clear(F::Demand);
        run(&mut sim, 90_000, |_, s| out.push(*s));
        out
    };
    let a = trace(42);
    assert_eq!(a, trace(42));
    let b = trace(43);
    assert_ne!(a, b);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.pump_running, y.pump_running);
        assert!((x.network_pressure_mpa - y.network_pressure_mpa).abs() <= 0.011);
    }
}

/// A step of any length is the same as many short ones, but for noise.
#[test]
fn long_steps_are_split() {
    let mut a = sim();
    let mut b = sim();
    a.inject(F::Demand);
    b.inject(F::Demand);
    a.step(60_000);
    run(&mut b, 60_000, |_, _| {});
    let (a, b) = (a.sensors(), b.sensors());
    assert_eq!(a.pump_running, b.pump_running);
    assert!((a.network_pressure_mpa - b.network_pressure_mpa).abs() <= 0.011);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever faults come and go, with whatever steps: readings stay
    /// physical, and the pump never runs without a start, in manual, without
    /// a supply or tripped.
    #[test]
    fn readings_stay_physical(
        seed in any::<u64>(),
        ops in proptest::collection::vec((0..F::ALL.len(), any::<bool>(), 1_u32..40, prop_oneof![Just(100_u32), Just(250), Just(1000)]), 1..16),
    ) {
        let c = FireWaterConfig::default();
        let mut sim = FireWaterSim::new(c, seed);
        for (i, on, n, dt) in ops {
            let f = F::ALL[i];
            if on { sim.inject(f) } else { sim.clear(f) }
            prop_assert_eq!(sim.active(f), on);
            sim.set_test_input(n.is_multiple_of(3));
            for _ in 0..n {
                sim.step(dt);
                let s = sim.sensors();
                for p in [s.network_pressure_mpa, s.outlet_pressure_mpa] {
                    prop_assert!(p.is_finite() && (0.0..=c.main_head_mpa + 0.006).contains(&p), "{:?}", s);
                }
                prop_assert!(s.tank_level_m.is_finite() && (0.0..=c.tank_capacity_m + 0.006).contains(&s.tank_level_m));
                if s.pump_running {
                    prop_assert!(s.start_signal && s.auto_mode && !s.pump_fault);
                    prop_assert!(s.main_power_ok || s.backup_power_ok);
                }
            }
        }
    }
}
