//! Identity text from outside: join tokens (split, root pin) and SPIFFE IDs,
//! which round-trip when they parse.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weft_identity::{token, SpiffeId};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = token::split(text);
    let _ = token::root_pin(text);
    if let Ok(id) = text.parse::<SpiffeId>() {
        let again: SpiffeId = id.to_string().parse().expect("a parsed SPIFFE ID prints as one");
        assert_eq!(again, id);
    }
});
