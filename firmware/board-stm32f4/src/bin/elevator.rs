//! The elevator node: eight contacts (IN1–IN8) and the AS5600 on the
//! governor sheave (I2C1). No outputs: an elevator node only watches.
#![no_std]
#![no_main]

use board_stm32f4::board::{I2c1, In};
use board_stm32f4::{Board, ClassIo, DEBOUNCE_MS, node_info, run};
use cortex_m_rt::entry;
use firmware::drivers::as5600::{As5600, SpeedEstimator};
use firmware::drivers::input::DebouncedInput;
use firmware::elevator::{ElevatorConfig, ElevatorInputs, ElevatorNode};
use firmware::hal::Millis;
use firmware::node::Node;
use static_cell::StaticCell;

/// Rope travel per sheave turn: a 300 mm governor sheave.
const METRES_PER_TURN: f32 = core::f32::consts::PI * 0.3;
/// Whether the angle increases when the car goes down (set per installation).
const INVERTED: bool = false;

static NODE: StaticCell<Node<ElevatorNode>> = StaticCell::new();

/// IN1–IN8 in order: door closed, door zone, occupied, alarm button, e-bike
/// detector, power present, top final limit, bottom final limit.
struct Elevator {
    contacts: [DebouncedInput<In>; 8],
    sensor: As5600<I2c1>,
    estimator: SpeedEstimator,
    /// Travel and time since the last step, from the 10 ms angle samples.
    travel_m: f32,
    window_ms: u64,
    last_angle_at: Option<Millis>,
    /// Whether every angle read since the last step succeeded.
    sensor_ok: bool,
}

impl ClassIo for Elevator {
    type Logic = ElevatorNode;

    fn tick(&mut self, now: Millis) {
        for contact in &mut self.contacts {
            // GPIO reads cannot fail on this chip (`Infallible`).
            let _ = contact.sample(now);
        }
        // The sheave must be sampled faster than half a turn: every 10 ms is
        // good to 47 m/s. Speed over the step is the travel summed here.
        if let Ok(angle) = self.sensor.raw_angle() {
            if let (Some(speed), Some(t0)) = (self.estimator.update(angle, now), self.last_angle_at) {
                let dt = now.since(t0);
                #[allow(clippy::cast_precision_loss)]
                let dt_s = dt as f32 / 1000.0;
                self.travel_m += speed * dt_s;
                self.window_ms += dt;
            }
            self.last_angle_at = Some(now);
        } else {
            // No magnet or a bus error: continuity is lost.
            self.sensor_ok = false;
            self.estimator = SpeedEstimator::new(METRES_PER_TURN, INVERTED);
            self.last_angle_at = None;
        }
    }

    fn inputs(&mut self, _now: Millis) -> ElevatorInputs {
        #[allow(clippy::cast_precision_loss)]
        let speed_mps =
            (self.sensor_ok && self.window_ms > 0).then(|| self.travel_m / (self.window_ms as f32 / 1000.0));
        self.travel_m = 0.0;
        self.window_ms = 0;
        self.sensor_ok = true;
        let [
            door_closed,
            door_zone,
            occupied,
            alarm_button,
            ebike,
            power_ok,
            top_limit,
            bottom_limit,
        ] = self.contacts.each_ref().map(DebouncedInput::state);
        ElevatorInputs {
            door_closed,
            door_zone,
            occupied,
            alarm_button,
            ebike,
            power_ok,
            top_limit,
            bottom_limit,
            speed_mps,
        }
    }

    fn apply(&mut self, _logic: &ElevatorNode) {}
}

#[entry]
fn main() -> ! {
    let (board, mut parts) = Board::take();
    let i2c = parts.i2c.start(&mut parts.rcc);
    let io = Elevator {
        contacts: parts.inputs.map(|pin| DebouncedInput::new(pin, true, DEBOUNCE_MS)),
        sensor: As5600::new(i2c),
        estimator: SpeedEstimator::new(METRES_PER_TURN, INVERTED),
        travel_m: 0.0,
        window_ms: 0,
        last_angle_at: None,
        sensor_ok: true,
    };
    let logic = ElevatorNode::new(ElevatorConfig::default());
    let node = NODE.init(Node::new(logic, node_info("FM-EL-F411")));
    run(board, node, io)
}
