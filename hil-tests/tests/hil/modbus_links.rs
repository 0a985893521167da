//! Simulated nodes on real Modbus links: tokio-modbus, a master not written
//! here, reads the firmware's own slave over Modbus TCP and over Modbus RTU
//! through a socat pty pair, and gets what the plant measures; two nodes
//! share one RS-485 line by their unit ids; muting a slave is a slave
//! timeout to the master, a delay a late answer, and the link's counters
//! say which requests were answered and which were swallowed.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use firmware::elevator::ElevatorConfig as NodeElevatorConfig;
use firmware::firepump::FirepumpConfig;
use firmware::registers::RegisterImage;
use protocol::modbus::{Point, Table, map_for};
use protocol::{DeviceClass, Format, Metric};
use sim::modbus::{ElevatorSlave, FirepumpSlave, LinkControl, RigSlave, RtuBus, SharedResponder, TcpSlave};
use sim::physics::elevator::{ElevatorConfig, ElevatorSim};
use sim::physics::firewater::{FireWaterConfig, FireWaterSim};
use sim::rig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_modbus::client::{Context, Reader, Writer};
use tokio_modbus::prelude::SlaveContext;
use tokio_modbus::{ExceptionCode, Slave};

/// How long the master waits for an answer: far above a loopback or pty
/// round trip, short enough that a muted slave costs the test little.
const TIMEOUT: Duration = Duration::from_millis(300);

fn pump(unit: u8) -> Arc<Mutex<FirepumpSlave>> {
    let mut r = rig::firepump(
        FireWaterSim::new(FireWaterConfig::default(), 3),
        FirepumpConfig::default(),
        Format::Json,
    );
    // Past the contacts' debounce: the node has stepped and measured.
    r.advance(3_000);
    RigSlave::new(r, unit).unwrap().shared()
}

fn car(unit: u8) -> Arc<Mutex<ElevatorSlave>> {
    let mut r = rig::elevator(
        ElevatorSim::new(ElevatorConfig::default(), 7),
        NodeElevatorConfig::default(),
        Format::Json,
    );
    r.advance(3_000);
    RigSlave::new(r, unit).unwrap().shared()
}

/// The address of a metric in the class's built-in map.
fn address(class: DeviceClass, table: Table, metric: Metric) -> u16 {
    map_for(class)
        .entries(0)
        .find(|e| e.register.table == table && e.register.point == Point::Metric(metric))
        .map(|e| e.register.address)
        .unwrap()
}

/// A metric read over the link, decoded through the built-in map.
async fn read_metric(ctx: &mut Context, class: DeviceClass, metric: Metric) -> f64 {
    let at = address(class, Table::InputRegister, metric);
    let words = timed(ctx.read_input_registers(at, 1)).await.unwrap().unwrap();
    let entry = map_for(class).find(Table::InputRegister, at, 0).unwrap();
    entry.register.read(&words).unwrap()
}

/// A request's outcome, or `None` when the master gave up waiting.
async fn timed<T>(
    request: impl Future<Output = Result<Result<T, ExceptionCode>, tokio_modbus::Error>>,
) -> Option<Result<T, ExceptionCode>> {
    match tokio::time::timeout(TIMEOUT, request).await {
        Ok(answer) => Some(answer.expect("the transport failed")),
        Err(_) => None,
    }
}

async fn tcp_master(addr: SocketAddr) -> Context {
    tokio_modbus::client::tcp::connect_slave(addr, Slave(1)).await.unwrap()
}

/// A master on one end of the line, 19200 8N1.
fn rtu_master(path: &Path, unit: u8) -> Context {
    let builder = tokio_serial::new(path.to_string_lossy(), 19_200);
    let port = tokio_serial::SerialStream::open(&builder).unwrap();
    tokio_modbus::client::rtu::attach_slave(port, Slave(unit))
}

async fn tcp_slave(slave: SharedResponder, control: &Arc<LinkControl>) -> TcpSlave {
    TcpSlave::start("127.0.0.1:0".parse().unwrap(), slave, control.clone())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fire_pump_node_over_tcp_reads_as_its_plant_measures() {
    let pump = pump(1);
    let control = LinkControl::new();
    let link = tcp_slave(pump.clone(), &control).await;
    let mut master = tcp_master(link.addr()).await;

    // The identity registers, then the pressures and the level.
    let id = timed(master.read_input_registers(0, 2)).await.unwrap().unwrap();
    assert_eq!(id, [1, u16::from(DeviceClass::Firepump.id())]);
    let fp = DeviceClass::Firepump;
    let outlet = read_metric(&mut master, fp, Metric::OutletPressureMpa).await;
    let network = read_metric(&mut master, fp, Metric::NetworkPressureMpa).await;
    let tank = read_metric(&mut master, fp, Metric::TankLevelM).await;
    let (sensors, image) = {
        let p = pump.lock().unwrap();
        let image = p
            .rig
            .node
            .logic()
            .point(Point::Metric(Metric::NetworkPressureMpa), None);
        (p.rig.plant.sim.sensors(), image.unwrap())
    };
    // The node's own reading to the register's 1 kPa, the plant's through
    // the transducer, its converter and the sensor noise.
    assert!(
        (network - image).abs() <= 0.0005,
        "{network} over the link, {image} in the node"
    );
    for (read, plant) in [
        (outlet, sensors.outlet_pressure_mpa),
        (network, sensors.network_pressure_mpa),
        (tank, sensors.tank_level_m),
    ] {
        assert!((read - f64::from(plant)).abs() < 0.02, "{read} read, the plant {plant}");
    }
    assert!(network > 0.25, "a pressurised network: {network}");
    // The contacts, in the map's order, as the node debounced them, and
    // the plant's steady ones: in auto, both supplies up, no fault.
    let bits = timed(master.read_discrete_inputs(0, 7)).await.unwrap().unwrap();
    let contacts = [
        Metric::PumpRunning,
        Metric::PumpFault,
        Metric::AutoMode,
        Metric::StartSignal,
        Metric::JockeyRunning,
        Metric::MainPowerOk,
        Metric::BackupPowerOk,
    ];
    let node: Vec<bool> = {
        let p = pump.lock().unwrap();
        let logic = p.rig.node.logic();
        contacts
            .iter()
            .map(|m| logic.point(Point::Metric(*m), None) == Some(1.0))
            .collect()
    };
    assert_eq!(bits, node);
    assert_eq!(
        [bits[1], bits[2], bits[5], bits[6]],
        [
            sensors.pump_fault,
            sensors.auto_mode,
            sensors.main_power_ok,
            sensors.backup_power_ok
        ]
    );
    assert!(bits[2] && bits[5] && bits[6] && !bits[1], "{bits:?}");
    assert_eq!(control.served(), 5);

    // A second master at the same time is served as well.
    let mut other = tcp_master(link.addr()).await;
    assert_eq!(timed(other.read_input_registers(1, 1)).await.unwrap().unwrap(), [1]);
    assert_eq!(control.served(), 6);

    // A written command reaches the node and, through its outputs, the
    // plant at once: the self-test coil drives the cabinet's test input.
    timed(master.write_single_coil(0, true)).await.unwrap().unwrap();
    assert!(
        pump.lock().unwrap().rig.plant.test_output.level.get(),
        "the test output is driven"
    );
    pump.lock().unwrap().rig.advance(3_000);
    assert!(pump.lock().unwrap().rig.plant.sim.sensors().cabinet_self_test);
    let running = timed(master.read_discrete_inputs(7, 1)).await.unwrap().unwrap();
    assert_eq!(running, [true], "self_test_running");
    let stats = pump.lock().unwrap().stats();
    assert_eq!((stats.requests, stats.exceptions), (8, 0));
    link.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_mbap_header_closes_only_its_own_connection() {
    let control = LinkControl::new();
    let link = tcp_slave(pump(1), &control).await;
    let mut master = tcp_master(link.addr()).await;
    let mut raw = tokio::net::TcpStream::connect(link.addr()).await.unwrap();
    // Protocol id 5: the stream cannot be framed any more.
    raw.write_all(&[0, 1, 0, 5, 0, 6, 1, 4, 0, 0, 0, 1]).await.unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(Ok(0))),
        "the connection is closed, unanswered: {read:?}"
    );
    assert_eq!(timed(master.read_input_registers(1, 1)).await.unwrap().unwrap(), [1]);
    assert_eq!(control.served(), 1);
    link.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_muted_tcp_slave_times_out_a_delayed_one_answers_late() {
    let control = LinkControl::new();
    let link = tcp_slave(pump(1), &control).await;
    let mut master = tcp_master(link.addr()).await;
    assert!(timed(master.read_input_registers(0, 2)).await.is_some());

    control.set_mute(true);
    assert!(
        timed(master.read_input_registers(0, 2)).await.is_none(),
        "a slave timeout"
    );
    assert_eq!((control.served(), control.dropped()), (1, 1));
    // Unmuted, it answers again (on a fresh connection, as the gateway
    // re-opens one after a timeout: the old one may still get a late answer).
    control.set_mute(false);
    let mut master = tcp_master(link.addr()).await;
    assert!(timed(master.read_input_registers(0, 2)).await.is_some());
    assert_eq!((control.served(), control.dropped()), (2, 1));

    control.set_delay_ms(100);
    let asked = Instant::now();
    assert!(timed(master.read_input_registers(0, 2)).await.is_some());
    assert!(asked.elapsed() >= Duration::from_millis(100), "{:?}", asked.elapsed());
    control.set_delay_ms(500);
    assert!(
        timed(master.read_input_registers(0, 2)).await.is_none(),
        "too late for the master"
    );
    assert_eq!(control.dropped(), 1, "a late answer is not a dropped one");
    link.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_rtu_line_by_unit_id_and_fail_apart_or_together() {
    let dir = tempfile::tempdir().unwrap();
    let line = testkit::PtyPair::open(dir.path());
    let (car, pump) = (car(1), pump(2));
    let (car_link, pump_link) = (LinkControl::new(), LinkControl::new());
    let bus = RtuBus::start(
        &line.b,
        19_200,
        vec![(car.clone(), car_link.clone()), (pump.clone(), pump_link.clone())],
    )
    .unwrap();
    let mut master = rtu_master(&line.a, 1);

    // Each node answers its own unit id with its own class.
    let id = timed(master.read_input_registers(0, 2)).await.unwrap().unwrap();
    assert_eq!(id, [1, u16::from(DeviceClass::Elevator.id())], "{}", line.log());
    let doors = timed(master.read_discrete_inputs(2, 1)).await.unwrap().unwrap();
    assert_eq!(doors, [car.lock().unwrap().rig.plant.sim.contacts().door_closed]);
    master.set_slave(Slave(2));
    let id = timed(master.read_input_registers(0, 2)).await.unwrap().unwrap();
    assert_eq!(id, [1, u16::from(DeviceClass::Firepump.id())]);
    let network = read_metric(&mut master, DeviceClass::Firepump, Metric::NetworkPressureMpa).await;
    let plant = pump.lock().unwrap().rig.plant.sim.sensors().network_pressure_mpa;
    assert!(
        (network - f64::from(plant)).abs() < 0.02,
        "{network} read, the plant {plant}"
    );
    assert_eq!((car_link.served(), pump_link.served()), (2, 2));
    // Nobody is unit 3: silence, and neither node counts it as its own.
    master.set_slave(Slave(3));
    assert!(timed(master.read_input_registers(0, 2)).await.is_none());
    assert_eq!(car.lock().unwrap().stats().ignored, 0, "the bus routes by unit id");
    assert_eq!(car_link.dropped() + pump_link.dropped(), 0);

    // One node muted: it times out, the other still answers on the same
    // line. (A master re-opens the line after a timeout: the port is
    // exclusive, so the old one is closed first.)
    car_link.set_mute(true);
    drop(master);
    let mut master = rtu_master(&line.a, 1);
    assert!(timed(master.read_input_registers(0, 2)).await.is_none());
    master.set_slave(Slave(2));
    assert!(timed(master.read_input_registers(0, 2)).await.is_some());
    assert_eq!((car_link.dropped(), pump_link.served()), (1, 3));

    // Every node muted: a dead bus. Unmuted: alive again.
    pump_link.set_mute(true);
    assert!(timed(master.read_input_registers(0, 2)).await.is_none());
    assert_eq!(pump_link.dropped(), 1);
    car_link.set_mute(false);
    pump_link.set_mute(false);
    drop(master);
    let mut master = rtu_master(&line.a, 2);
    assert!(timed(master.read_input_registers(0, 2)).await.is_some());
    master.set_slave(Slave(1));
    assert!(timed(master.read_input_registers(0, 2)).await.is_some());

    // A delayed node answers late, within the master's patience.
    car_link.set_delay_ms(100);
    let asked = Instant::now();
    assert!(timed(master.read_input_registers(0, 2)).await.is_some());
    assert!(asked.elapsed() >= Duration::from_millis(100), "{:?}", asked.elapsed());

    // The bus stopped: nothing answers at all.
    bus.stop().await;
    drop(master);
    let mut master = rtu_master(&line.a, 2);
    assert!(timed(master.read_input_registers(0, 2)).await.is_none());
    assert_eq!((car_link.served(), pump_link.served()), (4, 4));
}
