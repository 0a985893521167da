//! Any bytes, on a topic of any kind, through every decoder: nothing panics, and
//! whatever is accepted re-encodes, in both encodings, to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::codec::{decode_binary, json_core, json_std};
use protocol::{Format, Kind, decode, encode_to_vec};

fuzz_target!(|input: &[u8]| {
    let Some((&k, payload)) = input.split_first() else {
        return;
    };
    let kind = Kind::ALL[usize::from(k) % Kind::ALL.len()];
    let _ = json_core::decode(kind, payload);
    let _ = json_std::decode(kind, payload);
    let _ = decode_binary(kind, payload);
    if let Ok(msg) = decode(kind, payload) {
        for format in [Format::Json, Format::Binary] {
            let bytes = encode_to_vec(&msg, format).expect("an accepted message encodes");
            assert_eq!(decode(kind, &bytes).expect("re-encoded message decodes"), msg);
        }
    }
});
