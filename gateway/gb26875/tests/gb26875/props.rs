//! Properties: every frame and unit the encoder writes decodes to itself;
//! the decoder never panics on any bytes, and finds a good frame after any
//! garbage, however the stream is cut.

use gb26875::{Address, Command, Decoder, Frame, TimeLabel, Unit, Version};
use proptest::prelude::*;

fn frame() -> impl Strategy<Value = Frame> {
    (
        any::<u16>(),
        any::<(u8, u8)>(),
        any::<[u8; 6]>(),
        0u64..1 << 48,
        0u64..1 << 48,
        any::<u8>(),
        proptest::collection::vec(any::<u8>(), 0..=1024),
    )
        .prop_map(|(serial, (major, minor), t, s, d, c, data)| Frame {
            serial,
            version: Version { major, minor },
            time: TimeLabel::from_wire(t),
            source: Address::new(s).unwrap(),
            destination: Address::new(d).unwrap(),
            command: Command::from(c),
            data,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn frames_round_trip(f in frame()) {
        let bytes = f.encode().unwrap();
        let mut d = Decoder::new();
        d.push(&bytes);
        prop_assert_eq!(d.next_frame(), Some(Ok(f)));
        prop_assert_eq!(d.next_frame(), None);
        prop_assert_eq!(d.pending(), 0);
    }

    #[test]
    fn the_decoder_never_panics_and_never_holds_more_than_a_frame(bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
        let mut d = Decoder::new();
        d.push(&bytes);
        while d.next_frame().is_some() {}
        prop_assert!(d.pending() <= gb26875::frame::MAX_FRAME);
        let _ = Unit::decode(&bytes);
    }

    #[test]
    fn a_good_frame_is_found_after_any_garbage_however_cut(
        garbage in proptest::collection::vec(prop_oneof![Just(b'@'), Just(b'#'), any::<u8>()], 0..200),
        f in frame(),
        cut in 1usize..64,
    ) {
        let good = f.encode().unwrap();
        let mut line = garbage.clone();
        line.extend_from_slice(&good);
        let mut d = Decoder::new();
        let mut found = Vec::new();
        for chunk in line.chunks(cut) {
            d.push(chunk);
            while let Some(r) = d.next_frame() {
                if let Ok(fr) = r { found.push(fr); }
            }
        }
        // Garbage may by chance hold a frame of its own, never in place of
        // the good one: the last frame found is it.
        prop_assert_eq!(found.last(), Some(&f), "garbage {:02x?}", garbage);
    }

    #[test]
    fn units_round_trip(type_flag in any::<u8>(), count in 0u8..4, body in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut data = vec![type_flag, count];
        data.extend_from_slice(&body);
        if let Ok(u) = Unit::decode(&data) {
            let again = u.encode().unwrap();
            prop_assert_eq!(Unit::decode(&again).unwrap(), u);
        }
    }
}
