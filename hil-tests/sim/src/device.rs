//! One simulated device of a compound, whatever its class: a plant wired to
//! the real firmware node ([`crate::rig`]), described by a [`DeviceSpec`]
//! (what a scenario file or the demo declares) and driven by [`Action`]s
//! (a passenger boarding, a fault injected, a battery plugged in).
//!
//! The scenario runner and `gateway-demo` both build their compounds from
//! these, so a fault behaves the same in a lab's CI run and on a newcomer's
//! console.
//!
//! Every firmware node is provisioned as the gateway would provision it: an
//! identity and a command key ([`DeviceSpec::cmd_key`]), so it carries out
//! only signed commands and its Modbus slave only signed writes. The device
//! also plays the gateway's side of commands ([`Action::Command`]): it signs
//! with the same key and counter rules as `protocol::cmdauth` prescribes, and
//! can forge, replay or let a command expire on purpose.

use std::collections::BTreeMap;

use firmware::charger::ChargerConfig;
use firmware::config::Credentials;
use firmware::elevator::ElevatorConfig as NodeElevatorConfig;
use firmware::firepump::FirepumpConfig;
use firmware::hal::Millis;
use firmware::io::ClassIo as _;
use firmware::modbus::{MAX_ADU_LEN, Slave, Transport};
use firmware::node::{ClassLogic, Node, Outgoing};
use protocol::cmdauth::{self, CommandKey, Recipient};
use protocol::{Cmd, CmdArgs, DeviceClass, EncodeError, Format, Kind, Message, Named, Timestamp, V1};
use serde::Deserialize;

use crate::modbus::serve;
use crate::physics::charger::{Battery, ChargerFault, ChargerSim, ChargerSimConfig};
use crate::physics::elevator::{ElevatorConfig, ElevatorFault, ElevatorSim};
use crate::physics::firewater::{FireWaterConfig, FireWaterFault, FireWaterSim};
use crate::rig::{self, ChargerRig, ElevatorRig, FirepumpRig, SimLatches};
use crate::sensor::{BirthFacts, Reading, SensorNode};
use protocol::metric::{Metric, Value};

/// A device as a scenario or the demo declares it.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeviceSpec {
    /// The compound (topic segment).
    pub site: String,
    /// The device id (topic segment), e.g. `EL-3`.
    pub id: String,
    /// What it is.
    pub class: DeviceClass,
    /// The node's payload encoding on MQTT.
    #[serde(default = "default_format", deserialize_with = "format")]
    pub format: Format,
    /// The plant's seed: traffic and sensor noise repeat run after run.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Elevator: floors served.
    #[serde(default = "default_floors")]
    pub floors: u8,
    /// Elevator: passengers come and go on their own (a seeded day of
    /// residential traffic), besides the scenario's own calls.
    #[serde(default)]
    pub traffic: bool,
    /// Elevator: the node has a door-hold output wired to the controller's
    /// door-open-hold input, so it carries out `hold_doors`; without it the
    /// node refuses them (`no door-hold output`).
    #[serde(default)]
    pub door_hold: bool,
    /// Charging bay: number of ports.
    #[serde(default = "default_ports")]
    pub ports: u8,
    /// The node's Modbus unit id.
    #[serde(default = "default_unit")]
    pub unit: u8,
    /// What sits on the equipment: our firmware node (default), or a plain
    /// sensor that only samples the controller ([`crate::sensor`]).
    #[serde(default)]
    pub node: NodeKind,
    /// The node's command key, 64 hex digits (as provisioning prints
    /// `cmd_key`); by default one derived from the site and id
    /// ([`DeviceSpec::cmd_key`]).
    #[serde(default)]
    pub cmd_key: Option<String>,
    /// The node's MQTT password (its username is `{site}/{id}`); none by
    /// default: the bench's broker takes anonymous clients on loopback.
    #[serde(default)]
    pub password: Option<String>,
}

/// What reports for a device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    /// Our firmware on simulated peripherals: contacts and sensors, its own
    /// judgement and interlocks.
    #[default]
    Firmware,
    /// A plain sensor node on the controller: samples of what the controller
    /// knows (elevators, fire pumps), no judgement.
    Sensor,
}

fn default_format() -> Format {
    Format::Json
}
fn default_seed() -> u64 {
    1
}
fn default_floors() -> u8 {
    12
}
fn default_ports() -> u8 {
    8
}
fn default_unit() -> u8 {
    1
}

fn format<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Format, D::Error> {
    match String::deserialize(d)?.as_str() {
        "json" => Ok(Format::Json),
        "binary" | "postcard" => Ok(Format::Binary),
        other => Err(serde::de::Error::custom(format!(
            "unknown format `{other}`: expected `json` or `binary`"
        ))),
    }
}

impl DeviceSpec {
    /// A spec with the defaults, for code that builds compounds (the demo).
    #[must_use]
    pub fn new(site: &str, id: &str, class: DeviceClass) -> DeviceSpec {
        DeviceSpec {
            site: site.into(),
            id: id.into(),
            class,
            format: default_format(),
            seed: default_seed(),
            floors: default_floors(),
            traffic: false,
            door_hold: false,
            ports: default_ports(),
            unit: default_unit(),
            node: NodeKind::Firmware,
            cmd_key: None,
            password: None,
        }
    }

    /// The node's command key: `cmd_key` if given, else the first 32 bytes
    /// of SHA-256 over `fm-hil-cmd-key/{site}/{id}`, so every simulated
    /// device has its own key and a scenario can name it without writing it.
    /// A `cmd_key` that is not 64 hex digits is refused when the file is
    /// checked ([`SimDevice::check`]).
    ///
    /// # Errors
    /// The key text's problem.
    pub fn cmd_key(&self) -> Result<CommandKey, cmdauth::HexError> {
        use sha2::Digest as _;
        if let Some(hex) = &self.cmd_key {
            return CommandKey::from_hex(hex);
        }
        let digest = sha2::Sha256::digest(format!("fm-hil-cmd-key/{}/{}", self.site, self.id));
        Ok(CommandKey::from_bytes(digest.into()))
    }

    /// The node's credentials, as provisioning would configure them.
    fn credentials(&self) -> Option<Credentials> {
        let mut c = Credentials::new(&self.site, &self.id).ok()?;
        c.cmd_key = self.cmd_key().ok();
        if let Some(p) = &self.password {
            c = c.with_password(p).ok()?;
        }
        Some(c)
    }
}

/// Something that happens to a device: people, batteries, faults.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(tag = "do", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Injects a fault (names: [`FAULTS`]); `port` for per-port charger
    /// faults, `ma` for leakage.
    Inject {
        /// The fault's name.
        fault: String,
        /// The charging port (1-based) for per-port faults.
        #[serde(default)]
        port: Option<u8>,
        /// Leakage current, mA (default 45).
        #[serde(default)]
        ma: Option<f32>,
    },
    /// Clears a fault injected before.
    Clear {
        /// The fault's name.
        fault: String,
        /// The charging port for per-port faults.
        #[serde(default)]
        port: Option<u8>,
    },
    /// Elevator: a call to a floor (hall or car).
    Call {
        /// The floor.
        floor: u8,
    },
    /// Elevator: people step in (they only can while the doors are open).
    Board {
        /// How many.
        people: u8,
    },
    /// Elevator: people step out.
    Alight {
        /// How many.
        people: u8,
    },
    /// Charging bay: a rider plugs a battery into a port.
    Plug {
        /// The port (1-based).
        port: u8,
        /// State of charge, 0–1 (default 0.2).
        #[serde(default)]
        soc: Option<f32>,
        /// Capacity, Wh (default 960: 48 V × 20 Ah).
        #[serde(default)]
        capacity_wh: Option<f32>,
    },
    /// Charging bay: the battery is taken off.
    Unplug {
        /// The port.
        port: u8,
    },
    /// Fire pump: the node runs its weekly self-test now.
    SelfTest,
    /// Elevator: the controller's service-mode switch is set (GB/T 24476:
    /// 1 normal, 2 inspection, 3 fire return, ... 7); `mode = 1` hands the
    /// mode back to the plant's own judgement.
    ServiceMode {
        /// The mode, 0–7.
        mode: u8,
    },
    /// The gateway sends the node a `cmd` (our firmware node, on MQTT): it
    /// goes to the broker on the device's `cmd` topic, and the node's `ack`
    /// comes back over its link. Signed as `sign` says; or, with `replay`,
    /// the very bytes of an earlier command sent again.
    Command {
        /// The op (`cut_off`, `clear`, `self_test`, `set_threshold`,
        /// `hold_doors`, or any other text, which the node answers as unsupported). Not with `replay`.
        #[serde(default)]
        op: Option<String>,
        /// `args.port`.
        #[serde(default)]
        port: Option<u8>,
        /// `args.name` (`set_threshold`).
        #[serde(default)]
        name: Option<String>,
        /// `args.value` (`set_threshold`).
        #[serde(default)]
        value: Option<f64>,
        /// `args.hold` (`hold_doors`: `true` holds the doors, `false`
        /// releases them).
        #[serde(default)]
        hold: Option<bool>,
        /// The command id, echoed in the ack (default `hil-N`, N counting
        /// the device's commands from 1).
        #[serde(default)]
        id: Option<String>,
        /// How it is signed.
        #[serde(default)]
        sign: Signing,
        /// Send again the payload of the earlier command with this id, byte
        /// for byte (same counter, same MAC).
        #[serde(default)]
        replay: Option<String>,
    },
}

/// How the simulated gateway signs a command.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signing {
    /// With the device's key, the next counter, and an expiry 30 s ahead of
    /// the true time (the contract's ack timeout): the gateway's way.
    #[default]
    Valid,
    /// With another key: an attacker's command (`bad_mac`).
    Forged,
    /// Without `ctr`, `exp`, `mac`: an old gateway's, or anybody's (`unsigned`).
    Unsigned,
    /// With the device's key and the next counter, but an expiry 1 s before
    /// the true time: a command that waited too long (`expired`).
    Expired,
}

/// How long a command the simulated gateway signs stays valid: the
/// contract's ack timeout (§9: `expired` after 30 s without an ack).
pub const COMMAND_LIFETIME_MS: i64 = 30_000;

/// Every fault name an [`Action::Inject`] takes, by class.
pub const FAULTS: &[(DeviceClass, &str)] = &[
    (DeviceClass::Elevator, "stuck_between_floors"),
    (DeviceClass::Elevator, "door_wont_open"),
    (DeviceClass::Elevator, "door_wont_close"),
    (DeviceClass::Elevator, "overspeed"),
    (DeviceClass::Elevator, "overtravel_top"),
    (DeviceClass::Elevator, "overtravel_bottom"),
    (DeviceClass::Elevator, "unintended_movement"),
    (DeviceClass::Elevator, "power_cut"),
    (DeviceClass::Elevator, "ebike_boarding"),
    (DeviceClass::Elevator, "alarm_pressed"),
    (DeviceClass::Elevator, "safety_circuit_break"),
    (DeviceClass::Elevator, "traction_loss"),
    (DeviceClass::Elevator, "position_lost"),
    (DeviceClass::Elevator, "restart_prevented"),
    (DeviceClass::Elevator, "door_lock_fault"),
    (DeviceClass::Firepump, "pump_fail_to_start"),
    (DeviceClass::Firepump, "pump_fault"),
    (DeviceClass::Firepump, "closed_valve"),
    (DeviceClass::Firepump, "tank_draining"),
    (DeviceClass::Firepump, "main_power_fault"),
    (DeviceClass::Firepump, "backup_power_fault"),
    (DeviceClass::Firepump, "not_in_auto"),
    (DeviceClass::Firepump, "demand"),
    (DeviceClass::Firepump, "fire_alarm"),
    (DeviceClass::Charger, "thermal_runaway"),
    (DeviceClass::Charger, "smoke"),
    (DeviceClass::Charger, "leakage"),
    (DeviceClass::Charger, "over_current"),
    (DeviceClass::Charger, "abandoned_full"),
    (DeviceClass::Charger, "mains_loss"),
];

/// Why an action could not be done.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ActionError {
    /// The fault is not one of this class's.
    #[error("`{fault}` is not a fault of {class}: expected one of {expected}")]
    UnknownFault {
        /// The name given.
        fault: String,
        /// The device's class.
        class: &'static str,
        /// The names this class has.
        expected: String,
    },
    /// A per-port fault without its port, or a port the bay does not have.
    #[error("`{0}` needs a `port` of this bay")]
    Port(String),
    /// The action does not apply to this class (a call to a fire pump).
    #[error("`{action}` does not apply to {class}")]
    WrongClass {
        /// The action.
        action: &'static str,
        /// The device's class.
        class: &'static str,
    },
    /// The node refused (a self-test while one runs).
    #[error("the node refused: {0}")]
    Refused(String),
    /// A command that cannot be built: no op, a replay of nothing, an op
    /// with `replay`, a bad id or key.
    #[error("command: {0}")]
    Command(String),
}

/// The firmware node as its links see it: whatever its class, the same
/// session calls (birth, will, queued payloads, commands).
pub trait NodeLink: Send {
    /// The will to register with the broker.
    ///
    /// # Errors
    /// If it does not fit `buf`.
    fn will(&self, buf: &mut [u8]) -> Result<usize, EncodeError>;
    /// The link came up: the birth to publish first.
    ///
    /// # Errors
    /// If it does not fit `buf`.
    fn on_connect(&mut self, now: Millis, buf: &mut [u8]) -> Result<Outgoing, EncodeError>;
    /// The link went down: the node keeps what it has in its outbox.
    fn on_disconnect(&mut self);
    /// Whether the node believes its link is up.
    fn link_up(&self) -> bool;
    /// The next queued payload, if any.
    fn next_payload(&mut self, buf: &mut [u8]) -> Option<Outgoing>;
    /// The payload last handed out is on its way (the QoS 1 session has it).
    fn published(&mut self);
    /// A command from the gateway.
    fn on_command(&mut self, now: Millis, payload: &[u8]);
    /// The username and password to log in with, if the node has them.
    fn login(&self) -> Option<(String, String)> {
        None
    }
    /// The commands the simulated gateway has for this node since the last
    /// call, to publish on its `cmd` topic.
    fn gateway_commands(&mut self) -> Vec<Vec<u8>> {
        Vec::new()
    }
}

impl<L: ClassLogic + Send> NodeLink for Node<L> {
    fn will(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        Node::will(self, buf)
    }
    fn on_connect(&mut self, now: Millis, buf: &mut [u8]) -> Result<Outgoing, EncodeError> {
        Node::on_connect(self, now, buf)
    }
    fn on_disconnect(&mut self) {
        Node::on_disconnect(self);
    }
    fn link_up(&self) -> bool {
        Node::link_up(self)
    }
    fn next_payload(&mut self, buf: &mut [u8]) -> Option<Outgoing> {
        Node::next_payload(self, buf)
    }
    fn published(&mut self) {
        Node::published(self);
    }
    fn on_command(&mut self, now: Millis, payload: &[u8]) {
        // The outcome is in the ack the node queues.
        let _ = Node::on_command(self, now, payload);
    }
    fn login(&self) -> Option<(String, String)> {
        let c = Node::credentials(self)?;
        Some((c.username().to_string(), c.password.as_ref()?.to_string()))
    }
}

impl<P: rig::Plant + Send, IO: firmware::io::ClassIo + Send> NodeLink for rig::Rig<P, IO>
where
    IO::Logic: ClassLogic + Send,
{
    fn will(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        self.node.will(buf)
    }
    fn on_connect(&mut self, now: Millis, buf: &mut [u8]) -> Result<Outgoing, EncodeError> {
        self.node.on_connect(now, buf)
    }
    fn on_disconnect(&mut self) {
        self.node.on_disconnect();
    }
    fn link_up(&self) -> bool {
        self.node.link_up()
    }
    fn next_payload(&mut self, buf: &mut [u8]) -> Option<Outgoing> {
        self.node.next_payload(buf)
    }
    fn published(&mut self) {
        self.node.published();
    }
    fn on_command(&mut self, now: Millis, payload: &[u8]) {
        let _ = self.node.on_command(now, payload);
        // The board applies the outputs after a command, as after a step.
        self.apply();
    }
    fn login(&self) -> Option<(String, String)> {
        NodeLink::login(&self.node)
    }
    fn gateway_commands(&mut self) -> Vec<Vec<u8>> {
        self.commands.drain(..).collect()
    }
}

/// The rig of one class, or a plant with a plain sensor on it.
enum Rigged {
    Elevator(Box<ElevatorRig>),
    Firepump(Box<FirepumpRig>),
    Charger(Box<ChargerRig>),
    Sensor(Box<Sensed>),
}

/// A plant watched by a plain sensor node, stepped on its own clock.
struct Sensed {
    plant: SensedPlant,
    node: SensorNode,
    now: u64,
}

enum SensedPlant {
    Elevator(ElevatorSim),
    FireWater(FireWaterSim),
}

/// The plain sensor's sampling period: it looks every 100 ms and reports
/// what changed.
const SENSOR_LOOK_MS: u64 = 100;

impl Sensed {
    fn readings(&self) -> Vec<Reading> {
        match &self.plant {
            SensedPlant::Elevator(sim) => {
                let c = sim.controller();
                vec![
                    (Metric::Running, Value::from(c.running)),
                    (Metric::Direction, Value::from(f32::from(c.direction))),
                    (Metric::Floor, Value::from(f32::from(c.floor))),
                    (Metric::DoorZone, Value::from(c.door_zone)),
                    (Metric::DoorClosed, Value::from(c.door_closed)),
                    (Metric::Occupied, Value::from(c.occupied)),
                    (Metric::ServiceMode, Value::from(f32::from(c.service_mode))),
                    (Metric::SpeedMps, Value::from(c.speed_mps)),
                    (Metric::RatedSpeedMps, Value::from(c.rated_speed_mps)),
                    (Metric::LoadPct, Value::from(c.load_pct)),
                    (Metric::PowerOk, Value::from(c.power_ok)),
                    (Metric::SafetyCircuitOk, Value::from(c.safety_circuit_ok)),
                    (Metric::AlarmButton, Value::from(c.alarm_button)),
                    (Metric::EbikeDetected, Value::from(c.ebike_detected)),
                ]
            }
            SensedPlant::FireWater(sim) => {
                let s = sim.sensors();
                vec![
                    (Metric::PumpRunning, Value::from(s.pump_running)),
                    (Metric::PumpFault, Value::from(s.pump_fault)),
                    (Metric::AutoMode, Value::from(s.auto_mode)),
                    (Metric::StartSignal, Value::from(s.start_signal)),
                    (Metric::JockeyRunning, Value::from(s.jockey_running)),
                    (Metric::MainPowerOk, Value::from(s.main_power_ok)),
                    (Metric::BackupPowerOk, Value::from(s.backup_power_ok)),
                    (Metric::SelfTestRunning, Value::from(s.cabinet_self_test)),
                    (Metric::FireAlarm, Value::from(sim.active(FireWaterFault::FireAlarm))),
                    (Metric::OutletPressureMpa, Value::from(s.outlet_pressure_mpa)),
                    (Metric::NetworkPressureMpa, Value::from(s.network_pressure_mpa)),
                    (Metric::TankLevelM, Value::from(s.tank_level_m)),
                ]
            }
        }
    }

    fn advance(&mut self, ms: u64, traffic: bool) {
        let end = self.now + ms;
        while self.now < end {
            let dt = (end - self.now).min(SENSOR_LOOK_MS);
            // dt ≤ 100.
            #[allow(clippy::cast_possible_truncation)]
            let dt32 = dt as u32;
            match &mut self.plant {
                SensedPlant::Elevator(sim) => {
                    if traffic {
                        sim.traffic(dt32);
                    }
                    sim.step(dt32);
                }
                SensedPlant::FireWater(sim) => sim.step(dt32),
            }
            self.now += dt;
            let readings = self.readings();
            self.node.sample(self.now, &readings);
        }
    }
}

/// The slave of a spec whose unit id is out of range (scenario files are
/// checked for that before they run).
const UNIT_1: Slave = match Slave::new(1) {
    Some(s) => s,
    None => panic!("1 is a valid unit id"),
};

/// A device of the compound: its plant, the firmware node over it, its
/// Modbus slave, the node's wall clock, and the gateway's side of its
/// commands.
pub struct SimDevice {
    /// What was declared.
    pub spec: DeviceSpec,
    rig: Rigged,
    slave: Slave,
    epoch_ms: i64,
    skew_ms: i64,
    commander: Commander,
}

/// The simulated gateway's side of one device's commands: its counter and
/// what it sent, by id (for replays).
#[derive(Default)]
struct Commander {
    ctr: u64,
    sent: BTreeMap<String, Vec<u8>>,
}

// The bench moves devices between threads and shares them with their Modbus
// link's task.
const _: () = {
    const fn send<T: Send>() {}
    send::<SimDevice>();
};

impl SimDevice {
    /// The device, its node started at virtual 0 with its wall clock reading
    /// `epoch_ms` then. A plain sensor on a charging bay (which needs the
    /// node's interlocks) is built as our firmware node.
    #[must_use]
    pub fn new(spec: DeviceSpec, epoch_ms: i64) -> SimDevice {
        let rig = match (spec.node, spec.class) {
            (NodeKind::Sensor, DeviceClass::Elevator) => {
                let cfg = ElevatorConfig {
                    floors: spec.floors.max(2),
                    ..ElevatorConfig::default()
                };
                let facts = BirthFacts {
                    rated_speed_mps: Some(f64::from(cfg.rated_speed_mps)),
                    floors: Some(u16::from(cfg.floors)),
                };
                Rigged::Sensor(Box::new(Sensed {
                    plant: SensedPlant::Elevator(ElevatorSim::new(cfg, spec.seed)),
                    node: sensor_login(SensorNode::new(10, epoch_ms, facts), &spec),
                    now: 0,
                }))
            }
            (NodeKind::Sensor, DeviceClass::Firepump) => Rigged::Sensor(Box::new(Sensed {
                plant: SensedPlant::FireWater(FireWaterSim::new(FireWaterConfig::default(), spec.seed)),
                node: sensor_login(SensorNode::new(10, epoch_ms, BirthFacts::default()), &spec),
                now: 0,
            })),
            (_, class) => firmware_rig(&spec, class),
        };
        let mut slave = Slave::new(spec.unit).unwrap_or(UNIT_1);
        if let Some(key) = spec.credentials().as_ref().and_then(Credentials::modbus_key) {
            // One boot per run: the challenge starts at 0.
            slave = slave.with_command_key(key.clone(), 0);
        }
        let mut d = SimDevice {
            spec,
            rig,
            slave,
            epoch_ms,
            skew_ms: 0,
            commander: Commander::default(),
        };
        d.set_skew(0);
        d
    }

    /// Virtual milliseconds since the node started.
    #[must_use]
    pub fn now(&self) -> u64 {
        match &self.rig {
            Rigged::Elevator(r) => r.now(),
            Rigged::Firepump(r) => r.now(),
            Rigged::Charger(r) => r.now(),
            Rigged::Sensor(s) => s.now,
        }
    }

    /// The true time now (epoch ms), whatever the node's clock says.
    #[must_use]
    pub fn wall_ms(&self) -> i64 {
        self.epoch_ms + i64::try_from(self.now()).unwrap_or(i64::MAX)
    }

    /// Sets the node's wall clock `skew_ms` off the true time (a node whose
    /// clock drifted or was set by hand).
    pub fn set_skew(&mut self, skew_ms: i64) {
        self.skew_ms = skew_ms;
        let (now, wall) = (Millis(self.now()), self.wall_ms() + skew_ms);
        match &mut self.rig {
            Rigged::Elevator(r) => r.node.set_wall_clock(now, wall),
            Rigged::Firepump(r) => r.node.set_wall_clock(now, wall),
            Rigged::Charger(r) => r.node.set_wall_clock(now, wall),
            Rigged::Sensor(s) => s.node.set_epoch(self.epoch_ms + skew_ms),
        }
    }

    /// Runs `ms` of virtual time (in 10 ms ticks); an elevator with
    /// `traffic` gets its passengers every 100 ms.
    pub fn advance(&mut self, ms: u64) {
        let traffic = self.spec.traffic;
        match &mut self.rig {
            Rigged::Elevator(r) if traffic => {
                let mut left = ms;
                while left > 0 {
                    let dt = left.min(100);
                    // dt ≤ 100.
                    #[allow(clippy::cast_possible_truncation)]
                    r.plant.sim.traffic(dt as u32);
                    r.advance(dt);
                    left -= dt;
                }
            }
            Rigged::Elevator(r) => r.advance(ms),
            Rigged::Firepump(r) => r.advance(ms),
            Rigged::Charger(r) => r.advance(ms),
            Rigged::Sensor(s) => s.advance(ms, traffic),
        }
    }

    /// The node, for its links (with the commands the simulated gateway
    /// has for it).
    pub fn node(&mut self) -> &mut dyn NodeLink {
        match &mut self.rig {
            Rigged::Elevator(r) => &mut **r,
            Rigged::Firepump(r) => &mut **r,
            Rigged::Charger(r) => &mut **r,
            Rigged::Sensor(s) => &mut s.node,
        }
    }

    /// Answers one Modbus request from the node's register image, as the
    /// node's slave would on its RS-485 port or TCP socket, then drives the
    /// outputs as the board's main loop does (a written command may have
    /// cut a port or started a self-test). A plain sensor has no slave.
    pub fn respond(&mut self, transport: Transport, request: &[u8], response: &mut [u8; MAX_ADU_LEN]) -> usize {
        let slave = &mut self.slave;
        match &mut self.rig {
            Rigged::Elevator(r) => serve(slave, r, transport, request, response),
            Rigged::Firepump(r) => serve(slave, r, transport, request, response),
            Rigged::Charger(r) => serve(slave, r, transport, request, response),
            Rigged::Sensor(_) => 0,
        }
    }

    /// The elevator's plant, whoever watches it.
    pub fn elevator_sim(&mut self) -> Option<&mut ElevatorSim> {
        match &mut self.rig {
            Rigged::Elevator(r) => Some(&mut r.plant.sim),
            Rigged::Sensor(s) => match &mut s.plant {
                SensedPlant::Elevator(sim) => Some(sim),
                SensedPlant::FireWater(_) => None,
            },
            _ => None,
        }
    }

    /// The fire water plant, whoever watches it.
    pub fn firewater_sim(&mut self) -> Option<&mut FireWaterSim> {
        match &mut self.rig {
            Rigged::Firepump(r) => Some(&mut r.plant.sim),
            Rigged::Sensor(s) => match &mut s.plant {
                SensedPlant::FireWater(sim) => Some(sim),
                SensedPlant::Elevator(_) => None,
            },
            _ => None,
        }
    }

    /// The elevator rig, if this is our node on a lift.
    pub fn elevator(&mut self) -> Option<&mut ElevatorRig> {
        match &mut self.rig {
            Rigged::Elevator(r) => Some(r),
            _ => None,
        }
    }

    /// The fire pump rig, if this is our node in a pump room.
    pub fn firepump(&mut self) -> Option<&mut FirepumpRig> {
        match &mut self.rig {
            Rigged::Firepump(r) => Some(r),
            _ => None,
        }
    }

    /// The charging bay rig, if this is one.
    pub fn charger(&mut self) -> Option<&mut ChargerRig> {
        match &mut self.rig {
            Rigged::Charger(r) => Some(r),
            _ => None,
        }
    }

    /// A charging port's relay as the node drives it: `None` if this is not
    /// a bay or has no such port.
    #[must_use]
    pub fn relay(&self, port: u8) -> Option<bool> {
        match &self.rig {
            Rigged::Charger(r) if (1..=r.plant.sim.config().ports).contains(&port) => {
                Some(r.node.logic().relay_on(port))
            }
            _ => None,
        }
    }

    /// Whether the elevator node drives its door-hold output now: `None` if
    /// this is not our node on a lift.
    #[must_use]
    pub fn door_hold(&self) -> Option<bool> {
        match &self.rig {
            Rigged::Elevator(r) => Some(r.plant.door_hold.level.get()),
            _ => None,
        }
    }

    /// A charging port's true temperature, for anchoring expectations on
    /// the physical condition.
    #[must_use]
    pub fn port_temp_c(&self, port: u8) -> Option<f32> {
        match &self.rig {
            Rigged::Charger(r) => {
                let s = r.plant.sim.sensors();
                s.ports.get(usize::from(port.checked_sub(1)?)).map(|p| p.temp_c)
            }
            _ => None,
        }
    }

    /// A charging port's temperature as the node reads it (through its NTC
    /// and converter), `None` before it has one.
    #[must_use]
    pub fn node_port_temp_c(&self, port: u8) -> Option<f32> {
        match &self.rig {
            Rigged::Charger(r) => r
                .node
                .logic()
                .port_readings(Millis(r.now()), port)
                .iter()
                .find(|(m, _)| *m == protocol::metric::PortMetric::TempC)
                .and_then(|(_, v)| v.as_f64())
                // Temperatures are a few hundred °C at most.
                .map(|v| {
                    #[allow(clippy::cast_possible_truncation)]
                    let c = v as f32;
                    c
                }),
            _ => None,
        }
    }

    /// Whether the node's own alarm for `code` is raised now (for a bay's
    /// per-port codes: on any port). A plain sensor raises nothing.
    #[must_use]
    pub fn node_active(&self, code: &str) -> bool {
        let Some(code) = protocol::EventCode::of_class(self.spec.class).find(|c| c.as_str() == code) else {
            return false;
        };
        match &self.rig {
            Rigged::Elevator(r) => r.node.logic().is_active(code),
            Rigged::Firepump(r) => r.node.logic().is_active(code),
            Rigged::Charger(r) => r.node.logic().is_active(code),
            Rigged::Sensor(_) => false,
        }
    }

    /// Resets a bay's latched cut-offs whose cause is gone, as a technician
    /// does on site: the node gets the same signed `clear` command the
    /// gateway would send, and reports (and acknowledges) it as such.
    pub fn reset_cutoffs(&mut self) {
        let now = self.now();
        if self.spec.class != DeviceClass::Charger {
            return;
        }
        let args = CmdArgs::default();
        let Ok(payload) = self.sign_command(
            &format!("local-reset-{now}"),
            Named::Known(protocol::Op::Clear),
            args,
            Signing::Valid,
        ) else {
            return;
        };
        if let Rigged::Charger(r) = &mut self.rig {
            let _ = r.node.on_command(Millis(now), &payload);
            r.io.apply(r.node.logic());
        }
    }

    /// A `cmd` payload from the simulated gateway, signed as `how` says.
    fn sign_command(
        &mut self,
        id: &str,
        op: Named<protocol::Op>,
        args: CmdArgs,
        how: Signing,
    ) -> Result<Vec<u8>, ActionError> {
        let bad = |e: &dyn std::fmt::Display| ActionError::Command(e.to_string());
        let now_ms = self.wall_ms();
        let mut cmd = Cmd {
            v: V1,
            seq: u32::try_from(self.commander.ctr % u64::from(u32::MAX)).unwrap_or(0),
            ts: Timestamp::from_millis(now_ms),
            hist: false,
            bdseq: None,
            id: id
                .try_into()
                .map_err(|_| bad(&format!("`{id}` is longer than 36 characters")))?,
            op,
            args,
            ctr: None,
            exp: None,
            mac: None,
        };
        let key = self.spec.cmd_key().map_err(|e| bad(&e))?;
        let to = Recipient {
            site: &self.spec.site,
            class: self.spec.class,
            device: &self.spec.id,
        };
        match how {
            Signing::Unsigned => {}
            Signing::Valid | Signing::Expired | Signing::Forged => {
                self.commander.ctr += 1;
                let exp = if how == Signing::Expired {
                    now_ms - 1_000
                } else {
                    now_ms + COMMAND_LIFETIME_MS
                };
                let key = if how == Signing::Forged {
                    CommandKey::from_bytes([0x66; 32])
                } else {
                    key
                };
                cmdauth::sign(&key, &to, &mut cmd, self.commander.ctr, Timestamp::from_millis(exp));
            }
        }
        protocol::encode_to_vec(&Message::Cmd(cmd), self.spec.format).map_err(|e| bad(&e))
    }

    /// The gateway's command of `action` (an [`Action::Command`]), queued for
    /// the node's link.
    fn command(&mut self, action: &Action) -> Result<(), ActionError> {
        let Action::Command {
            op,
            port,
            name,
            value,
            hold,
            id,
            sign,
            replay,
        } = action
        else {
            return Ok(());
        };
        let bad = |s: &str| ActionError::Command(s.into());
        let payload = match (op, replay) {
            (None, Some(earlier)) => self
                .commander
                .sent
                .get(earlier)
                .cloned()
                .ok_or_else(|| bad(&format!("no command `{earlier}` was sent before to replay")))?,
            (Some(op), None) => {
                let n = self.commander.sent.len() + 1;
                let id = id.clone().unwrap_or_else(|| format!("hil-{n}"));
                let op = Named::<protocol::Op>::parse(op).map_err(|_| bad(&format!("`{op}` is not an op name")))?;
                let args = CmdArgs {
                    port: *port,
                    name: name
                        .as_deref()
                        .map(protocol::names::parse_name)
                        .transpose()
                        .map_err(|_| bad("`name` is not a threshold name"))?,
                    value: *value,
                    hold: *hold,
                };
                let payload = self.sign_command(&id, op, args, *sign)?;
                protocol::decode(Kind::Cmd, &payload).map_err(|e| bad(&e.to_string()))?;
                self.commander.sent.insert(id, payload.clone());
                payload
            }
            (Some(_), Some(_)) => return Err(bad("give either `op` or `replay`, not both")),
            (None, None) => return Err(bad("needs an `op` (or `replay` of an earlier command's id)")),
        };
        match &mut self.rig {
            Rigged::Elevator(r) => r.commands.push_back(payload),
            Rigged::Firepump(r) => r.commands.push_back(payload),
            Rigged::Charger(r) => r.commands.push_back(payload),
            Rigged::Sensor(_) => {
                return Err(ActionError::WrongClass {
                    action: "command",
                    class: "a plain sensor node",
                });
            }
        }
        Ok(())
    }

    /// The bay's smoke detector and leakage current (true values).
    #[must_use]
    pub fn bay(&self) -> Option<(bool, f32)> {
        match &self.rig {
            Rigged::Charger(r) => {
                let s = r.plant.sim.sensors();
                Some((s.smoke, s.leakage_ma))
            }
            _ => None,
        }
    }

    /// Does `action`.
    ///
    /// # Errors
    /// [`ActionError`]: a fault this class does not have, a missing port, an
    /// action for another class, a refused self-test.
    pub fn act(&mut self, action: &Action) -> Result<(), ActionError> {
        let class = article(self.spec.class);
        let wrong = |action: &'static str| ActionError::WrongClass { action, class };
        match action {
            Action::Inject { fault, port, ma } => self.fault(fault, *port, *ma, true),
            Action::Clear { fault, port } => self.fault(fault, *port, None, false),
            Action::Call { floor } => {
                self.elevator_sim().ok_or_else(|| wrong("call"))?.call(*floor);
                Ok(())
            }
            Action::Board { people } => {
                self.elevator_sim().ok_or_else(|| wrong("board"))?.board(*people);
                Ok(())
            }
            Action::Alight { people } => {
                self.elevator_sim().ok_or_else(|| wrong("alight"))?.alight(*people);
                Ok(())
            }
            Action::ServiceMode { mode } => {
                let sim = self.elevator_sim().ok_or_else(|| wrong("service_mode"))?;
                if *mode > 7 {
                    return Err(ActionError::Refused(format!("service mode {mode} is not 0–7")));
                }
                sim.set_service_mode((*mode != 1).then_some(*mode));
                Ok(())
            }
            Action::Plug { port, soc, capacity_wh } => {
                let r = self.charger().ok_or_else(|| wrong("plug"))?;
                if !(1..=r.plant.sim.config().ports).contains(port) {
                    return Err(ActionError::Port("plug".into()));
                }
                let battery = Battery {
                    capacity_wh: capacity_wh.unwrap_or(960.0),
                    soc: soc.unwrap_or(0.2),
                };
                r.plant.sim.plug(*port, battery);
                Ok(())
            }
            Action::Unplug { port } => {
                self.charger().ok_or_else(|| wrong("unplug"))?.plant.sim.unplug(*port);
                Ok(())
            }
            Action::SelfTest => {
                let r = self.firepump().ok_or_else(|| wrong("self_test"))?;
                let now = Millis(r.now());
                r.node
                    .logic_mut()
                    .start_self_test(now)
                    .map_err(|e| ActionError::Refused(format!("{e:?}")))
            }
            Action::Command { .. } => self.command(action),
        }
    }

    /// Checks that `action` would be accepted by a device of `spec`'s class
    /// and node, without doing it: scenario files are checked before they
    /// run.
    ///
    /// # Errors
    /// As [`SimDevice::act`].
    pub fn check(spec: &DeviceSpec, action: &Action) -> Result<(), ActionError> {
        if let Err(e) = spec.cmd_key() {
            return Err(ActionError::Command(format!("`cmd_key` {e}")));
        }
        let mut probe = SimDevice::new(
            DeviceSpec {
                site: "check".into(),
                id: "check".into(),
                ..spec.clone()
            },
            0,
        );
        match action {
            // A replay names an earlier step's command, which the probe
            // never sent: the run checks that.
            Action::Command {
                op: None,
                replay: Some(_),
                ..
            } if spec.node == NodeKind::Firmware => Ok(()),
            _ => probe.act(action),
        }
    }

    fn fault(&mut self, name: &str, port: Option<u8>, ma: Option<f32>, on: bool) -> Result<(), ActionError> {
        let class = self.spec.class;
        let unknown = || ActionError::UnknownFault {
            fault: name.into(),
            class: article(class),
            expected: FAULTS
                .iter()
                .filter(|(c, _)| *c == class)
                .map(|(_, n)| *n)
                .collect::<Vec<_>>()
                .join(", "),
        };
        if let Some(sim) = self.elevator_sim() {
            let f = elevator_fault(name).ok_or_else(unknown)?;
            if on {
                sim.inject(f);
            } else {
                sim.clear(f);
            }
        } else if let Some(sim) = self.firewater_sim() {
            let f = firewater_fault(name).ok_or_else(unknown)?;
            if on {
                sim.inject(f);
            } else {
                sim.clear(f);
            }
        } else if let Some(r) = self.charger() {
            let ports = r.plant.sim.config().ports;
            let port = port.filter(|p| (1..=ports).contains(p));
            let need = || port.ok_or_else(|| ActionError::Port(name.into()));
            let f = match name {
                "thermal_runaway" => ChargerFault::ThermalRunaway { port: need()? },
                "over_current" => ChargerFault::OverCurrent { port: need()? },
                "abandoned_full" => ChargerFault::AbandonedFull { port: need()? },
                "smoke" => ChargerFault::Smoke,
                "leakage" => ChargerFault::Leakage { ma: ma.unwrap_or(45.0) },
                "mains_loss" => ChargerFault::MainsLoss,
                _ => return Err(unknown()),
            };
            if on {
                r.plant.sim.inject(f);
            } else {
                r.plant.sim.clear(f);
            }
        }
        Ok(())
    }
}

/// A plain sensor node logging in with the spec's password, if it has one.
fn sensor_login(node: SensorNode, spec: &DeviceSpec) -> SensorNode {
    match &spec.password {
        Some(p) => node.with_login(format!("{}/{}", spec.site, spec.id), p.clone()),
        None => node,
    }
}

/// Our firmware node on the plant of `class`, provisioned.
fn firmware_rig(spec: &DeviceSpec, class: DeviceClass) -> Rigged {
    let mut rigged = firmware_rig_bare(spec, class);
    if let Some(c) = spec.credentials() {
        match &mut rigged {
            Rigged::Elevator(r) => r.node.set_credentials(c),
            Rigged::Firepump(r) => r.node.set_credentials(c),
            Rigged::Charger(r) => r.node.set_credentials(c),
            Rigged::Sensor(_) => {}
        }
    }
    rigged
}

fn firmware_rig_bare(spec: &DeviceSpec, class: DeviceClass) -> Rigged {
    match class {
        DeviceClass::Elevator => {
            let cfg = ElevatorConfig {
                floors: spec.floors.max(2),
                ..ElevatorConfig::default()
            };
            let node = NodeElevatorConfig {
                floors: f32::from(cfg.floors),
                rated_speed_mps: cfg.rated_speed_mps,
                door_hold_output: spec.door_hold,
                ..NodeElevatorConfig::default()
            };
            Rigged::Elevator(Box::new(rig::elevator(
                ElevatorSim::new(cfg, spec.seed),
                node,
                spec.format,
            )))
        }
        DeviceClass::Firepump => Rigged::Firepump(Box::new(rig::firepump(
            FireWaterSim::new(FireWaterConfig::default(), spec.seed),
            FirepumpConfig::default(),
            spec.format,
        ))),
        DeviceClass::Charger => {
            let cfg = ChargerSimConfig {
                ports: spec.ports,
                ..ChargerSimConfig::default()
            };
            let sim = ChargerSim::new(cfg, spec.seed);
            let ports = sim.config().ports;
            Rigged::Charger(Box::new(rig::charger(
                sim,
                ChargerConfig::default(),
                ports,
                SimLatches::default(),
                spec.format,
            )))
        }
    }
}

/// The class with its article, for messages ("an elevator").
fn article(class: DeviceClass) -> &'static str {
    match class {
        DeviceClass::Elevator => "an elevator",
        DeviceClass::Firepump => "a fire pump",
        DeviceClass::Charger => "a charging bay",
    }
}

fn elevator_fault(name: &str) -> Option<ElevatorFault> {
    Some(match name {
        "stuck_between_floors" => ElevatorFault::StuckBetweenFloors,
        "door_wont_open" => ElevatorFault::DoorWontOpen,
        "door_wont_close" => ElevatorFault::DoorWontClose,
        "overspeed" => ElevatorFault::Overspeed,
        "overtravel_top" => ElevatorFault::OvertravelTop,
        "overtravel_bottom" => ElevatorFault::OvertravelBottom,
        "unintended_movement" => ElevatorFault::UnintendedMovement,
        "power_cut" => ElevatorFault::PowerCut,
        "ebike_boarding" => ElevatorFault::EbikeBoarding,
        "alarm_pressed" => ElevatorFault::AlarmPressed,
        "safety_circuit_break" => ElevatorFault::SafetyCircuitBreak,
        "traction_loss" => ElevatorFault::TractionLoss,
        "position_lost" => ElevatorFault::PositionLost,
        "restart_prevented" => ElevatorFault::RestartPrevented,
        "door_lock_fault" => ElevatorFault::DoorLockFault,
        _ => return None,
    })
}

fn firewater_fault(name: &str) -> Option<FireWaterFault> {
    Some(match name {
        "pump_fail_to_start" => FireWaterFault::PumpFailToStart,
        "pump_fault" => FireWaterFault::PumpFault,
        "closed_valve" => FireWaterFault::ClosedValve,
        "tank_draining" => FireWaterFault::TankDraining,
        "main_power_fault" => FireWaterFault::MainPowerFault,
        "backup_power_fault" => FireWaterFault::BackupPowerFault,
        "not_in_auto" => FireWaterFault::NotInAuto,
        "demand" => FireWaterFault::Demand,
        "fire_alarm" => FireWaterFault::FireAlarm,
        _ => return None,
    })
}

impl crate::modbus::Responder for SimDevice {
    fn unit(&self) -> u8 {
        self.slave.unit_id()
    }

    fn respond(&mut self, transport: Transport, request: &[u8], response: &mut [u8; MAX_ADU_LEN]) -> usize {
        SimDevice::respond(self, transport, request, response)
    }
}
