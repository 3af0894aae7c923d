//! weft-model's import rule (docs/architecture.md): the vocabulary (values,
//! diagnostics, the API types) at the bottom, then decoding and the kind
//! table, validation, loading, the internal model, and analysis on top.

const LAYERS: &[&[&str]] = &[
    &["values", "bounded"],
    &["diag", "types"],
    &["envelope", "schema"],
    &["resource"],
    &["validate"],
    &["load"],
    &["mesh"],
    &["analyze"],
];

#[test]
fn modules_use_only_the_layers_below_them() {
    weft_testkit::layers::assert_layers(env!("CARGO_MANIFEST_DIR"), LAYERS);
}
