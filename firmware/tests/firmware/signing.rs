//! The gateway's side of signed commands, for the tests: a device key, and
//! commands signed with `protocol::cmdauth` exactly as the gateway signs them.

use firmware::config::Credentials;
use protocol::cmdauth::{self, CommandKey, Recipient};
use protocol::{Format, Kind, Message, Timestamp, decode, encode_to_vec};

/// The test device's command key, as provisioning prints it.
pub(crate) const KEY_HEX: &str = "8f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

pub(crate) fn key() -> CommandKey {
    CommandKey::from_hex(KEY_HEX).unwrap()
}

/// A node's credentials with the test key.
pub(crate) fn credentials(site: &str, device: &str) -> Credentials {
    Credentials::new(site, device).unwrap().with_cmd_key(key())
}

/// Far in the future: for tests where expiry is not the point.
pub(crate) const LATER: Timestamp = Timestamp::from_millis(4_102_444_800_000);

/// `unsigned` (a `cmd` in JSON without `ctr`, `exp`, `mac`) signed with `key`
/// for `to`, encoded in `format`.
pub(crate) fn sign_with(
    key: &CommandKey,
    to: &Recipient<'_>,
    unsigned: &str,
    ctr: u64,
    exp: Timestamp,
    format: Format,
) -> Vec<u8> {
    let Message::Cmd(mut cmd) = decode(Kind::Cmd, unsigned.as_bytes()).unwrap() else {
        unreachable!()
    };
    cmdauth::sign(key, to, &mut cmd, ctr, exp);
    encode_to_vec(&Message::Cmd(cmd), format).unwrap()
}

/// A JSON command `op` with `args`, signed with the test key.
pub(crate) fn cmd(to: &Recipient<'_>, id: &str, op: &str, args: &str, ctr: u64) -> Vec<u8> {
    let json = format!(r#"{{"v":1,"seq":1,"ts":0,"id":"{id}","op":"{op}","args":{args}}}"#);
    sign_with(&key(), to, &json, ctr, LATER, Format::Json)
}

/// [`cmd`], encoded in `format`.
pub(crate) fn cmd_in(to: &Recipient<'_>, id: &str, op: &str, args: &str, ctr: u64, format: Format) -> Vec<u8> {
    let json = format!(r#"{{"v":1,"seq":1,"ts":0,"id":"{id}","op":"{op}","args":{args}}}"#);
    sign_with(&key(), to, &json, ctr, LATER, format)
}
