//! The session on a manual clock: confirms, resends, reconnects, denies,
//! priorities, heartbeats, answers.

use gb26875::data::{component_status, device_status};
use gb26875::{
    Address, Command, ComponentStatus, Description, Event, Frame, Parsed, Session, SessionConfig, TimeLabel, Unit,
    parse,
};

const T0: i64 = 1_796_374_529_000;

fn device() -> Address {
    Address::from_hex("0a0b0c0d0e0f").unwrap()
}

fn centre() -> Address {
    Address::from_hex("000000000001").unwrap()
}

fn session() -> Session {
    Session::new(SessionConfig::new(device(), centre()))
}

fn frame_of(bytes: &[u8]) -> Frame {
    match parse(bytes) {
        Parsed::Frame { frame, len } => {
            assert_eq!(len, bytes.len());
            frame
        }
        other => panic!("{other:?}"),
    }
}

fn sent(events: &[Event]) -> Vec<Frame> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Send(b) => Some(frame_of(b)),
            _ => None,
        })
        .collect()
}

fn from_centre(serial: u16, command: Command, data: Vec<u8>) -> Vec<u8> {
    Frame {
        serial,
        version: gb26875::Version::default(),
        time: TimeLabel::from_unix_ms(T0, gb26875::CHINA_OFFSET_SECS),
        source: centre(),
        destination: device(),
        command,
        data,
    }
    .encode()
    .unwrap()
}

fn alarm(address: u32) -> Vec<u8> {
    Unit::ComponentStatus(vec![ComponentStatus {
        system_type: 1,
        system_address: 1,
        component_type: 1,
        component_address: address,
        status: component_status::NORMAL | component_status::FIRE_ALARM,
        description: Description::from_text("火灾报警控制器"),
        time: TimeLabel::from_unix_ms(T0, gb26875::CHINA_OFFSET_SECS),
    }])
    .encode()
    .unwrap()
}

/// Connects and confirms the greeting heartbeat: the line is free.
fn ready(s: &mut Session, now: i64) {
    let out = s.connected(now);
    let f = sent(&out);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].command, Command::SendData);
    assert!(matches!(Unit::decode(&f[0].data).unwrap(), Unit::DeviceStatus(_)));
    let out = s.received(&from_centre(f[0].serial, Command::Confirm, Vec::new()), now);
    assert!(sent(&out).is_empty(), "{out:?}");
}

#[test]
fn an_upload_is_sent_at_once_and_confirmed_by_its_serial() {
    let mut s = session();
    ready(&mut s, T0);
    let out = s.upload(7, alarm(1), true, T0);
    let f = sent(&out);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].serial, 1, "the greeting took serial 0");
    assert_eq!(f[0].source, device());
    assert_eq!(f[0].destination, centre());
    assert_eq!(f[0].data, alarm(1));
    // A confirm of another serial is not this one's.
    let out = s.received(&from_centre(0, Command::Confirm, Vec::new()), T0 + 10);
    assert!(matches!(out[0], Event::Ignored(_)), "{out:?}");
    assert!(s.holds(7));
    let out = s.received(&from_centre(1, Command::Confirm, Vec::new()), T0 + 20);
    assert_eq!(out, vec![Event::Confirmed(7)]);
    assert!(!s.holds(7));
    assert_eq!(s.backlog(), 0);
}

#[test]
fn an_unconfirmed_frame_is_sent_three_times_then_again_on_a_new_connection() {
    let mut s = session();
    ready(&mut s, T0);
    let first = s.upload(1, alarm(1), true, T0);
    let Event::Send(bytes) = &first[0] else { panic!() };
    assert!(s.tick(T0 + 4_999).is_empty());
    assert_eq!(s.next_wake(), Some(T0 + 5_000));
    assert_eq!(
        s.tick(T0 + 5_000),
        vec![Event::Send(bytes.clone())],
        "second try, same bytes"
    );
    assert_eq!(s.tick(T0 + 10_000), vec![Event::Send(bytes.clone())], "third try");
    assert_eq!(s.tick(T0 + 15_000), vec![Event::Reconnect]);
    // Nothing goes out while disconnected.
    s.disconnected();
    assert!(s.tick(T0 + 60_000).is_empty());
    assert!(s.upload(2, alarm(2), true, T0 + 61_000).is_empty());
    // On the new connection the same frame goes first, with fresh tries.
    assert_eq!(s.connected(T0 + 62_000), vec![Event::Send(bytes.clone())]);
    assert_eq!(s.tick(T0 + 67_000), vec![Event::Send(bytes.clone())]);
    let serial = frame_of(bytes).serial;
    let out = s.received(&from_centre(serial, Command::Confirm, Vec::new()), T0 + 67_500);
    assert_eq!(out[0], Event::Confirmed(1));
    let next = sent(&out);
    assert_eq!(next.len(), 1, "the queued upload follows: {out:?}");
    assert_eq!(next[0].data, alarm(2));
}

#[test]
fn a_deny_ends_the_upload_and_the_next_goes() {
    let mut s = session();
    ready(&mut s, T0);
    let f = sent(&s.upload(1, alarm(1), true, T0));
    let _ = s.upload(2, alarm(2), true, T0);
    let out = s.received(&from_centre(f[0].serial, Command::Deny, Vec::new()), T0 + 5);
    assert_eq!(out[0], Event::Denied(1));
    assert_eq!(sent(&out)[0].data, alarm(2));
    assert!(!s.holds(1));
    assert!(s.tick(T0 + 5_004).is_empty(), "the denied frame is not sent again");
}

#[test]
fn urgent_uploads_overtake_routine_ones() {
    let mut s = session();
    ready(&mut s, T0);
    let f = sent(&s.upload(1, vec![3, 0], false, T0));
    let _ = s.upload(2, vec![3, 0], false, T0);
    let _ = s.upload(3, alarm(3), true, T0);
    let out = s.received(&from_centre(f[0].serial, Command::Confirm, Vec::new()), T0);
    assert_eq!(sent(&out)[0].data, alarm(3));
}

#[test]
fn silence_is_filled_with_heartbeats_carrying_the_status() {
    let mut s = session();
    ready(&mut s, T0);
    assert!(s.tick(T0 + 59_999).is_empty());
    s.set_status(device_status::NORMAL | device_status::MAIN_POWER_FAULT);
    let f = sent(&s.tick(T0 + 60_000));
    assert_eq!(f.len(), 1);
    let Unit::DeviceStatus(v) = Unit::decode(&f[0].data).unwrap() else {
        panic!()
    };
    assert_eq!(v[0].status, device_status::NORMAL | device_status::MAIN_POWER_FAULT);
    // A heartbeat is confirmed like anything else, and reports no upload.
    let out = s.received(&from_centre(f[0].serial, Command::Confirm, Vec::new()), T0 + 60_001);
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn requests_it_does_not_serve_are_denied_with_their_serial() {
    let mut s = session();
    ready(&mut s, T0);
    // 62: read a facility component's status.
    let out = s.received(&from_centre(40, Command::Request, vec![62, 1, 1, 1]), T0);
    let f = sent(&out);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].command, Command::Deny);
    assert_eq!(f[0].serial, 40);
    assert!(f[0].data.is_empty());
    assert_eq!(out[1], Event::Refused(4, Some(62)));
    // A time sync with a date that does not exist is denied too.
    let out = s.received(&from_centre(41, Command::Control, vec![90, 1, 0, 0, 0, 31, 2, 26]), T0);
    assert_eq!(sent(&out)[0].command, Command::Deny);
}

#[test]
fn a_time_sync_moves_the_labels_to_the_centre_s_clock() {
    let mut s = session();
    ready(&mut s, T0);
    // The centre is 2 h 4 min 31 s ahead.
    let centre_time = TimeLabel {
        second: 0,
        minute: 0,
        hour: 19,
        day: 4,
        month: 12,
        year: 26,
    };
    let out = s.received(
        &from_centre(5, Command::Control, Unit::SyncTime(centre_time).encode().unwrap()),
        T0 + 250,
    );
    let f = sent(&out);
    assert_eq!(f[0].command, Command::Confirm);
    assert_eq!(f[0].serial, 5);
    assert_eq!(f[0].time, centre_time);
    assert_eq!(s.clock_offset_ms(), (2 * 3600 + 4 * 60 + 31) * 1000);
    let up = sent(&s.upload(1, alarm(1), true, T0 + 1_250));
    assert_eq!(
        up[0].time,
        TimeLabel {
            second: 1,
            ..centre_time
        }
    );
}

#[test]
fn garbage_and_frames_for_others_are_passed_over() {
    let mut s = session();
    ready(&mut s, T0);
    let f = sent(&s.upload(1, alarm(1), true, T0));
    let mut other = Frame {
        destination: Address::from_hex("111111111111").unwrap(),
        ..frame_of(&from_centre(f[0].serial, Command::Confirm, Vec::new()))
    }
    .encode()
    .unwrap();
    let mut line = b"noise@@ @".to_vec();
    line.append(&mut other);
    line.extend_from_slice(&from_centre(f[0].serial, Command::Confirm, Vec::new()));
    // Delivered a byte at a time, as TCP may.
    let mut out = Vec::new();
    for b in &line {
        out.extend(s.received(&[*b], T0 + 1));
    }
    assert!(out.iter().any(|e| matches!(e, Event::Garbage(_))), "{out:?}");
    assert!(out.iter().any(|e| matches!(e, Event::Ignored(_))), "{out:?}");
    assert_eq!(out.iter().filter(|e| **e == Event::Confirmed(1)).count(), 1, "{out:?}");
}

#[test]
fn serial_numbers_wrap_around() {
    let mut s = session();
    ready(&mut s, T0);
    let mut last = 0u16;
    for id in 0..70_000u64 {
        let f = sent(&s.upload(id, vec![3, 0], false, T0));
        last = f[0].serial;
        let _ = s.received(&from_centre(last, Command::Confirm, Vec::new()), T0);
    }
    // 70,000 uploads after the greeting's serial 0: 70,000 mod 65,536.
    assert_eq!(last, 4_464);
}
