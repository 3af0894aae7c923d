//! The push protocol's messages as they arrive off the wire: protobuf
//! decoding, then the payloads a proxy parses (the whole config, or an
//! endpoint delta applied to a config).
#![no_main]
use libfuzzer_sys::fuzz_target;
use prost::Message;
use weft_proto::config::{Endpoint, ProxyConfig};
use weft_proto::v1::{CertifyRequest, ConfigPush, ProxyMessage};

fuzz_target!(|data: &[u8]| {
    let _ = ProxyMessage::decode(data);
    let _ = CertifyRequest::decode(data);
    let Ok(push) = ConfigPush::decode(data) else { return };
    if let Ok(cfg) = serde_json::from_slice::<ProxyConfig>(&push.config_json) {
        let _ = cfg.check();
        if let Ok(delta) = serde_json::from_slice::<std::collections::BTreeMap<String, Vec<Endpoint>>>(&push.endpoints_json) {
            let _ = cfg.with_endpoints(&delta);
        }
    }
});
