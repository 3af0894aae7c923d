//! The controller's import rule (docs/architecture.md): what it is made of
//! at the bottom (store, compile, CA, the proxies' port), then the registry
//! of proxies, the shared state, the push protocol, the HTTP API, and
//! start-up on top. A module may use only layers below it.

const LAYERS: &[&[&str]] = &[
    &["store", "compile", "identity", "listener", "jwks", "metrics", "token_review"],
    &["auth"],
    &["registry"],
    &["state"],
    &["service", "push", "webhook"],
    &["api"],
    &["server"],
];

#[test]
fn modules_use_only_the_layers_below_them() {
    weft_testkit::layers::assert_layers(env!("CARGO_MANIFEST_DIR"), LAYERS);
}
