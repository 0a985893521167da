//! The Modbus slave against golden frames from the spec, an independent client
//! (`rmodbus`), a real master (`mbpoll`) and arbitrary bytes: every function
//! code, exception, unit-id rule and counter the module doc promises, and
//! signed writes: only a write tagged with the node's key against the current
//! challenge is carried out.

// Tests panic on purpose when something is off; unwrapping is the assertion.
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};

use firmware::hal::Millis;
use firmware::modbus::{
    MAX_ADU_LEN, RequestLen, Slave, SlaveStats, Transport, rtu_frame_gap_us, rtu_request_len, tcp_request_len,
};
use firmware::registers::{CommandError, RegisterImage};
use proptest::prelude::*;
use protocol::cmdauth::{CommandKey, modbus as signed};
use protocol::modbus::{MAP_VERSION, MAX_MAP_PORTS, Point, Table, map_for};
use protocol::{DeviceClass, EventCode, Metric, Op, PortMetric};

use crate::signing;

const NOW: Millis = Millis(1_234);

/// A node whose values the test sets by point, recording the commands it gets.
#[derive(Debug)]
struct Node {
    class: DeviceClass,
    ports: u8,
    values: HashMap<(Point, Option<u8>), f64>,
    commands: Vec<(Op, Option<u8>, Millis)>,
    refuse: Option<CommandError>,
}

impl Node {
    fn new(class: DeviceClass, ports: u8) -> Self {
        Node {
            class,
            ports,
            values: HashMap::new(),
            commands: Vec::new(),
            refuse: None,
        }
    }

    fn charger() -> Self {
        Node::new(DeviceClass::Charger, 12)
    }

    fn elevator() -> Self {
        Node::new(DeviceClass::Elevator, 0)
    }

    fn set(&mut self, point: Point, port: Option<u8>, value: f64) -> &mut Self {
        self.values.insert((point, port), value);
        self
    }

    fn port(&mut self, port: u8, metric: PortMetric, value: f64) -> &mut Self {
        self.set(Point::PortMetric(metric), Some(port), value)
    }
}

impl RegisterImage for Node {
    fn class(&self) -> DeviceClass {
        self.class
    }

    fn ports(&self) -> u8 {
        self.ports
    }

    fn point(&self, point: Point, port: Option<u8>) -> Option<f64> {
        assert!(
            !matches!(point, Point::Info(_) | Point::Command(_)),
            "{point} asked of the node"
        );
        self.values.get(&(point, port)).copied()
    }

    fn command(&mut self, op: Op, port: Option<u8>, now: Millis) -> Result<(), CommandError> {
        self.commands.push((op, port, now));
        self.refuse.map_or(Ok(()), Err)
    }
}

/// Modbus CRC-16, written again here (bitwise, from the spec's description)
/// so the slave's is checked against something else.
fn crc(bytes: &[u8]) -> [u8; 2] {
    let mut crc = 0xFFFF_u16;
    for b in bytes {
        crc ^= u16::from(*b);
        for _ in 0..8 {
            let lsb = crc & 1;
            crc >>= 1;
            if lsb == 1 {
                crc ^= 0xA001;
            }
        }
    }
    crc.to_le_bytes()
}

fn with_crc(body: &[u8]) -> Vec<u8> {
    let mut f = body.to_vec();
    f.extend_from_slice(&crc(body));
    f
}

fn tcp_frame(transaction: u16, unit: u8, pdu: &[u8]) -> Vec<u8> {
    let mut f = transaction.to_be_bytes().to_vec();
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&u16::try_from(pdu.len() + 1).unwrap().to_be_bytes());
    f.push(unit);
    f.extend_from_slice(pdu);
    f
}

fn send(slave: &mut Slave, transport: Transport, frame: &[u8], node: &mut Node) -> Vec<u8> {
    let mut response = [0xAA; MAX_ADU_LEN];
    let len = slave.handle(transport, frame, node, NOW, &mut response);
    response[..len].to_vec()
}

/// Sends `body` (unit id and PDU) as an RTU frame; returns the response
/// without its CRC, after checking the CRC. Empty if no response.
fn rtu(slave: &mut Slave, node: &mut Node, body: &[u8]) -> Vec<u8> {
    let response = send(slave, Transport::Rtu, &with_crc(body), node);
    if response.is_empty() {
        return response;
    }
    let (head, tail) = response.split_at(response.len() - 2);
    assert_eq!(tail, crc(head), "response CRC of {response:02X?}");
    head.to_vec()
}

/// A read-only slave (no key: the default).
fn slave() -> Slave {
    Slave::new(1).unwrap()
}

/// The boot counter the signed slaves start with: the challenge's high half.
const BOOT: u32 = 7;

/// A slave taking writes signed with the test key.
fn signed_slave() -> Slave {
    Slave::new(1).unwrap().with_command_key(signing::key(), BOOT)
}

/// The FC16 request of a signed write of `values` to the coils from `first`,
/// tagged with `key` against `challenge` (unit id first, no CRC).
fn signed_request(unit: u8, key: &CommandKey, challenge: u64, first: u16, values: &[u16]) -> Vec<u8> {
    let words = signed::request(key, challenge, first, values).unwrap();
    fc16(unit, signed::SIGNED_WRITE, &words)
}

/// An FC16 request body (unit id first).
fn fc16(unit: u8, start: u16, words: &[u16]) -> Vec<u8> {
    let mut body = vec![unit, 16];
    body.extend_from_slice(&start.to_be_bytes());
    body.extend_from_slice(&u16::try_from(words.len()).unwrap().to_be_bytes());
    body.push(u8::try_from(words.len() * 2).unwrap());
    for w in words {
        body.extend_from_slice(&w.to_be_bytes());
    }
    body
}

/// Reads the challenge over the wire (FC03 at 1000) and signs a write
/// against it with the test key, as a master does. Returns the response.
fn write_signed(s: &mut Slave, node: &mut Node, first: u16, values: &[u16]) -> Vec<u8> {
    let challenge = block(s, node).0;
    rtu(s, node, &signed_request(1, &signing::key(), challenge, first, values))
}

/// The signed-write block read over the wire: (challenge, refused writes, mode).
fn block(s: &mut Slave, node: &mut Node) -> (u64, u32, u16) {
    let r = rtu(s, node, &[1, 3, 0x03, 0xE8, 0, 7]);
    assert_eq!(r[..3], [1, 3, 14], "{r:02X?}");
    let w: Vec<u16> = r[3..].chunks(2).map(|w| u16::from_be_bytes([w[0], w[1]])).collect();
    (
        signed::challenge_of([w[0], w[1], w[2], w[3]]),
        (u32::from(w[4]) << 16) | u32::from(w[5]),
        w[6],
    )
}

/// Reads words from unit 1 with FC03/04; `Err(exception code)` on an exception.
fn read_words(node: &mut Node, function: u8, start: u16, quantity: u16) -> Result<Vec<u16>, u8> {
    let [a0, a1] = start.to_be_bytes();
    let [q0, q1] = quantity.to_be_bytes();
    let r = rtu(&mut slave(), node, &[1, function, a0, a1, q0, q1]);
    if r[1] == function | 0x80 {
        assert_eq!(r.len(), 3);
        return Err(r[2]);
    }
    assert_eq!(r[..2], [1, function]);
    assert_eq!(usize::from(r[2]), 2 * usize::from(quantity));
    Ok(r[3..].chunks(2).map(|w| u16::from_be_bytes([w[0], w[1]])).collect())
}

/// Reads bits from unit 1 with FC01/02; `Err(exception code)` on an exception.
fn read_bits(node: &mut Node, function: u8, start: u16, quantity: u16) -> Result<Vec<bool>, u8> {
    let [a0, a1] = start.to_be_bytes();
    let [q0, q1] = quantity.to_be_bytes();
    let r = rtu(&mut slave(), node, &[1, function, a0, a1, q0, q1]);
    if r[1] == function | 0x80 {
        return Err(r[2]);
    }
    assert_eq!(usize::from(r[2]), usize::from(quantity).div_ceil(8));
    let bits: Vec<bool> = (0..usize::from(quantity))
        .map(|i| (r[3 + i / 8] >> (i % 8)) & 1 == 1)
        .collect();
    let padding = (usize::from(quantity)..8 * usize::from(r[2])).all(|i| (r[3 + i / 8] >> (i % 8)) & 1 == 0);
    assert!(padding, "unused bits of the last byte must be 0");
    Ok(bits)
}

fn port_register(port: u8, offset: u16) -> u16 {
    100 + 10 * u16::from(port - 1) + offset
}

#[test]
fn golden_rtu_frames_from_the_spec() {
    // Well-known frames with their CRCs, as every Modbus tool prints them.
    let mut node = Node::charger();
    let mut s = slave();
    let request = [0x01, 0x04, 0x00, 0x00, 0x00, 0x02, 0x71, 0xCB];
    assert_eq!(
        send(&mut s, Transport::Rtu, &request, &mut node),
        [0x01, 0x04, 0x04, 0x00, 0x01, 0x00, 0x02, 0x2B, 0x85],
        "map version 1, class id 2 (charger)"
    );
    let request = [0x01, 0x03, 0x00, 0x00, 0x00, 0x0A, 0xC5, 0xCD];
    assert_eq!(
        send(&mut s, Transport::Rtu, &request, &mut node),
        [0x01, 0x83, 0x02, 0xC0, 0xF1],
        "no holding registers: illegal data address"
    );
    let request = [0x01, 0x04, 0x00, 0x00, 0x00, 0x01, 0x31, 0xCA];
    let response = send(&mut s, Transport::Rtu, &request, &mut node);
    assert_eq!(response[..5], [0x01, 0x04, 0x02, 0x00, 0x01]);
    assert_eq!(
        crc(&request[..6]),
        [0x31, 0xCA],
        "the test's own CRC agrees with the spec"
    );
    assert_eq!(
        s.stats(),
        SlaveStats {
            requests: 3,
            exceptions: 1,
            bad_frames: 0,
            ignored: 0,
            refused_writes: 0,
        }
    );
}

#[test]
fn info_registers_identify_every_class() {
    for class in DeviceClass::ALL {
        let mut node = Node::new(*class, if *class == DeviceClass::Charger { 12 } else { 0 });
        assert_eq!(
            read_words(&mut node, 4, 0, 2),
            Ok(vec![MAP_VERSION, u16::from(class.id())])
        );
    }
    assert_eq!(read_words(&mut Node::charger(), 4, 2, 1), Ok(vec![12]), "port count");
    let mut big = Node::new(DeviceClass::Charger, 40);
    assert_eq!(
        read_words(&mut big, 4, 2, 1),
        Ok(vec![u16::from(MAX_MAP_PORTS)]),
        "port count is capped at what the map addresses"
    );
}

#[test]
fn charger_port_temperature_is_scaled_per_port() {
    let mut node = Node::charger();
    for p in 1..=12_u8 {
        node.port(p, PortMetric::TempC, 20.0 + f64::from(p) + 0.3);
    }
    node.port(2, PortMetric::TempC, -5.3);
    for p in 1..=12_u8 {
        let raw = read_words(&mut node, 4, port_register(p, 3), 1).unwrap()[0];
        let expected = if p == 2 { -53 } else { 200 + 10 * i16::from(p) + 3 };
        assert_eq!(raw.cast_signed(), expected, "port {p}: temp_c in 0.1 °C, signed");
    }
}

#[test]
fn a_port_block_reads_in_one_request() {
    let mut node = Node::charger();
    node.port(3, PortMetric::State, 1.0)
        .port(3, PortMetric::PowerW, 123.4)
        .port(3, PortMetric::CurrentA, 0.56)
        .port(3, PortMetric::TempC, 31.2)
        .port(3, PortMetric::EnergyWh, 76_543.2)
        .port(3, PortMetric::SessionS, 70_000.0);
    let words = read_words(&mut node, 4, port_register(3, 0), 8).unwrap();
    // energy 765432 = 0x000B_ADF8 and session 70000 = 0x0001_1170, high word first.
    assert_eq!(words, [1, 1234, 56, 312, 0x000B, 0xADF8, 0x0001, 0x1170]);
    assert_eq!(
        read_words(&mut node, 4, port_register(3, 0), 10),
        Err(2),
        "offsets 8 and 9 of a port block are not mapped"
    );
    assert_eq!(
        read_words(&mut node, 4, port_register(3, 5), 1),
        Ok(vec![0xADF8]),
        "the low half of a 32-bit value is served on its own"
    );
    assert_eq!(
        read_words(&mut node, 4, port_register(3, 5), 2),
        Ok(vec![0xADF8, 0x0001]),
        "a range may cut through two 32-bit values"
    );
}

#[test]
fn elevator_signed_and_32_bit_registers() {
    let mut node = Node::elevator();
    node.set(Point::Metric(Metric::Floor), None, -2.0)
        .set(Point::Metric(Metric::SpeedMps), None, 1.75)
        .set(Point::Metric(Metric::RunCount), None, 100_000.0)
        .set(Point::Metric(Metric::RunHours), None, 1_234.5);
    let words = read_words(&mut node, 4, 0, 12).unwrap();
    assert_eq!(words[2], 0xFFFE, "floor -2");
    assert_eq!(words[5], 1750, "speed in mm/s");
    assert_eq!(words[8..10], [0x0001, 0x86A0], "run count 100000");
    assert_eq!(words[10..12], [0, 12_345], "run hours in 0.1 h");
    assert_eq!(words[3], 0, "direction not measured: 0 in a block with values");
}

#[test]
fn event_bits_come_from_the_image_and_unknown_bits_read_0() {
    let mut node = Node::charger();
    node.set(Point::Event(EventCode::OverTemperature), None, 1.0)
        .set(Point::Event(EventCode::OverCurrent), None, 0.0)
        .set(Point::Event(EventCode::Leakage), None, 1.0);
    let bits = read_bits(&mut node, 2, 100, 6).unwrap();
    assert_eq!(bits, [true, false, false, true, false, false]);
    assert_eq!(
        read_bits(&mut node, 2, 0, 1),
        Ok(vec![false]),
        "smoke flag not measured"
    );

    let mut elevator = Node::elevator();
    elevator
        .set(Point::Event(EventCode::Trapped), None, 1.0)
        .set(Point::Event(EventCode::EbikeInCar), None, 1.0)
        .set(Point::Metric(Metric::DoorClosed), None, 1.0);
    let r = rtu(&mut slave(), &mut elevator, &[1, 2, 0, 100, 0, 16]);
    assert_eq!(r, [1, 2, 2, 0x00, 0x84], "bit 10 and bit 15, LSB first");
    // Flags 5-7 (safety circuit, alarm button, e-bike detector) are in the
    // map for plain sensor nodes; ours reports them as events, so they read 0.
    assert_eq!(
        read_bits(&mut elevator, 2, 0, 8),
        Ok(vec![false, false, true, false, false, false, false, false])
    );
    assert_eq!(read_bits(&mut elevator, 2, 0, 9), Err(2));
}

#[test]
fn command_coils_are_momentary_and_read_as_0() {
    let mut node = Node::charger();
    assert_eq!(read_bits(&mut node, 1, 100, 12), Ok(vec![false; 12]));
    assert_eq!(read_bits(&mut node, 1, 0, 2), Ok(vec![false; 2]));
    assert!(node.commands.is_empty());
}

#[test]
fn a_signed_write_performs_the_commands_of_its_coils() {
    let mut node = Node::charger();
    let mut s = signed_slave();
    assert_eq!(
        block(&mut s, &mut node),
        (u64::from(BOOT) << 32, 0, 1),
        "fresh: signed mode"
    );
    // Coil 103 = cut_off on port 4 (100 + (4 - 1)).
    let request = signed_request(1, &signing::key(), s.challenge().unwrap(), 103, &[1]);
    assert_eq!(
        rtu(&mut s, &mut node, &request),
        [1, 16, 0x03, 0xF2, 0, 7],
        "the response echoes start and quantity"
    );
    assert_eq!(node.commands, [(Op::CutOff, Some(4), NOW)]);
    assert_eq!(
        block(&mut s, &mut node).0,
        (u64::from(BOOT) << 32) + 1,
        "the challenge moved on"
    );

    write_signed(&mut s, &mut node, 203, &[1]);
    write_signed(&mut s, &mut node, 0, &[1, 1]);
    assert_eq!(
        node.commands[1..],
        [
            (Op::Clear, Some(4), NOW),
            (Op::CutOff, None, NOW),
            (Op::Clear, None, NOW)
        ]
    );

    assert_eq!(
        write_signed(&mut s, &mut node, 103, &[0]),
        [1, 16, 0x03, 0xF2, 0, 7],
        "writing 0 is accepted"
    );
    assert_eq!(node.commands.len(), 4, "and does nothing");

    let mut pump = Node::new(DeviceClass::Firepump, 0);
    write_signed(&mut s, &mut pump, 0, &[1]);
    assert_eq!(pump.commands, [(Op::SelfTest, None, NOW)]);
    assert_eq!(s.stats().refused_writes, 0);
}

#[test]
fn one_signed_write_carries_a_range_of_coils() {
    let mut node = Node::charger();
    let mut s = signed_slave();
    // Coils 100..112 (ports 1-12): ports 1, 3 and 12 written 1.
    let mut values = [0; 12];
    for p in [1, 3, 12] {
        values[p - 1] = 1;
    }
    let r = write_signed(&mut s, &mut node, 100, &values);
    assert_eq!(r, [1, 16, 0x03, 0xF2, 0, 18]);
    assert_eq!(
        node.commands,
        [
            (Op::CutOff, Some(1), NOW),
            (Op::CutOff, Some(3), NOW),
            (Op::CutOff, Some(12), NOW)
        ]
    );
}

#[test]
fn a_refused_command_answers_04() {
    let mut node = Node::charger();
    node.refuse = Some(CommandError::CauseStillPresent);
    let mut s = signed_slave();
    assert_eq!(write_signed(&mut s, &mut node, 200, &[1]), [1, 0x90, 4]);
    assert_eq!(node.commands, [(Op::Clear, Some(1), NOW)], "it was asked");

    node.commands.clear();
    assert_eq!(write_signed(&mut s, &mut node, 200, &[1, 1, 1]), [1, 0x90, 4]);
    assert_eq!(node.commands.len(), 3, "every coil written 1 is still tried");
    assert_eq!(s.stats().exceptions, 2);
    assert_eq!(s.stats().refused_writes, 0, "authorised, then refused by the node");
    assert_eq!(
        block(&mut s, &mut node).0,
        (u64::from(BOOT) << 32) + 2,
        "an authorised write uses up its challenge even when the node refuses"
    );
}

#[test]
fn a_read_only_slave_refuses_every_write_with_01() {
    let mut node = Node::charger();
    let mut s = slave();
    assert_eq!(block(&mut s, &mut node), (0, 0, 0), "read-only: mode 0, no challenge");
    let well_signed = signed_request(1, &signing::key(), 0, 103, &[1]);
    for request in [
        vec![1, 5, 0, 103, 0xFF, 0x00],
        vec![1, 6, 0, 103, 0, 1],
        vec![1, 15, 0, 100, 0, 12, 2, 0xFF, 0x0F],
        vec![1, 15, 0],
        well_signed,
        fc16(1, 0, &[1]),
    ] {
        assert_eq!(
            rtu(&mut s, &mut node, &request),
            [1, request[1] | 0x80, 1],
            "{request:02X?}"
        );
    }
    assert!(node.commands.is_empty());
    assert_eq!(s.stats().refused_writes, 6);
    assert_eq!(block(&mut s, &mut node).1, 6, "counted in registers 1004-1005");
    assert_eq!(s.challenge(), None);
}

#[test]
fn unsigned_forged_and_replayed_writes_are_refused_with_01() {
    let mut node = Node::charger();
    let mut s = signed_slave();
    let challenge = s.challenge().unwrap();
    let forged = CommandKey::from_bytes([0x5A; 32]);
    let good = signed_request(1, &signing::key(), challenge, 103, &[1]);
    let mut other_value = good.clone();
    // The tag was made for [1]; the value register becomes 0.
    other_value[12] = 0;
    let refused = [
        ("FC05", vec![1, 5, 0, 103, 0xFF, 0x00]),
        ("FC06", vec![1, 6, 0, 103, 0, 1]),
        ("FC15", vec![1, 15, 0, 100, 0, 1, 1, 1]),
        ("another key", signed_request(1, &forged, challenge, 103, &[1])),
        (
            "a stale challenge",
            signed_request(1, &signing::key(), challenge - 1, 103, &[1]),
        ),
        (
            "the next challenge",
            signed_request(1, &signing::key(), challenge + 1, 103, &[1]),
        ),
        ("another coil", {
            let mut r = signed_request(1, &signing::key(), challenge, 103, &[1]);
            r[7..9].copy_from_slice(&104_u16.to_be_bytes());
            r
        }),
        ("a value changed on the way", other_value),
    ];
    for (what, request) in &refused {
        assert_eq!(rtu(&mut s, &mut node, request), [1, request[1] | 0x80, 1], "{what}");
    }
    assert!(node.commands.is_empty());
    assert_eq!(s.challenge(), Some(challenge), "refused writes leave the challenge");
    assert_eq!(block(&mut s, &mut node), (challenge, 8, 1));

    // The genuine write goes through once; recorded and sent again, it is refused.
    assert_eq!(rtu(&mut s, &mut node, &good), [1, 16, 0x03, 0xF2, 0, 7]);
    assert_eq!(node.commands, [(Op::CutOff, Some(4), NOW)]);
    assert_eq!(rtu(&mut s, &mut node, &good), [1, 0x90, 1], "replayed");
    assert_eq!(node.commands.len(), 1);
    assert_eq!(s.stats().refused_writes, 9);

    // After a reboot the boot counter has moved on: old writes stay dead.
    let mut rebooted = Slave::new(1).unwrap().with_command_key(signing::key(), BOOT + 1);
    assert_eq!(rtu(&mut rebooted, &mut node, &good), [1, 0x90, 1]);
    assert_eq!(node.commands.len(), 1);
}

#[test]
fn unmapped_addresses_answer_02() {
    let mut node = Node::charger();
    node.port(1, PortMetric::State, 0.0);
    for (request, what) in [
        ([1, 4, 0, 6, 0, 1], "input register 6"),
        ([1, 4, 0, 99, 0, 2], "a range starting before the port blocks"),
        ([1, 4, 0, 108, 0, 1], "offset 8 of a port block"),
        ([1, 4, 0, 220, 0, 1], "port 13 of a 12-port charger"),
        ([1, 4, 0xFF, 0xFF, 0, 2], "a range past the address space"),
        ([1, 2, 0, 1, 0, 1], "discrete input 1"),
        ([1, 1, 0, 2, 0, 1], "coil 2"),
        ([1, 1, 0, 0, 7, 0xD0], "2000 coils from 0 (a valid quantity)"),
        ([1, 3, 0, 0, 0, 1], "holding register 0"),
        ([1, 3, 0x03, 0xE5, 0, 4], "a read running into the signed-write block"),
        ([1, 3, 0x03, 0xEF, 0, 1], "holding register 1007, past the block"),
        ([1, 3, 0x03, 0xE8, 0, 8], "the block and one more"),
        ([1, 3, 0x03, 0xF2, 0, 1], "the signed-write registers (write only)"),
    ] {
        assert_eq!(
            rtu(&mut signed_slave(), &mut node, &request),
            [1, request[1] | 0x80, 2],
            "{what}"
        );
    }
    let key = signing::key();
    let challenge = u64::from(BOOT) << 32;
    for (request, what) in [
        (
            signed_request(1, &key, challenge, 112, &[1]),
            "the cut_off coil of port 13",
        ),
        (signed_request(1, &key, challenge, 2, &[1]), "coil 2"),
        (
            signed_request(1, &key, challenge, 110, &[1, 1, 1, 1]),
            "ports 11..=14, though 11 and 12 exist",
        ),
        (fc16(1, 0, &[1]), "holding register 0"),
        (fc16(1, 1000, &[0, 0, 0, 0]), "the challenge (read only)"),
        (
            fc16(1, 1011, &[103, 1, 1, 0, 0, 0, 0]),
            "one past the signed-write start",
        ),
    ] {
        assert_eq!(rtu(&mut signed_slave(), &mut node, &request), [1, 0x90, 2], "{what}");
    }
    // The elevator has no coils at all.
    assert_eq!(
        rtu(
            &mut signed_slave(),
            &mut Node::elevator(),
            &signed_request(1, &key, challenge, 0, &[1])
        ),
        [1, 0x90, 2]
    );
    assert!(node.commands.is_empty());
}

#[test]
fn no_built_in_map_has_holding_registers() {
    // Why FC03 answers 02 outside the signed-write block, and why the block
    // can sit at 1000: the day a map gets holding registers, they must stay
    // clear of it, and this test asks for tests.
    for class in DeviceClass::ALL {
        let map = map_for(*class);
        assert!(
            map.entries(MAX_MAP_PORTS)
                .all(|e| e.register.table != Table::HoldingRegister),
            "{class}"
        );
    }
}

#[test]
fn unknown_functions_answer_01() {
    let mut node = Node::charger();
    for function in [0x00, 0x07, 0x08, 0x11, 0x17, 0x2B, 0x41, 0x7F] {
        assert_eq!(
            rtu(&mut slave(), &mut node, &[1, function, 0, 0, 0, 1]),
            [1, function | 0x80, 1],
            "function {function:#04x}"
        );
    }
    assert_eq!(
        rtu(&mut slave(), &mut node, &[1, 0x2B]),
        [1, 0xAB, 1],
        "even without data"
    );
}

#[test]
fn bad_quantities_and_malformed_requests_answer_03() {
    let mut node = Node::charger();
    let key = signing::key();
    let challenge = u64::from(BOOT) << 32;
    let tagged = |first: u16, n: u16, values: &[u16]| {
        let mut words = vec![first, n];
        words.extend_from_slice(values);
        words.extend_from_slice(&signed::tag(&key, challenge, first, values));
        fc16(1, signed::SIGNED_WRITE, &words)
    };
    for (request, what) in [
        (vec![1, 4, 0, 0, 0, 0], "quantity 0"),
        (vec![1, 4, 0, 0, 0, 126], "126 registers"),
        (vec![1, 3, 0, 0, 0, 126], "126 holding registers"),
        (vec![1, 3, 0x03, 0xE8, 0, 0], "0 registers of the block"),
        (vec![1, 2, 0, 0, 0x07, 0xD1], "2001 bits"),
        (vec![1, 1, 0, 0, 0, 0], "0 coils"),
        (vec![1, 4, 0, 0, 0], "a PDU one byte short"),
        (vec![1, 4, 0, 0, 0, 1, 0], "a PDU one byte long"),
        (vec![1, 16, 0, 0, 0, 124, 248], "124 registers"),
        (vec![1, 16, 0, 0, 0, 2, 2, 0, 1], "byte count 2 for 2 registers"),
        (vec![1, 16, 0x03, 0xF2], "a truncated FC16"),
        (
            fc16(1, signed::SIGNED_WRITE, &[103, 1, 1, 0, 0, 0]),
            "no room for the tag",
        ),
        (tagged(103, 2, &[1]), "n says 2, one value follows"),
        (tagged(103, 0, &[]), "n = 0"),
        (tagged(103, 1, &[2]), "a value other than 0 and 1"),
    ] {
        let r = rtu(&mut signed_slave(), &mut node, &request);
        assert_eq!(r, [1, request[1] | 0x80, 3], "{what}");
    }
    assert!(node.commands.is_empty());
}

#[test]
fn frames_for_other_units_are_ignored() {
    let mut node = Node::charger();
    let mut s = Slave::new(7).unwrap();
    assert_eq!(s.unit_id(), 7);
    for unit in [1, 6, 8, 247, 255] {
        assert!(rtu(&mut s, &mut node, &[unit, 4, 0, 0, 0, 1]).is_empty(), "unit {unit}");
    }
    assert!(node.commands.is_empty());
    assert_eq!(rtu(&mut s, &mut node, &[7, 4, 0, 0, 0, 1]), [7, 4, 2, 0, 1]);
    assert_eq!(
        s.stats(),
        SlaveStats {
            requests: 1,
            exceptions: 0,
            bad_frames: 0,
            ignored: 5,
            refused_writes: 0,
        }
    );
    assert!(Slave::new(0).is_none(), "0 is the broadcast address");
    assert!(Slave::new(248).is_none(), "248-255 are reserved");
    assert!(Slave::new(247).is_some());
}

#[test]
fn bad_frames_are_dropped_and_counted() {
    let mut node = Node::charger();
    let mut s = slave();
    let mut frame = with_crc(&[1, 5, 0, 103, 0xFF, 0]);
    frame[3] ^= 0x01;
    assert!(send(&mut s, Transport::Rtu, &frame, &mut node).is_empty(), "bad CRC");
    let mut frame = with_crc(&[1, 4, 0, 0, 0, 1]);
    frame[7] ^= 0x80;
    assert!(
        send(&mut s, Transport::Rtu, &frame, &mut node).is_empty(),
        "bad CRC high byte"
    );
    assert!(send(&mut s, Transport::Rtu, &[], &mut node).is_empty());
    assert!(
        send(&mut s, Transport::Rtu, &with_crc(&[1]), &mut node).is_empty(),
        "no function code"
    );
    let long = with_crc(&[1; 255]);
    assert!(send(&mut s, Transport::Rtu, &long, &mut node).is_empty(), "257 bytes");
    assert!(node.commands.is_empty());
    assert_eq!(
        s.stats(),
        SlaveStats {
            requests: 0,
            exceptions: 0,
            bad_frames: 5,
            ignored: 0,
            refused_writes: 0,
        }
    );
}

#[test]
fn broadcast_writes_are_refused_and_never_answered() {
    // One challenge cannot sign a write for every node on the line.
    let mut node = Node::charger();
    let mut s = signed_slave();
    let challenge = s.challenge().unwrap();
    let tagged = signed_request(0, &signing::key(), challenge, 103, &[1]);
    assert!(rtu(&mut s, &mut node, &tagged).is_empty());
    assert!(rtu(&mut s, &mut node, &[0, 5, 0, 103, 0xFF, 0]).is_empty());
    assert!(node.commands.is_empty());
    assert_eq!(s.challenge(), Some(challenge));
    assert!(
        rtu(&mut s, &mut node, &[0, 4, 0, 0, 0, 1]).is_empty(),
        "a broadcast read"
    );
    assert!(rtu(&mut s, &mut node, &fc16(0, 0, &[1])).is_empty(), "02, silently");
    assert_eq!(
        s.stats(),
        SlaveStats {
            requests: 3,
            exceptions: 3,
            bad_frames: 0,
            ignored: 1,
            refused_writes: 2,
        }
    );
}

#[test]
fn tcp_echoes_the_mbap_header_and_unit_id() {
    let mut node = Node::charger();
    let mut s = slave();
    let request = tcp_frame(0xBEEF, 0xFF, &[4, 0, 0, 0, 2]);
    assert_eq!(
        send(&mut s, Transport::Tcp, &request, &mut node),
        [0xBE, 0xEF, 0, 0, 0, 7, 0xFF, 4, 4, 0, 1, 0, 2]
    );
    for unit in [1, 0] {
        let request = tcp_frame(0x0102, unit, &[4, 0, 2, 0, 1]);
        assert_eq!(
            send(&mut s, Transport::Tcp, &request, &mut node),
            [1, 2, 0, 0, 0, 5, unit, 4, 2, 0, 12],
            "unit {unit}"
        );
    }
    // Exceptions carry the header too.
    let request = tcp_frame(7, 1, &[4, 0, 6, 0, 1]);
    assert_eq!(
        send(&mut s, Transport::Tcp, &request, &mut node),
        [0, 7, 0, 0, 0, 3, 1, 0x84, 2]
    );
    // A signed TCP write.
    let mut s = signed_slave();
    let body = signed_request(0xFF, &signing::key(), s.challenge().unwrap(), 103, &[1]);
    let request = tcp_frame(8, 0xFF, &body[1..]);
    assert_eq!(
        send(&mut s, Transport::Tcp, &request, &mut node),
        [0, 8, 0, 0, 0, 6, 0xFF, 16, 0x03, 0xF2, 0, 7]
    );
    assert_eq!(node.commands, [(Op::CutOff, Some(4), NOW)]);
    let request = tcp_frame(9, 0xFF, &[5, 0, 103, 0xFF, 0]);
    assert_eq!(
        send(&mut s, Transport::Tcp, &request, &mut node),
        [0, 9, 0, 0, 0, 3, 0xFF, 0x85, 1],
        "an unsigned TCP write"
    );
    assert_eq!(s.stats().requests, 2);

    // Other units: ignored.
    assert!(send(&mut s, Transport::Tcp, &tcp_frame(9, 2, &[4, 0, 0, 0, 1]), &mut node).is_empty());
    assert_eq!(s.stats().ignored, 1);
    // Broken headers: dropped.
    let mut wrong_protocol = tcp_frame(9, 1, &[4, 0, 0, 0, 1]);
    wrong_protocol[3] = 1;
    let mut wrong_length = tcp_frame(9, 1, &[4, 0, 0, 0, 1]);
    wrong_length[5] += 1;
    let mut two_frames = tcp_frame(9, 1, &[4, 0, 0, 0, 1]);
    two_frames.extend(tcp_frame(10, 1, &[4, 0, 0, 0, 1]));
    for frame in [
        wrong_protocol,
        wrong_length,
        two_frames,
        vec![0, 9, 0, 0, 0, 1, 1],
        vec![],
    ] {
        assert!(
            send(&mut s, Transport::Tcp, &frame, &mut node).is_empty(),
            "{frame:02X?}"
        );
    }
    assert_eq!(s.stats().bad_frames, 5);
    // An RTU frame has no MBAP header, and a TCP frame no CRC.
    assert!(send(&mut s, Transport::Tcp, &with_crc(&[1, 4, 0, 0, 0, 1]), &mut node).is_empty());
    assert!(send(&mut s, Transport::Rtu, &tcp_frame(1, 1, &[4, 0, 0, 0, 1]), &mut node).is_empty());
}

#[test]
fn registers_not_measured_yet() {
    let mut node = Node::charger();
    assert_eq!(
        read_words(&mut node, 4, 0, 3),
        Ok(vec![1, 2, 12]),
        "identity from boot on"
    );
    assert_eq!(read_words(&mut node, 4, 3, 1), Err(4), "one unknown point");
    assert_eq!(read_words(&mut node, 4, 0, 6), Err(4), "every measured point unknown");
    assert_eq!(read_words(&mut node, 4, port_register(1, 0), 8), Err(4));
    assert_eq!(read_bits(&mut node, 2, 100, 6), Ok(vec![false; 6]), "bits read 0");

    node.set(Point::Metric(Metric::MainsVoltageV), None, 230.1);
    assert_eq!(
        read_words(&mut node, 4, 0, 6),
        Ok(vec![1, 2, 12, 2301, 0, 0]),
        "the rest reads 0"
    );
    assert_eq!(read_words(&mut node, 4, 4, 1), Err(4));

    node.set(Point::Metric(Metric::AmbientTempC), None, f64::NAN);
    assert_eq!(read_words(&mut node, 4, 4, 1), Err(4), "NaN is not a value");
}

#[test]
fn values_out_of_range_saturate() {
    let mut node = Node::charger();
    node.port(1, PortMetric::PowerW, 7_000.0)
        .port(1, PortMetric::CurrentA, -0.5)
        .port(1, PortMetric::TempC, -4_000.0)
        .port(1, PortMetric::EnergyWh, f64::INFINITY)
        .port(1, PortMetric::SessionS, -1.0)
        .port(1, PortMetric::State, 65_535.4);
    let words = read_words(&mut node, 4, port_register(1, 0), 8).unwrap();
    assert_eq!(words, [0xFFFF, 0xFFFF, 0, 0x8000, 0xFFFF, 0xFFFF, 0, 0]);
    node.set(Point::Event(EventCode::Smoke), None, 2.0);
    assert_eq!(read_bits(&mut node, 2, 102, 1), Ok(vec![true]));
}

#[test]
fn rtu_request_len_finds_frame_ends() {
    assert_eq!(rtu_request_len(&[]), RequestLen::NeedMore);
    assert_eq!(rtu_request_len(&[1]), RequestLen::NeedMore);
    for function in 1..=6 {
        assert_eq!(rtu_request_len(&[1, function]), RequestLen::Exactly(8));
    }
    assert_eq!(rtu_request_len(&[1, 15, 0, 100, 0, 12]), RequestLen::NeedMore);
    let fc15 = with_crc(&[1, 15, 0, 100, 0, 12, 2, 5, 8]);
    assert_eq!(rtu_request_len(&fc15), RequestLen::Exactly(fc15.len()));
    assert_eq!(rtu_request_len(&fc15[..7]), RequestLen::Exactly(11));
    assert_eq!(rtu_request_len(&[1, 16, 0, 0, 0, 123, 246]), RequestLen::Exactly(255));
    assert_eq!(
        rtu_request_len(&[1, 16, 0, 0, 0, 124, 248]),
        RequestLen::Unknown,
        "over 256 bytes"
    );
    assert_eq!(rtu_request_len(&[1, 0x2B, 0x0E]), RequestLen::Unknown);
    assert_eq!(rtu_request_len(&[1, 0x83, 2]), RequestLen::Unknown);
    // Every golden request above is found whole.
    let request = [0x01, 0x04, 0x00, 0x00, 0x00, 0x02, 0x71, 0xCB];
    assert_eq!(rtu_request_len(&request), RequestLen::Exactly(request.len()));
}

#[test]
fn tcp_request_len_reads_the_mbap_length() {
    let frame = tcp_frame(5, 1, &[4, 0, 0, 0, 2]);
    assert_eq!(tcp_request_len(&frame[..5]), RequestLen::NeedMore);
    assert_eq!(tcp_request_len(&frame[..6]), RequestLen::Exactly(frame.len()));
    assert_eq!(tcp_request_len(&frame), RequestLen::Exactly(12));
    assert_eq!(
        tcp_request_len(&[0, 1, 0, 1, 0, 6]),
        RequestLen::Unknown,
        "protocol id 1"
    );
    assert_eq!(
        tcp_request_len(&[0, 1, 0, 0, 0, 1]),
        RequestLen::Unknown,
        "no function code"
    );
    assert_eq!(
        tcp_request_len(&[0, 1, 0, 0, 0, 255]),
        RequestLen::Unknown,
        "PDU over 253 bytes"
    );
    assert_eq!(tcp_request_len(&[0, 1, 0, 0, 0, 254]), RequestLen::Exactly(260));
}

#[test]
fn rtu_frame_gap_is_three_and_a_half_characters() {
    assert_eq!(rtu_frame_gap_us(9_600), 4_011);
    assert_eq!(rtu_frame_gap_us(19_200), 2_006);
    assert_eq!(rtu_frame_gap_us(38_400), 1_750, "fixed above 19200 baud");
    assert_eq!(rtu_frame_gap_us(115_200), 1_750);
    assert_eq!(rtu_frame_gap_us(0), u32::MAX);
}

/// `rmodbus`'s `VectorTrait` over a `Vec`, so its client (an independent
/// implementation of the framing) can build requests and parse responses.
#[derive(Debug, Default)]
struct Buf<T>(Vec<T>);

impl<T: Copy> rmodbus::VectorTrait<T> for Buf<T> {
    fn push(&mut self, value: T) -> Result<(), rmodbus::ErrorKind> {
        self.0.push(value);
        Ok(())
    }
    fn extend(&mut self, other: &[T]) -> Result<(), rmodbus::ErrorKind> {
        self.0.extend_from_slice(other);
        Ok(())
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    fn clear(&mut self) {
        self.0.clear();
    }
    fn cut_end(&mut self, len_to_cut: usize, _value: T) {
        let len = self.0.len().saturating_sub(len_to_cut);
        self.0.truncate(len);
    }
    fn as_slice(&self) -> &[T] {
        &self.0
    }
    fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.0
    }
    fn resize(&mut self, new_len: usize, value: T) -> Result<(), rmodbus::ErrorKind> {
        self.0.resize(new_len, value);
        Ok(())
    }
    fn replace(&mut self, index: usize, value: T) {
        self.0[index] = value;
    }
}

#[test]
fn rmodbus_client_agrees_over_rtu_and_tcp() {
    use rmodbus::ModbusProto;
    use rmodbus::client::ModbusRequest;

    let mut node = Node::charger();
    node.port(4, PortMetric::TempC, -12.5).port(4, PortMetric::State, 2.0);
    node.set(Point::Event(EventCode::Smoke), None, 1.0);
    let mut s = signed_slave();
    for (proto, transport) in [
        (ModbusProto::Rtu, Transport::Rtu),
        (ModbusProto::TcpUdp, Transport::Tcp),
    ] {
        let mut client = ModbusRequest::new(1, proto);
        client.tr_id = 0x4242;
        let mut request = Buf::default();

        client.generate_get_inputs(0, 3, &mut request).unwrap();
        let response = send(&mut s, transport, &request.0, &mut node);
        let mut words = Buf::<u16>::default();
        client.parse_u16(&response, &mut words).unwrap();
        assert_eq!(words.0, [MAP_VERSION, 2, 12]);

        client
            .generate_get_inputs(port_register(4, 3), 1, &mut request)
            .unwrap();
        let response = send(&mut s, transport, &request.0, &mut node);
        let mut temps = Buf::<i16>::default();
        client.parse_i16(&response, &mut temps).unwrap();
        assert_eq!(temps.0, [-125]);

        client.generate_get_discretes(100, 6, &mut request).unwrap();
        let response = send(&mut s, transport, &request.0, &mut node);
        let mut bits = Buf::<bool>::default();
        client.parse_bool(&response, &mut bits).unwrap();
        assert_eq!(bits.0, [false, false, true, false, false, false]);

        // Unsigned coil writes: refused.
        client.generate_set_coil(103, 1_u8, &mut request).unwrap();
        let response = send(&mut s, transport, &request.0, &mut node);
        assert_eq!(client.parse_ok(&response), Err(rmodbus::ErrorKind::IllegalFunction));

        // Signed: read the challenge, write coil 103, then coils 200-203.
        for (first, values) in [(103, vec![1]), (200, vec![0, 1, 0, 1])] {
            client
                .generate_get_holdings(signed::CHALLENGE, 4, &mut request)
                .unwrap();
            let response = send(&mut s, transport, &request.0, &mut node);
            let mut words = Buf::<u16>::default();
            client.parse_u16(&response, &mut words).unwrap();
            let challenge = signed::challenge_of(words.0.try_into().unwrap());
            let registers = signed::request(&signing::key(), challenge, first, &values).unwrap();
            client
                .generate_set_holdings_bulk(signed::SIGNED_WRITE, &registers, &mut request)
                .unwrap();
            let response = send(&mut s, transport, &request.0, &mut node);
            client.parse_ok(&response).unwrap();
        }

        client.generate_get_inputs(6, 1, &mut request).unwrap();
        let response = send(&mut s, transport, &request.0, &mut node);
        assert_eq!(client.parse_ok(&response), Err(rmodbus::ErrorKind::IllegalDataAddress));

        client.generate_get_holdings(0, 1, &mut request).unwrap();
        let response = send(&mut s, transport, &request.0, &mut node);
        assert_eq!(client.parse_ok(&response), Err(rmodbus::ErrorKind::IllegalDataAddress));
    }
    let expected = [
        (Op::CutOff, Some(4), NOW),
        (Op::Clear, Some(2), NOW),
        (Op::Clear, Some(4), NOW),
    ];
    assert_eq!(node.commands, [expected, expected].concat());
}

/// Serves Modbus TCP on `listener` until the test process ends, one
/// connection at a time, splitting the stream with `tcp_request_len`.
fn serve_tcp(listener: &TcpListener, node: &Mutex<Node>) {
    let mut slave = signed_slave();
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { return };
        serve_connection(&mut slave, &mut stream, node);
    }
}

fn serve_connection(slave: &mut Slave, stream: &mut TcpStream, node: &Mutex<Node>) {
    let mut received = Vec::new();
    let mut chunk = [0_u8; 512];
    loop {
        match tcp_request_len(&received) {
            RequestLen::Exactly(len) if received.len() >= len => {
                let frame: Vec<u8> = received.drain(..len).collect();
                let mut response = [0; MAX_ADU_LEN];
                let len = slave.handle(Transport::Tcp, &frame, &mut *node.lock().unwrap(), NOW, &mut response);
                if stream.write_all(&response[..len]).is_err() {
                    return;
                }
                continue;
            }
            RequestLen::Unknown => return,
            RequestLen::Exactly(_) | RequestLen::NeedMore => {}
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => received.extend_from_slice(&chunk[..n]),
        }
    }
}

fn mbpoll(port: u16, args: &[&str]) -> String {
    let (ok, stdout) = mbpoll_run(port, args);
    assert!(ok, "mbpoll {args:?} failed:\n{stdout}");
    stdout
}

/// Runs mbpoll; whether it succeeded, and its stdout and stderr.
fn mbpoll_run(port: u16, args: &[&str]) -> (bool, String) {
    let port = port.to_string();
    let output = Command::new("mbpoll")
        .args(["-m", "tcp", "-p", &port, "-1", "-o", "5"])
        .args(args)
        .output();
    let output = match output {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "mbpoll is not installed: this test runs a real Modbus master against the slave. \
             Install it with scripts/install-test-deps.sh (Debian package `mbpoll`)"
        ),
        Err(e) => panic!("cannot run mbpoll: {e}"),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// The values mbpoll printed, by 1-based reference (`[ref]: \tvalue`).
fn mbpoll_values(stdout: &str) -> Vec<(u32, String)> {
    stdout
        .lines()
        .filter_map(|line| {
            let (reference, value) = line.trim().strip_prefix('[')?.split_once("]:")?;
            Some((reference.parse().ok()?, value.trim().to_owned()))
        })
        .collect()
}

#[test]
fn a_real_master_mbpoll_reads_and_writes_over_tcp() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let node = Arc::new(Mutex::new(Node::charger()));
    node.lock()
        .unwrap()
        .port(4, PortMetric::TempC, 41.7)
        .set(Point::Event(EventCode::Leakage), None, 1.0);
    let served = Arc::clone(&node);
    // Never joined: it blocks in accept() until the test binary exits.
    std::thread::spawn(move || serve_tcp(&listener, &served));

    let as_strings = |v: &[(u32, &str)]| v.iter().map(|(r, s)| (*r, (*s).to_owned())).collect::<Vec<_>>();

    // Input registers 1-3 (PDU 0-2): map version, class id, port count.
    let out = mbpoll(port, &["-a", "1", "-t", "3", "-r", "1", "-c", "3", "127.0.0.1"]);
    assert_eq!(
        mbpoll_values(&out),
        as_strings(&[(1, "1"), (2, "2"), (3, "12")]),
        "mbpoll output:\n{out}"
    );
    // Unit 255, PDU addressing: port 4's temp_c at 133.
    let out = mbpoll(port, &["-a", "255", "-0", "-t", "3", "-r", "133", "127.0.0.1"]);
    assert_eq!(
        mbpoll_values(&out),
        as_strings(&[(133, "417")]),
        "mbpoll output:\n{out}"
    );
    // Discrete inputs 100-105 (PDU): the leakage event is bit 103.
    let out = mbpoll(port, &["-a", "1", "-0", "-t", "1", "-r", "100", "-c", "6", "127.0.0.1"]);
    assert_eq!(
        mbpoll_values(&out),
        as_strings(&[(100, "0"), (101, "0"), (102, "0"), (103, "1"), (104, "0"), (105, "0")]),
        "mbpoll output:\n{out}"
    );
    // Write 1 to coil 103 (PDU), cut_off on port 4, the plain way: refused.
    let (ok, out) = mbpoll_run(port, &["-a", "1", "-0", "-t", "0", "-r", "103", "127.0.0.1", "1"]);
    assert!(!ok, "an unsigned coil write must fail:\n{out}");
    assert!(node.lock().unwrap().commands.is_empty());

    // Signed: read the challenge (holding registers 1000-1003), tag, write at 1010.
    let read_block = || {
        let out = mbpoll(
            port,
            &["-a", "1", "-0", "-t", "4:hex", "-r", "1000", "-c", "7", "127.0.0.1"],
        );
        let words: Vec<u16> = mbpoll_values(&out)
            .iter()
            .map(|(_, v)| u16::from_str_radix(v.trim_start_matches("0x"), 16).unwrap())
            .collect();
        assert_eq!(words.len(), 7, "mbpoll output:\n{out}");
        words
    };
    let words = read_block();
    assert_eq!(words[4..], [0, 1, 1], "one refused write counted; signed mode");
    let challenge = signed::challenge_of(words[..4].try_into().unwrap());
    let registers = signed::request(&signing::key(), challenge, 103, &[1]).unwrap();
    let values: Vec<String> = registers.iter().map(u16::to_string).collect();
    let mut args = vec!["-a", "1", "-0", "-t", "4", "-r", "1010", "127.0.0.1"];
    args.extend(values.iter().map(String::as_str));
    mbpoll(port, &args);
    assert_eq!(node.lock().unwrap().commands, [(Op::CutOff, Some(4), NOW)]);

    // The same write again: the challenge has moved on, refused.
    let (ok, out) = mbpoll_run(port, &args);
    assert!(!ok, "a replayed write must fail:\n{out}");
    assert_eq!(node.lock().unwrap().commands.len(), 1);
    assert_eq!(read_block()[4..], [0, 2, 1]);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut node = Node::charger();
        let mut s = slave();
        for transport in [Transport::Rtu, Transport::Tcp] {
            let mut response = [0; MAX_ADU_LEN];
            let len = s.handle(transport, &bytes, &mut node, NOW, &mut response);
            prop_assert!(len <= MAX_ADU_LEN);
        }
        let _ = rtu_request_len(&bytes);
        let _ = tcp_request_len(&bytes);
    }

    /// Random PDUs in valid frames get past the CRC and the MBAP checks, so
    /// they reach the request parsing; every answer is a well-formed frame.
    #[test]
    fn arbitrary_pdus_get_well_formed_answers(
        function in prop_oneof![Just(1_u8), Just(2), Just(3), Just(4), Just(5), Just(6), Just(15), Just(16), any::<u8>()],
        address in prop_oneof![0_u16..8, 95_u16..230, any::<u16>()],
        rest in proptest::collection::vec(any::<u8>(), 0..260),
        unit in prop_oneof![Just(0_u8), Just(1), Just(0xFF), any::<u8>()],
        elevator in any::<bool>(),
        keyed in any::<bool>(),
    ) {
        let mut node = if elevator { Node::elevator() } else { Node::charger() };
        node.port(2, PortMetric::TempC, 25.0).set(Point::Metric(Metric::Floor), None, 3.0);
        let mut s = if keyed { signed_slave() } else { slave() };
        let mut pdu = vec![function];
        pdu.extend_from_slice(&address.to_be_bytes());
        pdu.extend_from_slice(&rest);
        pdu.truncate(253);

        let mut body = vec![unit];
        body.extend_from_slice(&pdu);
        let response = send(&mut s, Transport::Rtu, &with_crc(&body), &mut node);
        if !response.is_empty() {
            prop_assert!(response.len() <= 256);
            let (head, tail) = response.split_at(response.len() - 2);
            prop_assert_eq!(tail, crc(head));
            prop_assert_eq!(head[0], 1);
            prop_assert!(head[1] == function || head[1] == function | 0x80);
            if head[1] & 0x80 != 0 {
                prop_assert_eq!(head.len(), 3);
                prop_assert!((1..=4).contains(&head[2]));
            }
        }

        let request = tcp_frame(0x1234, unit, &pdu);
        let response = send(&mut s, Transport::Tcp, &request, &mut node);
        if !response.is_empty() {
            prop_assert_eq!(&response[..4], &request[..4]);
            prop_assert_eq!(usize::from(u16::from_be_bytes([response[4], response[5]])), response.len() - 6);
            prop_assert_eq!(response[6], unit);
            prop_assert!(response[7] == function || response[7] == function | 0x80);
        }
        let stats = s.stats();
        prop_assert_eq!(stats.requests + stats.ignored + stats.bad_frames, 2);
        // Without the key nobody writes: no random frame carries a valid tag.
        prop_assert!(node.commands.is_empty());
    }
}
