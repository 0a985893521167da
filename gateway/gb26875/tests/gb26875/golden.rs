//! Frames written out byte by byte from GB/T 26875.3-2011's layout, one
//! field a line, with checksums summed by hand (every byte of the control
//! unit and the application data, modulo 256): what the encoder must write
//! and the decoder must read, in both directions.

use gb26875::data::{analog_type, component_status, component_type, device_status, system_type};
use gb26875::{
    Address, Command, ComponentAnalog, ComponentStatus, Description, DeviceStatus, Frame, Parsed, TimeLabel, Unit,
    Version, parse,
};

use crate::hex;

/// 2026-12-04 16:55:29 (China).
const T: TimeLabel = TimeLabel {
    second: 29,
    minute: 55,
    hour: 16,
    day: 4,
    month: 12,
    year: 26,
};
/// 2026-12-04 17:00:00 (China).
const T2: TimeLabel = TimeLabel {
    second: 0,
    minute: 0,
    hour: 17,
    day: 4,
    month: 12,
    year: 26,
};

fn device() -> Address {
    Address::from_hex("0A0B0C0D0E0F").unwrap()
}

fn centre() -> Address {
    Address::from_hex("000000000001").unwrap()
}

fn check(bytes: &[u8], frame: &Frame, unit: Option<&Unit>) {
    assert_eq!(frame.encode().unwrap(), bytes, "encoded");
    match parse(bytes) {
        Parsed::Frame { frame: f, len } => {
            assert_eq!(len, bytes.len());
            assert_eq!(&f, frame);
        }
        other => panic!("not decoded: {other:?}"),
    }
    if let Some(unit) = unit {
        assert_eq!(unit.encode().unwrap(), frame.data, "unit encoded");
        assert_eq!(&Unit::decode(&frame.data).unwrap(), unit, "unit decoded");
    }
}

#[test]
fn time_labels_are_china_time() {
    // 2026-12-04T08:55:29Z is 16:55:29 in China.
    let ms = 1_796_374_529_000;
    assert_eq!(TimeLabel::from_unix_ms(ms + 999, gb26875::CHINA_OFFSET_SECS), T);
    assert_eq!(T.to_unix_ms(gb26875::CHINA_OFFSET_SECS), Some(ms));
    assert_eq!(T.to_wire(), [0x1d, 0x37, 0x10, 0x04, 0x0c, 0x1a]);
    let bad = TimeLabel { month: 13, ..T };
    assert_eq!(bad.to_unix_ms(gb26875::CHINA_OFFSET_SECS), None);
}

#[test]
fn addresses_are_written_most_significant_first_and_sent_low_byte_first() {
    let a = device();
    assert_eq!(a.to_wire(), [0x0f, 0x0e, 0x0d, 0x0c, 0x0b, 0x0a]);
    assert_eq!(Address::from_wire(a.to_wire()), a);
    assert_eq!(a.to_string(), "0a0b0c0d0e0f");
    assert!(Address::from_hex("0A0B0C0D0E0").is_err());
    assert!(Address::from_hex("0A0B0C0D0E0G").is_err());
    assert!(Address::from_hex("+A0B0C0D0E0F").is_err());
}

#[test]
fn a_fire_pump_started_component_status() {
    let bytes = hex("
        40 40                   // start @@
        02 01                   // serial 258, low byte first
        01 00                   // version 1.0 (main, user)
        1d 37 10 04 0c 1a       // 16:55:29 4 Dec 2026: s m h d m y-2000
        0f 0e 0d 0c 0b 0a       // source 0a0b0c0d0e0f, low byte first
        01 00 00 00 00 00       // destination 000000000001
        30 00                   // 48 bytes of application data
        02                      // command 2: send data
        02                      // type 2: component running status
        01                      // one object
        0b                      // system type 11: fire hydrant system
        01                      // system address 1
        5b                      // component type 91: fire pump
        65 00 00 00             // component address 101
        21 00                   // status: bit 0 normal + bit 5 started
        31 ba c5 cf fb b7 c0 b1 c3  // \"1号消防泵\" in GB 18030 (9 bytes)
        00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  // NUL to 31
        1d 37 10 04 0c 1a       // when it started
        f3                      // checksum
        23 23                   // end ##
        ");
    let unit = Unit::ComponentStatus(vec![ComponentStatus {
        system_type: system_type::HYDRANT,
        system_address: 1,
        component_type: component_type::FIRE_PUMP,
        component_address: 101,
        status: component_status::NORMAL | component_status::STARTED,
        description: Description::from_text("1号消防泵"),
        time: T,
    }]);
    let frame = Frame {
        serial: 258,
        version: Version { major: 1, minor: 0 },
        time: T,
        source: device(),
        destination: centre(),
        command: Command::SendData,
        data: unit.encode().unwrap(),
    };
    check(&bytes, &frame, Some(&unit));
    let Unit::ComponentStatus(v) = Unit::decode(&frame.data).unwrap() else {
        panic!()
    };
    assert_eq!(v[0].description.text(), "1号消防泵");
}

#[test]
fn pressure_and_level_analog_values() {
    let bytes = hex("
        40 40                   // start
        03 01                   // serial 259
        01 00                   // version 1.0
        1d 37 10 04 0c 1a       // time label
        0f 0e 0d 0c 0b 0a       // source
        01 00 00 00 00 00       // destination
        22 00                   // 34 bytes = 2 + 2 x 16
        02                      // send data
        03                      // type 3: analog values
        02                      // two objects
        0b 01                   // hydrant system, address 1
        63                      // component type 99: pressure switch
        66 00 00 00             // component address 102
        05                      // analog type 5: pressure, 0.1 kPa
        ac 0d                   // 3500 = 350.0 kPa = 0.35 MPa
        1d 37 10 04 0c 1a       // measured at
        0b 01                   // hydrant system, address 1
        5c                      // component type 92: fire water tank
        67 00 00 00             // component address 103
        02                      // analog type 2: height, 0.01 m
        eb 00                   // 235 = 2.35 m
        1d 37 10 04 0c 1a       // measured at
        73                      // checksum
        23 23                   // end
        ");
    let unit = Unit::ComponentAnalog(vec![
        ComponentAnalog {
            system_type: system_type::HYDRANT,
            system_address: 1,
            component_type: component_type::PRESSURE_SWITCH,
            component_address: 102,
            analog_type: analog_type::PRESSURE_KPA,
            value: 3500,
            time: T,
        },
        ComponentAnalog {
            system_type: system_type::HYDRANT,
            system_address: 1,
            component_type: component_type::WATER_TANK,
            component_address: 103,
            analog_type: analog_type::HEIGHT_CM,
            value: 235,
            time: T,
        },
    ]);
    let frame = Frame {
        serial: 259,
        version: Version::default(),
        time: T,
        source: device(),
        destination: centre(),
        command: Command::SendData,
        data: unit.encode().unwrap(),
    };
    check(&bytes, &frame, Some(&unit));
}

#[test]
fn the_device_s_running_status_heartbeat() {
    let bytes = hex("
        40 40  04 01  01 00     // start, serial 260, version 1.0
        1d 37 10 04 0c 1a       // time label
        0f 0e 0d 0c 0b 0a       // source
        01 00 00 00 00 00       // destination
        09 00  02               // 9 bytes, send data
        15 01                   // type 21: device running status, one object
        01                      // bit 0: normal monitoring
        1d 37 10 04 0c 1a       // when
        90  23 23               // checksum, end
        ");
    let unit = Unit::DeviceStatus(vec![DeviceStatus {
        status: device_status::NORMAL,
        time: T,
    }]);
    let frame = Frame {
        serial: 260,
        version: Version::default(),
        time: T,
        source: device(),
        destination: centre(),
        command: Command::SendData,
        data: unit.encode().unwrap(),
    };
    check(&bytes, &frame, Some(&unit));
}

#[test]
fn the_centre_s_confirm_time_sync_and_reads() {
    // The centre confirms serial 258: no application data.
    let confirm = hex("
        40 40  02 01  01 00     // start, serial 258 (the one confirmed), 1.0
        00 00 11 04 0c 1a       // 17:00:00 4 Dec 2026
        01 00 00 00 00 00       // source: the centre
        0f 0e 0d 0c 0b 0a       // destination: the device
        00 00  03               // no data, command 3: confirm
        8e  23 23               // checksum, end
        ");
    check(
        &confirm,
        &Frame {
            serial: 258,
            version: Version::default(),
            time: T2,
            source: centre(),
            destination: device(),
            command: Command::Confirm,
            data: Vec::new(),
        },
        None,
    );
    // Time sync: command 1, type 90, the time to set.
    let sync = hex("
        40 40  07 00  01 00     // start, serial 7, 1.0
        00 00 11 04 0c 1a       // time label
        01 00 00 00 00 00       // source: centre
        0f 0e 0d 0c 0b 0a       // destination: device
        08 00  01               // 8 bytes, command 1: control
        5a 01                   // type 90: sync the device's clock, one object
        00 00 11 04 0c 1a       // 17:00:00 4 Dec 2026
        2e  23 23               // checksum, end
        ");
    check(
        &sync,
        &Frame {
            serial: 7,
            version: Version::default(),
            time: T2,
            source: centre(),
            destination: device(),
            command: Command::Control,
            data: Unit::SyncTime(T2).encode().unwrap(),
        },
        Some(&Unit::SyncTime(T2)),
    );
    // Reads: type 81 (device status) and 88 (device clock), one reserved byte.
    let read_status = hex("
        40 40  08 00  01 00  00 00 11 04 0c 1a   // start, serial 8, 1.0, time
        01 00 00 00 00 00  0f 0e 0d 0c 0b 0a     // centre to device
        03 00  04                                // 3 bytes, command 4: request
        51 01 00                                 // type 81, one object: reserved
        e9  23 23                                // checksum, end
        ");
    check(
        &read_status,
        &Frame {
            serial: 8,
            version: Version::default(),
            time: T2,
            source: centre(),
            destination: device(),
            command: Command::Request,
            data: vec![81, 1, 0],
        },
        Some(&Unit::ReadDeviceStatus),
    );
    let read_time = hex("
        40 40  09 00  01 00  00 00 11 04 0c 1a   // start, serial 9, 1.0, time
        01 00 00 00 00 00  0f 0e 0d 0c 0b 0a     // centre to device
        03 00  04  58 01 00                      // request, type 88
        f1  23 23                                // checksum, end
        ");
    check(
        &read_time,
        &Frame {
            serial: 9,
            version: Version::default(),
            time: T2,
            source: centre(),
            destination: device(),
            command: Command::Request,
            data: vec![88, 1, 0],
        },
        Some(&Unit::ReadDeviceTime),
    );
}

/// The session's answers to the centre's frames above, byte for byte.
#[test]
fn the_device_answers_sync_and_reads_byte_for_byte() {
    use gb26875::{Session, SessionConfig};
    let mut s = Session::new(SessionConfig::new(device(), centre()));
    // The caller's clock says 16:55:29.400; the centre says it is 17:00:00.
    let now = 1_796_374_529_400;
    let _ = s.connected(now);
    let sync = hex(
        "40 40 07 00 01 00 00 00 11 04 0c 1a 01 00 00 00 00 00 0f 0e 0d 0c 0b 0a 08 00 01 5a 01 00 00 11 04 0c 1a 2e 23 23",
    );
    let out = s.received(&sync, now);
    let confirm = hex("
        40 40  07 00  01 00     // serial 7 (the centre's), 1.0
        00 00 11 04 0c 1a       // already on the centre's clock
        0f 0e 0d 0c 0b 0a       // source: device
        01 00 00 00 00 00       // destination: centre
        00 00  03               // no data, confirm
        92  23 23
        ");
    assert_eq!(out[0], gb26875::Event::Send(confirm));
    assert!(matches!(out[1], gb26875::Event::ClockSet(_)), "{out:?}");
    let read_status =
        hex("40 40 08 00 01 00 00 00 11 04 0c 1a 01 00 00 00 00 00 0f 0e 0d 0c 0b 0a 03 00 04 51 01 00 e9 23 23");
    let reply = hex("
        40 40  08 00  01 00  00 00 11 04 0c 1a   // serial 8, 1.0, time
        0f 0e 0d 0c 0b 0a  01 00 00 00 00 00     // device to centre
        09 00  05                                // 9 bytes, command 5: reply
        15 01  01  00 00 11 04 0c 1a             // type 21: normal, at 17:00:00
        f0  23 23
        ");
    assert_eq!(
        s.received(&read_status, now),
        vec![gb26875::Event::Send(reply), gb26875::Event::Answered(81)]
    );
    let read_time =
        hex("40 40 09 00 01 00 00 00 11 04 0c 1a 01 00 00 00 00 00 0f 0e 0d 0c 0b 0a 03 00 04 58 01 00 f1 23 23");
    let reply = hex("
        40 40  09 00  01 00  00 00 11 04 0c 1a   // serial 9, 1.0, time
        0f 0e 0d 0c 0b 0a  01 00 00 00 00 00     // device to centre
        08 00  05                                // 8 bytes, reply
        1c 01  00 00 11 04 0c 1a                 // type 28: the device's clock
        f6  23 23
        ");
    assert_eq!(
        s.received(&read_time, now),
        vec![gb26875::Event::Send(reply), gb26875::Event::Answered(88)]
    );
}

#[test]
fn descriptions_are_cut_at_a_whole_character() {
    // 16 Chinese characters are 32 bytes in GB 18030: the 16th does not fit.
    let d = Description::from_text("一二三四五六七八九十一二三四五六");
    assert_eq!(d.text(), "一二三四五六七八九十一二三四五");
    assert_eq!(d.0[30], 0);
    assert_eq!(Description::from_text("").text(), "");
}
