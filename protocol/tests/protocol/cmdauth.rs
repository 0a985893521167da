//! Signed commands: the MAC's exact bytes (a known answer, checked against
//! OpenSSL as an independent HMAC), every field covered, the refusals and
//! their order, the counter, and the MAC surviving both encodings and both
//! JSON decoders.

use std::io::Write as _;
use std::process::{Command, Stdio};

use proptest::prelude::*;
use protocol::cmdauth::{self, CommandKey, Guard, Mac, Recipient, Refusal, modbus};
use protocol::{Cmd, CmdArgs, DeviceClass, Format, Kind, Message, Named, Op, Timestamp, decode, encode_to_vec};

use crate::docs::{GOLDEN_CTR, GOLDEN_EXP, GOLDEN_KEY, GOLDEN_MAC, golden_message};

fn key() -> CommandKey {
    CommandKey::from_hex(GOLDEN_KEY).unwrap()
}

const BAY: Recipient<'static> = Recipient {
    site: "lakeside",
    class: DeviceClass::Charger,
    device: "BAY-07",
};

fn golden_cmd() -> Cmd {
    let Message::Cmd(c) = golden_message("charger-cmd") else {
        unreachable!()
    };
    c
}

fn unsigned(c: &Cmd) -> Cmd {
    Cmd {
        ctr: None,
        exp: None,
        mac: None,
        ..c.clone()
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The signed string of the docs' example, byte by byte: what an
/// implementation in another language compares with.
const GOLDEN_SIGNED: &str = concat!(
    "666d2d636d642d7631",               // "fm-cmd-v1"
    "086c616b6573696465",               // text("lakeside")
    "0763686172676572",                 // text("charger")
    "064241592d3037",                   // text("BAY-07")
    "0f776f2d323231312d636c6561722d34", // text("wo-2211-clear-4")
    "05636c656172",                     // text("clear")
    "0104",                             // port: present, 4
    "00",                               // name: absent
    "00",                               // value: absent
    "0000000000000412",                 // ctr 1042
    "0000019aaa943130",                 // exp 1763798430000
);

#[test]
fn the_signed_string_of_the_documented_example_is_exact() {
    let c = golden_cmd();
    let bytes = cmdauth::signed_bytes(&BAY, &c, GOLDEN_CTR, GOLDEN_EXP);
    assert_eq!(hex(&bytes), GOLDEN_SIGNED);
}

#[test]
fn the_documented_example_verifies_and_its_mac_is_openssls() {
    let c = golden_cmd();
    let mac = cmdauth::mac(&key(), &BAY, &c, GOLDEN_CTR, GOLDEN_EXP);
    assert_eq!(mac.to_hex().as_str(), GOLDEN_MAC, "docs/protocol.md's example MAC");
    assert_eq!(cmdauth::verify(&key(), &BAY, &c), Ok(()));

    // An HMAC not written here: OpenSSL's, over the same bytes.
    let bytes = cmdauth::signed_bytes(&BAY, &c, GOLDEN_CTR, GOLDEN_EXP);
    let mut child = Command::new("openssl")
        .args([
            "dgst",
            "-sha256",
            "-mac",
            "HMAC",
            "-macopt",
            &format!("hexkey:{GOLDEN_KEY}"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl (Debian package `openssl`) computes the reference HMAC");
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.trim_end().ends_with(GOLDEN_MAC), "openssl says {text}");
}

type Change = Box<dyn Fn(&mut Cmd)>;

#[test]
fn every_covered_field_changes_the_mac() {
    let mut c = golden_cmd();
    c.args.name = Some("over_temp_c".try_into().unwrap());
    c.args.value = Some(60.0);
    c.op = Named::Known(Op::SetThreshold);
    cmdauth::sign(&key(), &BAY, &mut c, 7, GOLDEN_EXP);
    assert_eq!(cmdauth::verify(&key(), &BAY, &c), Ok(()));

    let tampered: Vec<(&str, Change)> = vec![
        ("id", Box::new(|c| c.id = "wo-2211-clear-5".try_into().unwrap())),
        ("op", Box::new(|c| c.op = Named::Known(Op::CutOff))),
        (
            "unknown op",
            Box::new(|c| c.op = Named::Other("set_thresholds".try_into().unwrap())),
        ),
        ("port", Box::new(|c| c.args.port = Some(5))),
        ("port dropped", Box::new(|c| c.args.port = None)),
        (
            "name",
            Box::new(|c| c.args.name = Some("over_temp_s".try_into().unwrap())),
        ),
        ("value", Box::new(|c| c.args.value = Some(60.000_000_000_000_01))),
        ("value sign of zero", Box::new(|c| c.args.value = Some(-0.0))),
        ("ctr", Box::new(|c| c.ctr = Some(8))),
        (
            "exp",
            Box::new(|c| c.exp = Some(GOLDEN_EXP.saturating_add(std::time::Duration::from_millis(1)))),
        ),
        ("mac", Box::new(|c| c.mac.as_mut().unwrap().0[31] ^= 1)),
        ("hold added", Box::new(|c| c.args.hold = Some(true))),
        ("release added", Box::new(|c| c.args.hold = Some(false))),
    ];
    for (what, change) in &tampered {
        let mut t = c.clone();
        change(&mut t);
        assert_eq!(cmdauth::verify(&key(), &BAY, &t), Err(Refusal::BadMac), "{what}");
    }
    // Not covered, because the node does nothing with them.
    let mut t = c.clone();
    t.seq = 99;
    t.ts = Timestamp::EPOCH;
    t.bdseq = Some(3);
    t.hist = true;
    assert_eq!(cmdauth::verify(&key(), &BAY, &t), Ok(()), "header fields");

    for to in [
        Recipient { site: "lakesid", ..BAY },
        Recipient {
            class: DeviceClass::Firepump,
            ..BAY
        },
        Recipient { device: "BAY-7", ..BAY },
    ] {
        assert_eq!(cmdauth::verify(&key(), &to, &c), Err(Refusal::BadMac), "{to:?}");
    }
    let other = CommandKey::from_bytes([7; 32]);
    assert_eq!(cmdauth::verify(&other, &BAY, &c), Err(Refusal::BadMac), "another key");
}

#[test]
fn length_prefixes_keep_neighbouring_fields_apart() {
    let c = golden_cmd();
    let a = Recipient {
        site: "ab",
        class: DeviceClass::Charger,
        device: "c",
    };
    let b = Recipient {
        site: "a",
        class: DeviceClass::Charger,
        device: "bc",
    };
    assert_ne!(
        cmdauth::signed_bytes(&a, &c, 1, GOLDEN_EXP),
        cmdauth::signed_bytes(&b, &c, 1, GOLDEN_EXP)
    );
}

#[test]
fn a_missing_field_is_unsigned() {
    let c = golden_cmd();
    for strip in [
        |c: &mut Cmd| c.ctr = None,
        |c: &mut Cmd| c.exp = None,
        |c: &mut Cmd| c.mac = None,
    ] {
        let mut t = c.clone();
        strip(&mut t);
        assert_eq!(cmdauth::verify(&key(), &BAY, &t), Err(Refusal::Unsigned));
    }
}

#[test]
fn the_guard_refuses_in_order_and_changes_nothing_when_it_does() {
    let now = Some(GOLDEN_EXP);
    let signed = |ctr: u64, exp: Timestamp| {
        let mut c = unsigned(&golden_cmd());
        cmdauth::sign(&key(), &BAY, &mut c, ctr, exp);
        c
    };
    let mut g = Guard::new();
    let k = Some(key());
    let k = k.as_ref();

    assert_eq!(g.check(None, &BAY, &signed(5, GOLDEN_EXP), now), Err(Refusal::NoKey));
    assert_eq!(g.check(k, &BAY, &unsigned(&golden_cmd()), now), Err(Refusal::Unsigned));
    // A forged counter far ahead must not move the guard.
    let mut forged = signed(u64::MAX, GOLDEN_EXP);
    forged.mac.as_mut().unwrap().0[0] ^= 0x80;
    assert_eq!(g.check(k, &BAY, &forged, now), Err(Refusal::BadMac));
    assert_eq!(g.last(), 0);
    // ctr 0 is never fresh.
    assert_eq!(g.check(k, &BAY, &signed(0, GOLDEN_EXP), now), Err(Refusal::Replayed));

    let late = GOLDEN_EXP.saturating_add(std::time::Duration::from_millis(1));
    assert_eq!(
        g.check(k, &BAY, &signed(5, GOLDEN_EXP), Some(late)),
        Err(Refusal::Expired)
    );
    assert_eq!(g.last(), 0, "an expired command does not move the counter");
    assert_eq!(
        g.check(k, &BAY, &signed(5, GOLDEN_EXP), now),
        Ok(()),
        "exp equal to the clock is in time"
    );
    assert_eq!(g.last(), 5);
    assert_eq!(g.check(k, &BAY, &signed(5, GOLDEN_EXP), now), Err(Refusal::Replayed));
    assert_eq!(g.check(k, &BAY, &signed(4, late), now), Err(Refusal::Replayed));
    // Replayed before expired: a stale counter is the stronger statement.
    assert_eq!(
        g.check(k, &BAY, &signed(3, Timestamp::EPOCH), now),
        Err(Refusal::Replayed)
    );
    // Without a clock, only the counter judges.
    assert_eq!(g.check(k, &BAY, &signed(6, Timestamp::EPOCH), None), Ok(()));
    assert_eq!(
        g.check(k, &BAY, &signed(1_000, GOLDEN_EXP), now),
        Ok(()),
        "gaps are fine"
    );

    g.restore(10);
    assert_eq!(g.last(), 1_000, "restore never moves back");
    let mut fresh = Guard::new();
    fresh.restore(1_000);
    assert_eq!(
        fresh.check(k, &BAY, &signed(1_000, GOLDEN_EXP), now),
        Err(Refusal::Replayed)
    );
}

#[test]
fn the_refusals_read_as_the_docs_say() {
    let texts: Vec<&str> = [
        Refusal::NoKey,
        Refusal::Unsigned,
        Refusal::BadMac,
        Refusal::Replayed,
        Refusal::Expired,
    ]
    .iter()
    .map(|r| r.as_str())
    .collect();
    assert_eq!(texts, ["no_key", "unsigned", "bad_mac", "replayed", "expired"]);
}

#[test]
fn keys_and_macs_from_hex() {
    assert!(CommandKey::from_hex(GOLDEN_KEY).is_ok());
    assert_eq!(
        CommandKey::from_hex(&GOLDEN_KEY.to_uppercase()),
        CommandKey::from_hex(GOLDEN_KEY)
    );
    assert_eq!(CommandKey::from_hex(&GOLDEN_KEY[2..]), Err(cmdauth::HexError::Length));
    assert_eq!(
        CommandKey::from_hex(&format!("{}zz", &GOLDEN_KEY[2..])),
        Err(cmdauth::HexError::Digit)
    );
    assert_eq!(format!("{:?}", key()), "CommandKey(<redacted>)");
    let m = Mac::from_hex(GOLDEN_MAC).unwrap();
    assert_eq!(m.to_hex().as_str(), GOLDEN_MAC);
}

#[test]
fn a_malformed_mac_is_a_malformed_payload() {
    for mac in ["\"abc\"", "12", "null"] {
        let json = format!(r#"{{"v":1,"seq":1,"ts":0,"id":"a","op":"clear","ctr":1,"exp":0,"mac":{mac}}}"#);
        let gw = decode(Kind::Cmd, json.as_bytes());
        let node = protocol::codec::json_core::decode(Kind::Cmd, json.as_bytes());
        if mac == "null" {
            // An explicit null is a missing MAC: unsigned, answered as such.
            assert!(matches!(gw, Ok(Message::Cmd(Cmd { mac: None, .. }))), "{gw:?}");
            assert!(matches!(node, Ok(Message::Cmd(Cmd { mac: None, .. }))), "{node:?}");
        } else {
            assert_eq!(gw.unwrap_err().reason(), "bad_json");
            assert_eq!(node.unwrap_err().reason(), "bad_json");
        }
    }
}

#[test]
fn a_binary_cmd_from_before_signing_decodes_as_unsigned() {
    // The old layout: every field up to `args`, nothing after.
    let c = unsigned(&golden_cmd());
    let new = encode_to_vec(&Message::Cmd(c.clone()), Format::Binary).unwrap();
    // The new layout writes three `None`s (one 0 byte each) at the end.
    assert_eq!(&new[new.len() - 3..], [0, 0, 0]);
    let old = &new[..new.len() - 3];
    assert_eq!(decode(Kind::Cmd, old).unwrap(), Message::Cmd(c.clone()));
    // Cut anywhere else, it stays malformed.
    for cut in [1, 2, 4] {
        let short = &new[..new.len() - cut];
        if short.len() == old.len() {
            continue;
        }
        assert_eq!(
            decode(Kind::Cmd, short).unwrap_err().reason(),
            "bad_binary",
            "cut {cut}"
        );
    }
    // And a signed one round trips with its MAC.
    let s = golden_cmd();
    let bin = encode_to_vec(&Message::Cmd(s.clone()), Format::Binary).unwrap();
    assert_eq!(decode(Kind::Cmd, &bin).unwrap(), Message::Cmd(s));
}

/// `hold_doors`: `hold` is covered (a release cannot be turned into a hold),
/// travels in `args` in JSON and after `mac` in binary, and a command
/// without it signs and encodes exactly as before the op existed.
#[test]
fn hold_is_signed_and_leaves_every_other_command_as_it_was() {
    let json = r#"{"v":1,"seq":3,"ts":0,"id":"hold-1","op":"hold_doors","args":{"hold":true}}"#;
    let Message::Cmd(mut c) = decode(Kind::Cmd, json.as_bytes()).unwrap() else {
        unreachable!()
    };
    assert_eq!((&c.op, c.args.hold), (&Named::Known(Op::HoldDoors), Some(true)));
    cmdauth::sign(&key(), &BAY, &mut c, 9, GOLDEN_EXP);
    let mut release = c.clone();
    release.args.hold = Some(false);
    assert_eq!(cmdauth::verify(&key(), &BAY, &release), Err(Refusal::BadMac));
    // The signed string: `hold` as 01 01 right before ctr and exp.
    let s = cmdauth::signed_bytes(&BAY, &c, 9, GOLDEN_EXP);
    assert_eq!(&s[s.len() - 18..s.len() - 16], [1, 1]);
    let mut none = c.clone();
    none.args.hold = None;
    assert_eq!(cmdauth::signed_bytes(&BAY, &none, 9, GOLDEN_EXP).len(), s.len() - 2);
    for format in [Format::Json, Format::Binary] {
        let bytes = encode_to_vec(&Message::Cmd(c.clone()), format).unwrap();
        let Message::Cmd(back) = decode(Kind::Cmd, &bytes).unwrap() else {
            unreachable!()
        };
        assert_eq!(back, c, "{format:?}");
        assert_eq!(cmdauth::verify(&key(), &BAY, &back), Ok(()), "{format:?}");
    }
    let text = String::from_utf8(encode_to_vec(&Message::Cmd(c.clone()), Format::Json).unwrap()).unwrap();
    assert!(text.contains(r#""args":{"hold":true}"#), "{text}");
    // Binary: `hold` follows the MAC as 01 01, and only when present (the
    // same command as a `clear`, which may go without it).
    let bin = encode_to_vec(&Message::Cmd(c.clone()), Format::Binary).unwrap();
    assert_eq!(&bin[bin.len() - 2..], [1, 1]);
    let mut plain = none.clone();
    plain.op = Named::Known(Op::Clear);
    let mut plain_held = plain.clone();
    plain_held.args.hold = Some(true);
    let held = encode_to_vec(&Message::Cmd(plain_held), Format::Binary).unwrap();
    let without = encode_to_vec(&Message::Cmd(plain), Format::Binary).unwrap();
    assert_eq!(&held[..held.len() - 2], without.as_slice());
    // A golden command has no `hold`: its binary form ends at the MAC.
    let g = encode_to_vec(&Message::Cmd(golden_cmd()), Format::Binary).unwrap();
    assert_eq!(&g[g.len() - 32..], golden_cmd().mac.unwrap().0);
    // Trailing bytes after `hold`, or a bad bool, are malformed.
    for bad in [[1u8, 1, 0].as_slice(), &[1, 2], &[2]] {
        let mut b = without.clone();
        b.extend_from_slice(bad);
        assert_eq!(decode(Kind::Cmd, &b).unwrap_err().reason(), "bad_binary", "{bad:?}");
    }
    // `hold_doors` without `hold` is malformed: there is nothing to do.
    let bare = r#"{"v":1,"seq":3,"ts":0,"id":"hold-1","op":"hold_doors"}"#;
    assert!(decode(Kind::Cmd, bare.as_bytes()).is_err());
}

proptest! {
    /// Whatever the command, signed by the gateway's code, it verifies on the
    /// node after either encoding and either JSON decoder: the value's bits
    /// survive JSON both ways.
    #[test]
    fn a_signed_command_verifies_after_every_encoding(
        c in crate::strategies::cmd(),
        ctr in 1..u64::MAX,
        exp in any::<i64>(),
        key in any::<[u8; 32]>(),
    ) {
        let key = CommandKey::from_bytes(key);
        let mut c = c;
        cmdauth::sign(&key, &BAY, &mut c, ctr, Timestamp::from_millis(exp));
        let msg = Message::Cmd(c.clone());
        let json = encode_to_vec(&msg, Format::Json).unwrap();
        let bin = encode_to_vec(&msg, Format::Binary).unwrap();
        for decoded in [
            decode(Kind::Cmd, &json).unwrap(),
            protocol::codec::json_core::decode(Kind::Cmd, &json).unwrap(),
            decode(Kind::Cmd, &bin).unwrap(),
        ] {
            let Message::Cmd(d) = decoded else { unreachable!() };
            prop_assert_eq!(d.args.value.map(f64::to_bits), c.args.value.map(f64::to_bits));
            prop_assert_eq!(cmdauth::verify(&key, &BAY, &d), Ok(()));
        }
    }

    /// The Modbus tag: right for its write, wrong for any other challenge,
    /// address or values.
    #[test]
    fn modbus_tags_bind_challenge_address_and_values(
        challenge in any::<u64>(),
        first in any::<u16>(),
        values in proptest::collection::vec(0u16..=1, 1..=modbus::MAX_COILS),
        flip in any::<prop::sample::Index>(),
    ) {
        let k = key();
        let req = modbus::request(&k, challenge, first, &values).unwrap();
        prop_assert_eq!(req.len(), values.len() + 6);
        prop_assert_eq!(req[0], first);
        prop_assert_eq!(usize::from(req[1]), values.len());
        let tag: [u16; 4] = req[req.len() - 4..].try_into().unwrap();
        prop_assert!(modbus::verify(&k, challenge, first, &values, &tag));
        prop_assert!(!modbus::verify(&k, challenge.wrapping_add(1), first, &values, &tag));
        prop_assert!(!modbus::verify(&k, challenge, first.wrapping_add(1), &values, &tag));
        let mut other = values.clone();
        let i = flip.index(other.len());
        other[i] ^= 1;
        prop_assert!(!modbus::verify(&k, challenge, first, &other, &tag));
        prop_assert!(!modbus::verify(&CommandKey::from_bytes([1; 32]), challenge, first, &values, &tag));
        prop_assert_eq!(modbus::challenge_of(modbus::challenge_words(challenge)), challenge);
    }
}

#[test]
fn a_modbus_request_has_room_for_at_most_what_fc16_carries() {
    let k = key();
    assert!(modbus::request(&k, 0, 0, &[]).is_none());
    assert!(modbus::request(&k, 0, 0, &vec![1; modbus::MAX_COILS + 1]).is_none());
    assert_eq!(
        modbus::request(&k, 0, 0, &vec![1; modbus::MAX_COILS]).unwrap().len(),
        123
    );
}

#[test]
fn the_args_of_the_example_are_what_the_docs_say() {
    // Guards the known answer above against a change of the golden example.
    let c = golden_cmd();
    assert_eq!(
        c.args,
        CmdArgs {
            port: Some(4),
            name: None,
            value: None,
            hold: None
        }
    );
    assert_eq!((c.ctr, c.exp), (Some(GOLDEN_CTR), Some(GOLDEN_EXP)));
}
