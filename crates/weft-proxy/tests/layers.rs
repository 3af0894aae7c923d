//! The proxy's import rule (docs/architecture.md): leaves at the bottom,
//! then what a request is sent to, what is told about it, shared state, the
//! decisions per direction, the stacks per protocol, accepting, and the
//! controller and process on top. A module may use only layers below it.

/// Bottom first. Keep in step with `src/lib.rs` and docs/architecture.md.
const LAYERS: &[&[&str]] = &[
    &["metric_labels"],
    &["backoff", "body", "budget", "connection", "drain", "idle", "iptables", "mesh_alpn", "random"],
    &["local_reply", "workload_cert"],
    &["balance"],
    &["upstream"],
    &["config"],
    &["telemetry"],
    &["state", "target"],
    &["inbound", "outbound"],
    &["http", "tcp"],
    &["listen"],
    &["control"],
    &["app"],
];

#[test]
fn modules_use_only_the_layers_below_them() {
    weft_testkit::layers::assert_layers(env!("CARGO_MANIFEST_DIR"), LAYERS);
}
