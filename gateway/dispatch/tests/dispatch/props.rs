//! Properties over random histories: a restart (through JSON) at any point
//! changes nothing that follows, there is never a second open order for a
//! fault, and every deadline escalates at most once.

use std::collections::BTreeSet;

use dispatch::{Actor, Desk, Out, StepKind};
use proptest::prelude::*;

use crate::support::{MIN, T0, alert, close, desk, open, restart};

#[derive(Clone, Debug)]
enum Op {
    Open(u8, u8),
    Close(u8),
    Step(u8, u8),
    Wait(u16),
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..6u8, 0..3u8).prop_map(|(a, d)| Op::Open(a, d)),
        (0..6u8).prop_map(Op::Close),
        (1..6u8, 0..4u8).prop_map(|(o, s)| Op::Step(o, s)),
        (1..200u16).prop_map(Op::Wait),
        Just(Op::Restart),
    ]
}

fn run(ops: &[Op], restarts: bool) -> (Vec<String>, Desk) {
    let mut d = desk();
    let mut now = T0;
    let mut log = Vec::new();
    let codes = ["trapped", "door_close_fault", "overspeed"];
    for o in ops {
        let mut out = Vec::new();
        match o {
            Op::Open(a, dev) => {
                let al = alert(
                    u64::from(*a),
                    "elevator",
                    &format!("EL-{dev}"),
                    codes[usize::from(*a) % 3],
                    now,
                );
                d.intent(now, &open(&al), Vec::new(), &mut out);
            }
            Op::Close(a) => {
                let al = alert(u64::from(*a), "elevator", "EL-0", "trapped", now);
                d.intent(now, &close(&al, now), Vec::new(), &mut out);
            }
            Op::Step(id, s) => {
                let step = [
                    StepKind::Respond,
                    StepKind::Arrive,
                    StepKind::Complete,
                    StepKind::FalseAlarm,
                ][usize::from(*s)];
                let who = Actor {
                    name: "admin".into(),
                    contractor: None,
                };
                let r = d.step(now, u64::from(*id), step, &who, None, &mut out);
                log.push(format!("{r:?}"));
            }
            Op::Wait(m) => {
                now += i64::from(*m) * MIN;
                d.tick(now, &mut out);
            }
            Op::Restart => {
                if restarts {
                    d = restart(&d);
                }
            }
        }
        log.extend(out.iter().map(|o| serde_json::to_string(o).expect("json")));
        // Never two open orders of one fault.
        let keys: Vec<_> = d.open().map(|o| (o.device.clone(), o.code.clone())).collect();
        let unique: BTreeSet<_> = keys.iter().collect();
        assert_eq!(keys.len(), unique.len(), "{keys:?}");
        // Each deadline escalates at most once.
        for o in d.open() {
            let missed: Vec<_> = o.escalations.iter().map(|e| e.missed).collect();
            let unique: BTreeSet<_> = missed.iter().collect();
            assert_eq!(missed.len(), unique.len(), "{missed:?}");
        }
        let _ = out.iter().filter(|o| matches!(o, Out::Tell(_))).count();
    }
    (log, d)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn restarts_change_nothing(ops in proptest::collection::vec(op(), 1..60)) {
        let (with, a) = run(&ops, true);
        let (without, b) = run(&ops, false);
        prop_assert_eq!(with, without);
        prop_assert_eq!(a.open().cloned().collect::<Vec<_>>(), b.open().cloned().collect::<Vec<_>>());
    }
}
