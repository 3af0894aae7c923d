//! Protocol detection and ClientHello parsing over any first bytes a client
//! may send: never a panic, and a decision is stable as more bytes arrive.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weft_proxy::listen::detect::{classify, Detected};

fuzz_target!(|data: &[u8]| {
    let whole = classify(data);
    // Once decided on a prefix, more bytes never change HTTP/1 or HTTP/2 into something else.
    for cut in [1, data.len() / 2] {
        if cut == 0 || cut > data.len() {
            continue;
        }
        if let Some(d @ (Detected::Http1 | Detected::Http2)) = classify(&data[..cut]) {
            assert_eq!(whole, Some(d), "decided {cut} bytes in, then changed");
        }
    }
});
