//! Sessions, gaps, duplicates, reordering, skew and offline judgement.

use gateway::ingest::{Incoming, ingest};
use gateway::registry::{DeviceKey, Registry, Status};

const TOPIC: &str = "fm/v1/lakeside/elevator/EL-3";

fn msg(kind: &str, payload: &str, at: i64) -> Incoming {
    ingest(&format!("{TOPIC}/{kind}"), payload.as_bytes(), at).unwrap()
}

fn birth(bdseq: u32, at: i64) -> Incoming {
    msg(
        "birth",
        &format!(r#"{{"v":1,"seq":0,"ts":{at},"bdseq":{bdseq},"fw":"1","model":"m","cfg":"c","interval_s":10}}"#),
        at,
    )
}

fn data(seq: u32, at: i64) -> Incoming {
    msg(
        "data",
        &format!(r#"{{"v":1,"seq":{seq},"ts":{at},"bdseq":1,"m":{{"running":true}}}}"#),
        at,
    )
}

fn key() -> DeviceKey {
    DeviceKey {
        site: "lakeside".into(),
        class: "elevator".into(),
        device: "EL-3".into(),
    }
}

#[test]
fn gaps_duplicates_and_late_arrivals() {
    let mut r = Registry::new();
    assert!(r.observe(&birth(1, 0)).came_online);
    assert_eq!(r.observe(&data(1, 1)).lost, 0);
    let o = r.observe(&data(4, 2));
    assert_eq!(o.lost, 2, "2 and 3 are missing");
    let o = r.observe(&data(3, 3));
    assert!(o.reordered && !o.duplicate);
    assert!(r.observe(&data(3, 4)).duplicate);
    assert!(r.observe(&data(4, 5)).duplicate);
    let d = r.get(&key()).unwrap();
    assert_eq!((d.lost, d.duplicates, d.reordered), (1, 2, 1));
}

#[test]
fn online_stale_offline() {
    let mut r = Registry::new();
    r.observe(&birth(1, 0));
    let d = r.get(&key()).unwrap().clone();
    assert_eq!(Registry::status(&d, 29_000), Status::Online);
    assert_eq!(Registry::status(&d, 31_000), Status::Stale, "3 × 10 s of silence");
    // A will from an older session does not take the new session down.
    r.observe(&birth(2, 40_000));
    r.observe(&msg("death", r#"{"v":1,"bdseq":1}"#, 40_001));
    assert_eq!(Registry::status(r.get(&key()).unwrap(), 40_002), Status::Online);
    r.observe(&msg("death", r#"{"v":1,"bdseq":2}"#, 40_003));
    assert_eq!(Registry::status(r.get(&key()).unwrap(), 40_004), Status::Offline);
}

#[test]
fn replays_and_skew() {
    let mut r = Registry::new();
    r.observe(&birth(2, 1_000_000));
    // A replay from session 1 does not move session 2's seq.
    let old = msg(
        "data",
        r#"{"v":1,"seq":77,"ts":5,"hist":true,"bdseq":1,"m":{}}"#,
        1_000_001,
    );
    let o = r.observe(&old);
    assert_eq!(
        (o.lost, o.duplicate, o.skewed),
        (0, false, false),
        "hist is not judged for skew"
    );
    assert_eq!(r.get(&key()).unwrap().last_seq, Some(0));
    let skewed = msg("data", r#"{"v":1,"seq":1,"ts":0,"bdseq":2,"m":{}}"#, 1_000_002);
    assert!(r.observe(&skewed).skewed, "device clock unset: 1000 s behind");
}

#[test]
fn restore_keeps_everything() {
    let mut r = Registry::new();
    r.observe(&birth(1, 0));
    r.observe(&data(5, 1));
    let copy = Registry::restore(r.iter().cloned());
    assert_eq!(copy, r);
}

/// The gateway takes births on its telemetry session and events on its
/// alarm session, so a new session's event may overtake its birth: the
/// session follows the newer `bdseq`, the late birth fills its place, and
/// nothing is counted missing or dropped as a duplicate.
#[test]
fn a_new_session_whose_event_overtakes_its_birth_loses_nothing() {
    let mut r = Registry::new();
    r.observe(&birth(1, 0));
    for seq in 1..=3 {
        r.observe(&data(seq, i64::from(seq)));
    }
    let event = |seq: u32, bdseq: u32| {
        msg(
            "event",
            &format!(r#"{{"v":1,"seq":{seq},"ts":10,"bdseq":{bdseq},"code":"trapped","active":true}}"#),
            10,
        )
    };
    // Session 2: its event (seq 2) and then its first sample (seq 1) come
    // before its birth (seq 0).
    let o = r.observe(&event(2, 2));
    assert!(!o.duplicate);
    let d = r.get(&key()).unwrap();
    assert_eq!((d.bdseq, d.lost), (Some(2), 2), "seq 0 and 1 missing for now");
    let late = msg("data", r#"{"v":1,"seq":1,"ts":11,"bdseq":2,"m":{"running":true}}"#, 11);
    let o = r.observe(&late);
    assert!(o.reordered && !o.duplicate);
    let o = r.observe(&birth(2, 12));
    assert!(o.came_online && !o.duplicate, "{o:?}");
    let d = r.get(&key()).unwrap();
    assert_eq!((d.bdseq, d.lost), (Some(2), 0), "{d:?}");
    // A straggler of session 1 moves nothing.
    let old = msg("data", r#"{"v":1,"seq":4,"ts":14,"bdseq":1,"m":{"running":true}}"#, 14);
    let o = r.observe(&old);
    assert!(!o.duplicate && o.lost == 0);
    assert_eq!(r.get(&key()).unwrap().bdseq, Some(2));
    // A node that starts counting again from 0 is seen at its birth.
    assert!(r.observe(&birth(0, 20)).came_online);
    assert_eq!(r.get(&key()).unwrap().bdseq, Some(0));
}

/// A node that counts its sessions from 1 again after a reboot (or a Modbus
/// poller after the gateway's restart) reuses a `bdseq`: its birth starts a
/// new session, and its samples are never taken for duplicates of the last.
#[test]
fn a_birth_reusing_the_bdseq_after_a_reboot_starts_a_new_session() {
    let mut r = Registry::new();
    r.observe(&birth(1, 0));
    for seq in 1..=500 {
        r.observe(&data(seq, i64::from(seq)));
    }
    // Rebooted: bdseq 1 again, seq from 0.
    let o = r.observe(&birth(1, 600));
    assert!(!o.duplicate);
    for seq in 1..=3 {
        let o = r.observe(&data(seq, 600 + i64::from(seq)));
        assert!(!o.duplicate && o.lost == 0, "seq {seq}: {o:?}");
    }
    assert_eq!(r.get(&key()).unwrap().lost, 0);
}
