//! The fallback proof that the node-side crates are `no_std`, for machines where
//! the `thumbv7em-none-eabihf` target cannot be installed.
//!
//! `scripts/test.sh` builds this crate as a staticlib with
//! `--cfg fm_nostd_proof -C panic=abort`, which turns on the panic handler below.
//! It links `protocol` and `firmware`. If anything in their dependency graph links `std`, `std`'s own panic handler
//! collides with this one and the build fails with "duplicate lang item
//! `panic_impl`". Without the cfg it is an ordinary `no_std` library, so the
//! workspace's clippy and test runs build it like any other crate.
#![no_std]

use protocol::limits::NODE_TX_BUFFER;
use protocol::{Data, DecodeError, EncodeError, Format, Kind, Message, Metric, Timestamp, encode};

#[cfg(fm_nostd_proof)]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

/// Encodes an elevator sample the way a node does: into its own buffer, no heap.
///
/// # Errors
/// Only if the sample could not be encoded.
pub fn encode_sample(buf: &mut [u8; NODE_TX_BUFFER], ts_ms: i64, floor: i32) -> Result<usize, EncodeError> {
    let mut data = Data::new(1, Timestamp::from_millis(ts_ms));
    data.m
        .set(Metric::Floor, floor)
        .map_err(|_| EncodeError::Other("full"))?;
    encode(&Message::Data(data), Format::Json, buf)
}

/// Runs one charging-bay step the way a node does, so the proof links the
/// firmware's node logic, outbox and encoders too.
pub fn charger_step(node: &mut firmware::node::Node<firmware::charger::ChargerNode>, now_ms: u64) -> bool {
    let inputs = firmware::charger::ChargerInputs::default();
    let events = node.step(firmware::hal::Millis(now_ms), &inputs);
    events.is_empty() && node.logic().relay_on(1)
}

/// Decodes a command the way a node does, with the heap-free JSON decoder.
///
/// # Errors
/// The decoder's error.
pub fn decode_command(payload: &[u8]) -> Result<Message, DecodeError> {
    protocol::codec::json_core::decode(Kind::Cmd, payload)
}
