//! Any string as a topic: nothing panics, and an accepted topic prints back as itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::Topic;

fuzz_target!(|input: &str| {
    if let Ok(t) = Topic::parse(input) {
        assert_eq!(t.to_string(), input);
        assert_eq!(t.to_heapless().as_str(), input);
    }
});
