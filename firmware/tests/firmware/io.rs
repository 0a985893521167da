//! The class glue's schedule (`firmware::io`): ticks every 10 ms, the first
//! step only after the contacts have settled, steps every 100 ms, and no
//! burst of catch-up steps after the loop fell behind. (The glue itself runs
//! in the HIL simulation against simulated peripherals.)

use firmware::elevator::{ElevatorConfig, ElevatorInputs, ElevatorNode};
use firmware::hal::Millis;
use firmware::io::{ClassIo, DEBOUNCE_MS, STEP_MS, Schedule, TICK_MS};
use firmware::node::{Node, NodeInfo};
use protocol::Format;

#[derive(Default)]
struct Counting {
    ticks: Vec<u64>,
    steps: Vec<u64>,
    applied: usize,
}

impl ClassIo for Counting {
    type Logic = ElevatorNode;

    fn tick(&mut self, now: Millis) {
        self.ticks.push(now.0);
    }

    fn inputs(&mut self, now: Millis) -> ElevatorInputs {
        self.steps.push(now.0);
        ElevatorInputs::default()
    }

    fn apply(&mut self, _logic: &ElevatorNode) {
        self.applied += 1;
    }
}

fn node() -> Node<ElevatorNode> {
    let info = NodeInfo {
        fw: "1".try_into().unwrap(),
        model: "m".try_into().unwrap(),
        cfg: "c".try_into().unwrap(),
        interval_s: 10,
        format: Format::Json,
    };
    Node::new(ElevatorNode::new(ElevatorConfig::default()), info)
}

#[test]
fn ticks_every_10_ms_and_steps_every_100_after_the_contacts_settled() {
    let (mut io, mut node) = (Counting::default(), node());
    let mut s = Schedule::new(Millis(1000));
    for t in 1000..=1350 {
        s.poll(Millis(t), &mut io, &mut node);
    }
    assert_eq!(io.ticks.first(), Some(&1000));
    assert_eq!(io.ticks.len(), 36);
    assert!(io.ticks.windows(2).all(|w| w[1] - w[0] == TICK_MS));
    // The first step comes after more than the debounce time of ticks.
    assert_eq!(io.steps, [1100, 1200, 1300]);
    assert!(1100 - 1000 > u64::from(DEBOUNCE_MS));
    assert_eq!(io.applied, 3);
    assert!(s.stepped());
}

#[test]
fn a_loop_that_fell_behind_steps_once_not_in_a_burst() {
    let (mut io, mut node) = (Counting::default(), node());
    let mut s = Schedule::new(Millis(0));
    assert!(!s.poll(Millis(0), &mut io, &mut node));
    assert!(!s.stepped(), "no step before the contacts settled");
    // A 750 ms Modbus reply held the loop.
    assert!(s.poll(Millis(750), &mut io, &mut node));
    assert!(!s.poll(Millis(751), &mut io, &mut node));
    assert!(s.poll(Millis(750 + STEP_MS), &mut io, &mut node));
    assert_eq!(io.steps, [750, 850]);
}
