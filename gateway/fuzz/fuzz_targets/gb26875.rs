//! Any bytes from a fire remote-monitoring centre's connection
//! (`gb26875::Decoder`, `gb26875::Unit`, `gb26875::Session`): nothing
//! panics, whatever the stream and however TCP cuts it; the decoder never
//! holds more than a partial frame once drained; every frame it finds
//! encodes back to a frame that decodes to itself, and so does every
//! application data unit it reads.
//!
//! An input is the bytes on the line; its first byte says how they are cut
//! into reads (1 to 256 bytes each). The seeds in `seeds/gb26875/` are the
//! golden frames of `gateway/gb26875/tests/gb26875/golden.rs` with garbage.
#![no_main]

use gb26875::frame::MAX_FRAME;
use gb26875::{Address, Decoder, Parsed, Session, SessionConfig, Unit, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    let cut = usize::from(line.first().copied().unwrap_or(0)) + 1;
    let mut d = Decoder::new();
    let address = Address::from_hex("0a0b0c0d0e0f").expect("a good address");
    let mut s = Session::new(SessionConfig::new(address, Address::ZERO));
    let _ = s.connected(0);
    let mut now = 0;
    for chunk in line.chunks(cut) {
        d.push(chunk);
        while let Some(next) = d.next_frame() {
            let Ok(frame) = next else { continue };
            let bytes = frame.encode().expect("a decoded frame encodes");
            match parse(&bytes) {
                Parsed::Frame { frame: again, len } => {
                    assert_eq!(again, frame);
                    assert_eq!(len, bytes.len());
                }
                other => panic!("a re-encoded frame does not decode: {other:?}"),
            }
            if let Ok(unit) = Unit::decode(&frame.data) {
                let data = unit.encode().expect("a decoded unit encodes");
                assert_eq!(Unit::decode(&data).as_ref(), Ok(&unit));
            }
        }
        assert!(d.pending() <= MAX_FRAME, "the decoder holds {} bytes", d.pending());
        // The session takes the same reads, with time passing.
        now += 700;
        let _ = s.received(chunk, now);
        let _ = s.tick(now);
    }
});
