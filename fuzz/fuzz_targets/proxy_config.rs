//! The proxy's config as the controller (or a file) hands it over: any bytes
//! parse to an error or to a config that checks and builds, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weft_proxy::config::{BuildContext, ProxyConfig, Snapshot};

fuzz_target!(|data: &[u8]| {
    let Ok(cfg) = serde_json::from_slice::<ProxyConfig>(data) else { return };
    if cfg.check().is_err() {
        return;
    }
    let cx = BuildContext::new(tokio::sync::watch::channel(None).1);
    let _ = Snapshot::build(cfg, None, &cx);
});
