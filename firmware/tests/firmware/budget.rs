//! The RAM budget: state plus buffers of one node, as `docs/firmware.md` states.

use firmware::charger::ChargerNode;
use firmware::elevator::ElevatorNode;
use firmware::firepump::FirepumpNode;
use firmware::node::Node;

/// A 12-port charging bay with a 64-message buffer must fit in 16 KiB.
const BUDGET: usize = 16 * 1024;

#[test]
fn every_node_fits_the_ram_budget() {
    let sizes = [
        ("elevator", size_of::<Node<ElevatorNode>>()),
        ("firepump", size_of::<Node<FirepumpNode>>()),
        ("charger (12 ports)", size_of::<Node<ChargerNode>>()),
    ];
    for (name, size) in sizes {
        println!("{name:<20} {size:>6} B (budget {BUDGET})");
        assert!(size <= BUDGET, "{name}: {size} B over the {BUDGET} B budget");
    }
    println!(
        "outbox alone          {:>6} B",
        size_of::<firmware::outbox::Outbox<8192, 64>>()
    );
}
