//! Mesh configuration as users (or attackers) write it: loading, validation,
//! the model and every analyzer over any text, never a panic, and within the
//! expansion budget (aliases).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let bundle = weft_model::parse_str("fuzz.yaml", text);
    let _ = weft_model::analyze::analyze(&bundle.resources, &weft_model::analyze::Options::default());
});
